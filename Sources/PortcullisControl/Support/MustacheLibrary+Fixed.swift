import Mustache

extension MustacheLibrary {
    /// A library of the pages' templates, compiled once at start, every `{{value}}` escaped by
    /// `ScalarHTMLEscaping` (the pragma is put in front of each template here, so none can miss
    /// it). They are fixed strings the tests render, so a parse error is a programming error,
    /// not bad input.
    init(fixed templates: [String: String]) {
        ScalarHTMLEscaping.register()
        var compiled: [String: MustacheTemplate] = [:]
        for (name, text) in templates {
            compiled[name] = try! MustacheTemplate(string: "{{% CONTENT_TYPE: \(ScalarHTMLEscaping.name)}}" + text)
        }
        self.init(templates: compiled)
    }
}
