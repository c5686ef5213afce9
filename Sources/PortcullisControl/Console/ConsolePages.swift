import Hummingbird
import Mustache

/// The operator console's pages: server-rendered HTML from Mustache templates (every `{{value}}`
/// is HTML-escaped), with the headers of the login pages (`LoginPages.headers`) under a policy
/// that allows only this origin's own script and style files (no inline script or style, no
/// other origin), forms posting only to this origin, and no framing (`frame-ancestors 'none'`).
struct ConsolePages: Sendable {
    private let library: MustacheLibrary

    init() {
        library = MustacheLibrary(fixed: Self.templates)
    }

    static let contentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

    /// Renders `name` inside the layout; `csrf` (the signed-in session's token) adds the navigation
    /// and the sign-out form.
    func render(_ name: String, title: String, _ context: [String: Any] = [:], actor: String? = nil, csrf: String? = nil,
                status: HTTPResponse.Status = .ok) -> Response {
        var context = context
        context["title"] = title
        if let actor, let csrf {
            context["nav"] = ["actor": actor, "csrf": csrf]
        }
        let html = library.render(context, withTemplate: name) ?? ""
        return Response(status: status, headers: LoginPages.headers(contentSecurityPolicy: Self.contentSecurityPolicy),
                        body: ResponseBody(byteBuffer: ByteBuffer(string: html)))
    }

    func error(title: String, message: String, status: HTTPResponse.Status, actor: String? = nil, csrf: String? = nil) -> Response {
        render("error", title: title, ["message": message], actor: actor, csrf: csrf, status: status)
    }

