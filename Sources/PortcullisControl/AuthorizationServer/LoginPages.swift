import Hummingbird
import Mustache

/// The login, consent and error pages: server-rendered HTML from Mustache templates (every
/// `{{value}}` is HTML-escaped), no JavaScript. Every page carries a `Content-Security-Policy`
/// that allows no scripts, styles, images or frames (`default-src 'none'`), no framing of the page
/// itself (`frame-ancestors 'none'`, and `X-Frame-Options: DENY` for older browsers), no
/// `<base>`; pages are not cached and send no `Referer`.
struct LoginPages: Sendable {
    private let library: MustacheLibrary

    init() {
        library = MustacheLibrary(fixed: Self.templates)
    }

    static let contentSecurityPolicy = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"

    /// A field of the authorization request carried through the forms.
    struct Hidden: Sendable {
        var name: String
        var value: String
    }

    func login(issuer: String, clientID: String, action: String, csrf: String, hidden: [Hidden], username: String = "",
               error: String? = nil, status: HTTPResponse.Status = .ok) -> Response {
        var context: [String: Any] = [
            "issuer": issuer, "client_id": clientID, "action": action, "csrf": csrf, "username": username,
            "hidden": hidden.map { ["name": $0.name, "value": $0.value] },
        ]
        if let error { context["error"] = error }
        return page("login", context, status: status)
    }

    func consent(issuer: String, clientID: String, username: String, scopes: [String], action: String, csrf: String, hidden: [Hidden]) -> Response {
        page("consent", [
            "issuer": issuer, "client_id": clientID, "username": username, "scopes": scopes, "has_scopes": !scopes.isEmpty,
            "action": action, "csrf": csrf, "hidden": hidden.map { ["name": $0.name, "value": $0.value] },
        ], status: .ok)
    }

    func account(username: String, consents: [(clientID: String, scopes: [String])], action: String, csrf: String, notice: String? = nil) -> Response {
        var context: [String: Any] = [
            "title": "Your account", "username": username, "action": action, "csrf": csrf, "has_consents": !consents.isEmpty,
            "consents": consents.map { ["client_id": $0.clientID, "scopes": $0.scopes.joined(separator: " ")] },
        ]
        if let notice { context["notice"] = notice }
        return page("account", context, status: .ok)
    }

    func error(title: String, message: String, status: HTTPResponse.Status) -> Response {
        page("error", ["title": title, "message": message], status: status)
    }

    private func page(_ name: String, _ context: [String: Any], status: HTTPResponse.Status) -> Response {
        var context = context
        if context["title"] == nil { context["title"] = name == "login" ? "Sign in" : "Allow access?" }
        let html = library.render(context, withTemplate: name) ?? ""
        return Response(status: status, headers: Self.headers, body: ResponseBody(byteBuffer: ByteBuffer(string: html)))
    }

    static var headers: HTTPFields { headers(contentSecurityPolicy: contentSecurityPolicy) }

    /// The headers of every page (the operator console's pages too, with their own policy).
    static func headers(contentSecurityPolicy: String) -> HTTPFields {
        [
            .contentType: "text/html; charset=utf-8", .cacheControl: "no-store",
            .contentSecurityPolicy: contentSecurityPolicy, HTTPFields.Element.Name("X-Frame-Options")!: "DENY",
            HTTPFields.Element.Name("X-Content-Type-Options")!: "nosniff", HTTPFields.Element.Name("Referrer-Policy")!: "no-referrer",
        ]
    }

    static let templates: [String: String] = [
        "head": """
        <!doctype html>
        <html lang="en">
        <head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{{title}}</title></head>
        <body><main>
        """,
        "hidden": """
        <input type="hidden" name="csrf_token" value="{{csrf}}">
        {{#hidden}}<input type="hidden" name="{{name}}" value="{{value}}">
        {{/hidden}}
        """,
        "login": """
        {{> head}}
        <h1>Sign in</h1>
        <p>The application <strong id="client">{{client_id}}</strong> asks you to sign in at {{issuer}}.</p>
        {{#error}}<p role="alert" id="error">{{error}}</p>{{/error}}
        <form method="post" action="{{action}}">
        {{> hidden}}
        <p><label for="username">Username</label><br><input id="username" name="username" value="{{username}}" autocomplete="username" required autofocus></p>
        <p><label for="password">Password</label><br><input id="password" name="password" type="password" autocomplete="current-password" required></p>
        <p><button type="submit" id="sign-in">Sign in</button></p>
        </form>
        </main></body></html>
        """,
        "consent": """
        {{> head}}
        <h1>Allow access?</h1>
        <p>You are signed in as <strong id="user">{{username}}</strong>.</p>
        <p>The application <strong id="client">{{client_id}}</strong> asks for access to your account{{#has_scopes}} with these scopes:{{/has_scopes}}{{^has_scopes}}.{{/has_scopes}}</p>
        {{#has_scopes}}<ul id="scopes">{{#scopes}}<li>{{.}}</li>{{/scopes}}</ul>{{/has_scopes}}
        <form method="post" action="{{action}}">
        {{> hidden}}
        <p><button type="submit" name="decision" value="allow" id="allow">Allow</button> <button type="submit" name="decision" value="deny" id="deny">Deny</button></p>
        </form>
        </main></body></html>
        """,
        "account": """
        {{> head}}
        <h1>Your account</h1>
        <p>You are signed in as <strong id="user">{{username}}</strong>.</p>
        {{#notice}}<p role="status" id="notice">{{notice}}</p>{{/notice}}
        <h2>Applications you allowed</h2>
        {{#has_consents}}<ul id="consents">{{#consents}}<li>{{client_id}} ({{scopes}})
        <form method="post" action="{{action}}"><input type="hidden" name="csrf_token" value="{{csrf}}"><input type="hidden" name="action" value="revoke"><input type="hidden" name="client_id" value="{{client_id}}"><button type="submit">Revoke access</button></form></li>
        {{/consents}}</ul>{{/has_consents}}
        {{^has_consents}}<p>None.</p>{{/has_consents}}
        <form method="post" action="{{action}}"><input type="hidden" name="csrf_token" value="{{csrf}}"><input type="hidden" name="action" value="logout"><p><button type="submit" id="sign-out">Sign out</button></p></form>
        </main></body></html>
        """,
        "error": """
        {{> head}}
        <h1>{{title}}</h1>
        <p role="alert" id="error">{{message}}</p>
        </main></body></html>
        """,
    ]
}
