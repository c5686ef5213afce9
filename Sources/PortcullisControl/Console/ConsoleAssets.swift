import Hummingbird

/// The console's static files, served from this origin so the pages' policy (`script-src 'self'`,
/// `style-src 'self'`) admits them and nothing else. The script only improves a page that already
/// works without it: on a revocation's page it polls the propagation endpoint and fills in each
/// node's acknowledgement as it arrives (text only, never markup).
enum ConsoleAssets {
    static func response(_ name: String) -> Response? {
        let file: (type: String, text: String)
        switch name {
        case "console.js": file = ("text/javascript; charset=utf-8", script)
        case "console.css": file = ("text/css; charset=utf-8", style)
        default: return nil
        }
        return Response(status: .ok, headers: [
            .contentType: file.type, .cacheControl: "no-cache", HTTPFields.Element.Name("X-Content-Type-Options")!: "nosniff",
        ], body: ResponseBody(byteBuffer: ByteBuffer(string: file.text)))
    }

    /// Polls every 200 ms until every live gateway applied the change, for at most 30 s.
    static let script = """
    (function () {
      'use strict';
      var box = document.getElementById('propagation');
      if (!box) { return; }
      var url = box.getAttribute('data-url');
      var started = Date.now();
      var polls = 0;
      var settle = 0;
      function cell(row, text, name) {
        var td = document.createElement('td');
        td.textContent = text;
        if (name) { td.className = name; }
        row.appendChild(td);
      }
      function render(p) {
        var body = box.querySelector('tbody');
        while (body.firstChild) { body.removeChild(body.firstChild); }
        p.nodes.forEach(function (node) {
          var row = document.createElement('tr');
          row.id = 'ack-' + node.id;
          row.className = node.applied ? 'applied' : 'waiting';
          cell(row, node.id);
          cell(row, node.applied ? 'applied' : 'waiting', 'applied');
          cell(row, node.latency_ms === null ? '-' : node.latency_ms.toFixed(2) + ' ms', 'latency');
          cell(row, String(node.applied_sequence));
          body.appendChild(row);
        });
        document.getElementById('propagation-summary').textContent =
          p.applied + ' of ' + p.live_nodes + ' live gateways applied it' + (p.complete ? '.' : ' so far…');
      }
      function poll() {
        polls += 1;
        box.setAttribute('data-polls', String(polls));
        fetch(url, {credentials: 'same-origin', headers: {'Accept': 'application/json'}})
          .then(function (response) {
            if (!response.ok) { throw new Error('status ' + response.status); }
            return response.json();
          })
          .then(function (p) {
            render(p);
            // A node's record can show the change a moment before its acknowledgement with the
            // latency lands: a few more polls fill that in.
            var unmeasured = p.nodes.some(function (node) { return node.latency_ms === null; });
            if (p.complete && unmeasured && settle < 5) { settle += 1; setTimeout(poll, 50); return; }
            if (p.complete) { box.setAttribute('data-state', 'complete'); return; }
            box.setAttribute('data-state', 'waiting');
            if (Date.now() - started < 30000) { setTimeout(poll, 200); } else { box.setAttribute('data-state', 'timeout'); }
          })
          .catch(function (error) {
            box.setAttribute('data-state', 'error');
            document.getElementById('propagation-summary').textContent = 'Could not read the propagation (' + error.message + '); reload the page.';
          });
      }
      poll();
    })();

    """

    static let style = """
    body { font-family: system-ui, sans-serif; margin: 0; color: #1b1b1b; }
    header { display: flex; justify-content: space-between; align-items: center; padding: 0.5rem 1rem; background: #1f3a5f; color: #fff; }
    header a { color: #fff; margin-right: 1rem; }
    header form { margin: 0; }
    main { padding: 1rem; }
    table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
    th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; font-size: 0.9rem; }
    tr.gone, tr.waiting { background: #fff3cd; }
    tr.applied { background: #e6f4ea; }
    [role=alert] { color: #a00; font-weight: bold; }
    [role=status] { color: #064; font-weight: bold; }
    label { font-weight: bold; }

    """
}
