import CHiredis
import NIOCore

/// Encodes commands with hiredis' `redisFormatCommandArgv` (binary-safe: every argument goes in
/// with its length, so `\0` and `\r\n` inside values are fine).
enum RESPFormatter {
    /// Appends `arguments` as one RESP command to `buffer`.
    static func format(_ arguments: [RedisArgument], into buffer: inout ByteBuffer) throws(RedisError) {
        let count = arguments.count
        guard count > 0 else { throw .protocolError("cannot send an empty command") }
        var total = 1  // never 0, so the flat buffer always has a base address
        for argument in arguments { total += argument.bytes.count }
        // hiredis wants an array of pointers; the arguments' arrays have no stable addresses
        // outside their own closures, so they are copied into one flat scratch buffer first.
        let length: Int32 = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: total) { flat in
            withUnsafeTemporaryAllocation(of: UnsafePointer<CChar>?.self, capacity: count) { argv in
                withUnsafeTemporaryAllocation(of: Int.self, capacity: count) { lengths in
                    let base = flat.baseAddress!
                    var offset = 0
                    for (index, argument) in arguments.enumerated() {
                        let size = argument.bytes.count
                        argument.bytes.withUnsafeBufferPointer { source in
                            if size > 0 { (base + offset).initialize(from: source.baseAddress!, count: size) }
                        }
                        argv[index] = UnsafeRawPointer(base + offset).assumingMemoryBound(to: CChar.self)
                        lengths[index] = size
                        offset += size
                    }
                    var target: UnsafeMutablePointer<CChar>?
                    let length = redisFormatCommandArgv(&target, Int32(count), argv.baseAddress, lengths.baseAddress)
                    if let target {
                        if length > 0 { buffer.writeBytes(UnsafeRawBufferPointer(start: target, count: Int(length))) }
                        redisFreeCommand(target)
                    }
                    return length
                }
            }
        }
        guard length > 0 else { throw .protocolError("hiredis could not format the command (out of memory?)") }
    }
}
