import NIOCore

extension GatewayContext {
    /// Records a finished request, whatever protocol carried it: its response counted by route,
    /// method and status (through the caller's `counter` cache), its durations, the latency the
    /// gateway added, and one access-log line; ends its spans.
    @inline(__always)
    func record(_ log: RequestLog, metrics: RouteMetrics, upstreamTime: TimeAmount?, now: NIODeadline,
                counter: inout ResponseCounterCache?) {
        let total = now - log.start
        metrics.countResponse(method: log.method, status: log.status, cache: &counter)
        metrics.requestDuration.record(GatewayMetrics.seconds(total))
        if let upstreamTime {
            metrics.upstreamDuration.record(GatewayMetrics.seconds(upstreamTime))
            self.metrics.addedLatency.record(GatewayMetrics.seconds(max(.zero, total - upstreamTime)))
        }
        log.trace?.finish(log)
        accessLog?.record(log, duration: total, upstreamTime: upstreamTime)
    }
}
