import Mustache

extension MustacheLibrary {
    /// A library of the pages' templates, compiled once at start. They are fixed strings the
    /// tests render, so a parse error is a programming error, not bad input.
    init(fixed templates: [String: String]) {
        var compiled: [String: MustacheTemplate] = [:]
        for (name, text) in templates {
            compiled[name] = try! MustacheTemplate(string: text)
        }
        self.init(templates: compiled)
    }
}