    static let templates: [String: String] = [
        "head": """
        <!doctype html>
        <html lang="en">
        <head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{{title}} · Portcullis console</title>
        <link rel="stylesheet" href="/console/static/console.css"><script src="/console/static/console.js" defer></script></head>
        <body>
        {{#nav}}<header><nav><a href="/console/cluster">Cluster</a> <a href="/console/revocations">Revocations</a> <a href="/console/keys">Keys</a> <a href="/console/audit">Audit log</a></nav>
        <form method="post" action="/console/sign-out" class="sign-out"><input type="hidden" name="csrf_token" value="{{csrf}}"><span id="actor">{{actor}}</span> <button type="submit" id="sign-out">Sign out</button></form></header>{{/nav}}
        <main>
        <h1>{{title}}</h1>
        {{#error}}<p role="alert" id="error">{{error}}</p>{{/error}}
        {{#notice}}<p role="status" id="notice">{{notice}}</p>{{/notice}}
        """,
        "foot": """
        </main></body></html>
        """,
        "sign-in": """
        {{> head}}
        <form method="post" action="/console/sign-in">
        <input type="hidden" name="csrf_token" value="{{csrf}}">
        <p><label for="token">Admin token</label><br><input id="token" name="token" type="password" autocomplete="current-password" autofocus></p>
        <p><button type="submit" id="sign-in">Sign in</button></p>
        </form>
        {{> foot}}
        """,
        "cluster": """
        {{> head}}
        <p>Revocation sequence <strong id="sequence">{{sequence}}</strong>; in force: {{jti}} token ids, {{session}} sessions, {{subject}} subjects, {{client}} clients, {{grant}} grants, {{key}} keys.
        Control planes: {{controls}}. Live gateways: <strong id="live">{{live}}</strong>, in step: {{in_step}}.</p>
        <table id="nodes">
        <thead><tr><th>Node</th><th>State</th><th>Address</th><th>Version</th><th>Applied sequence</th><th>Lag (changes)</th><th>Lag (seconds)</th><th>Key sets</th><th>Redis</th><th>Rate limits</th><th>Heartbeat age</th></tr></thead>
        <tbody>
        {{#nodes}}<tr id="node-{{id}}" class="{{state}}"><td>{{id}}</td><td class="state">{{state}}</td><td>{{address}}</td><td>{{version}}</td><td class="applied">{{applied}}</td><td class="lag">{{lag}}</td><td>{{lag_seconds}}</td><td class="keysets">{{keysets}}</td><td class="redis">{{redis}}</td><td>{{ratelimit}}</td><td>{{heartbeat}}</td></tr>
        {{/nodes}}
        {{^nodes}}<tr><td colspan="11">No live gateway.</td></tr>{{/nodes}}
        </tbody></table>
        {{> foot}}
        """,
        "revocations": """
        {{> head}}
        <h2>Search</h2>
        <form method="get" action="/console/revocations" id="search">
        <p><label for="search-kind">Kind</label> <select id="search-kind" name="kind">{{#kinds}}<option value="{{value}}"{{#selected}} selected{{/selected}}>{{label}}</option>{{/kinds}}</select>
        <label for="search-value">Subject, client, token id or key id</label> <input id="search-value" name="value" value="{{value}}">
        <button type="submit" id="search-button">Search</button></p>
        </form>
        <p>{{scope}}</p>
        <table id="results">
        <thead><tr><th>Change</th><th>Sequence</th><th>Operation</th><th>Kind</th><th>Value</th><th>Issuer</th><th>Created</th><th>By</th><th>Reason</th></tr></thead>
        <tbody>
        {{#items}}<tr><td><a href="/console/revocations/{{id}}">{{id}}</a></td><td>{{sequence}}</td><td>{{operation}}</td><td>{{kind}}</td><td>{{value}}</td><td>{{issuer}}</td><td>{{created}}</td><td>{{actor}}</td><td>{{reason}}</td></tr>
        {{/items}}
        {{^items}}<tr><td colspan="9" id="no-results">No revocation matches.</td></tr>{{/items}}
        </tbody></table>
        {{#next}}<p><a id="next" href="{{next}}">Next page</a></p>{{/next}}
        <h2>Revoke</h2>
        <form method="post" action="/console/revocations" id="revoke">
        <input type="hidden" name="csrf_token" value="{{csrf}}">
        <p><label for="revoke-kind">Kind</label><br><select id="revoke-kind" name="kind"><option value="subject">subject (every token issued to it until now)</option><option value="client">client (every token of it until now)</option><option value="jti">jti (one token)</option></select></p>
        <p><label for="revoke-value">Value</label><br><input id="revoke-value" name="value" value="{{revoke_value}}" required></p>
        <p><label for="revoke-issuer">Issuer (optional; every issuer when empty)</label><br><input id="revoke-issuer" name="issuer"></p>
        <p><label for="revoke-reason">Reason</label><br><input id="revoke-reason" name="reason" value="{{revoke_reason}}"></p>
        <p><button type="submit" id="revoke-button">Revoke</button></p>
        </form>
        {{> foot}}
        """,
        "revocation": """
        {{> head}}
        <dl id="change">
        <dt>Operation</dt><dd id="operation">{{operation}}</dd><dt>Kind</dt><dd id="kind">{{kind}}</dd><dt>Value</dt><dd id="value">{{value}}</dd>
        <dt>Issuer</dt><dd>{{issuer}}</dd><dt>Sequence</dt><dd id="change-sequence">{{sequence}}</dd><dt>Created</dt><dd>{{created}}</dd>
        <dt>By</dt><dd id="by">{{actor}}</dd><dt>Reason</dt><dd id="reason">{{reason}}</dd>{{#lifts}}<dt>Lifts</dt><dd><a href="/console/revocations/{{lifts}}">{{lifts}}</a></dd>{{/lifts}}
        </dl>
        <h2>Propagation</h2>
        <section id="propagation" data-url="/console/revocations/{{id}}/propagation" data-state="{{state}}">
        <p id="propagation-summary">{{summary}}</p>
        <table><thead><tr><th>Node</th><th>Applied</th><th>Latency</th><th>Node's applied sequence</th></tr></thead>
        <tbody>
        {{#nodes}}<tr id="ack-{{id}}" class="{{class}}"><td>{{id}}</td><td class="applied">{{applied}}</td><td class="latency">{{latency}}</td><td>{{applied_sequence}}</td></tr>
        {{/nodes}}
        </tbody></table>
        <p><a href="/console/revocations/{{id}}">Refresh</a></p>
        </section>
        {{#liftable}}<h2>Lift</h2>
        <form method="post" action="/console/revocations/{{id}}/lift" id="lift">
        <input type="hidden" name="csrf_token" value="{{csrf}}">
        <p><label for="lift-reason">Reason</label><br><input id="lift-reason" name="reason"></p>
        <p><button type="submit" id="lift-button">Lift this cut-off</button></p>
        </form>{{/liftable}}
        {{> foot}}
        """,
        "keys": """
        {{> head}}
        {{#issuers}}<section class="issuer" id="issuer-{{name}}">
        <h2>{{name}}</h2>
        <p>Issuer {{issuer}}; published key-set version <strong class="version">{{version}}</strong> ({{age}}), keys {{kids}}.</p>
        <p>Gateways on this version: <span class="current">{{current_count}}</span> of {{live}}{{#current}}: {{current}}{{/current}}{{#behind}}; not yet: <span class="behind">{{behind}}</span>{{/behind}}.</p>
        {{#builtin}}<table class="signing-keys"><thead><tr><th>Key id</th><th>State</th><th>Algorithm</th></tr></thead><tbody>
        {{#signing_keys}}<tr><td>{{kid}}</td><td>{{state}}</td><td>{{alg}}</td></tr>{{/signing_keys}}
        </tbody></table>
        <form method="post" action="/console/keys/{{name}}/rotate" class="rotate">
        <input type="hidden" name="csrf_token" value="{{csrf}}">
        <p><button type="submit" id="rotate-{{name}}">Rotate the signing key</button> (the new key signs once every live gateway has it)</p>
        </form>{{/builtin}}
        </section>{{/issuers}}
        {{^issuers}}<p>No issuer is configured.</p>{{/issuers}}
        {{> foot}}
        """,
        "audit": """
        {{> head}}
        <p>The newest {{count}} entries, newest first.</p>
        <table id="audit">
        <thead><tr><th>When (UTC)</th><th>Who</th><th>Action</th><th>Target</th><th>From</th><th>Outcome</th><th>Status</th><th>Details</th></tr></thead>
        <tbody>
        {{#entries}}<tr><td>{{at}}</td><td class="actor">{{actor}}</td><td class="action">{{action}}</td><td class="target">{{target}}</td><td>{{from}}</td><td class="outcome">{{outcome}}</td><td>{{status}}</td><td>{{details}}</td></tr>
        {{/entries}}
        </tbody></table>
        {{> foot}}
        """,
        "error": """
        {{> head}}
        <p role="alert" id="error">{{message}}</p>
        <p><a href="/console/cluster">Back to the console</a></p>
        {{> foot}}
        """,
    ]
}
