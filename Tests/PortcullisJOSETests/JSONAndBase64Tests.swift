@testable import PortcullisJOSE
import Testing

@Suite("strict JOSE JSON reader")
struct JSONReaderTests {
    func parse(_ text: String) throws(JSONParseError) -> JSONValue { try JOSEJSONReader.parse(Array(text.utf8)) }

    @Test("values of every kind, escapes and surrogate pairs")
    func accepts() throws {
        let value = try parse(#" {"a":[1,-2,3.5,1e3,true,false,null],"s":"x\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00","big":18446744073709551616,"min":-9223372036854775808} "#)
        #expect(value["a"] == [1, -2, 3.5, 1000.0, true, false, nil])
        #expect(value["s"] == .string("x\"\\/\u{8}\u{c}\n\r\té😀"))
        #expect(value["big"] == .number(18446744073709551616.0))
        #expect(value["min"] == .integer(Int64.min))
    }

    @Test("refused inputs", arguments: [
        #"{"a":1,"a":2}"#,            // duplicate member
        #"{"a":1,"\u0061":2}"#,       // duplicate after unescaping
        "\u{FEFF}{}",                  // BOM
        #"{"a":NaN}"#, #"{"a":Infinity}"#, #"{"a":-Infinity}"#,
        #"{"a":1e400}"#,               // overflows a Double
        #"{"a":01}"#, #"{"a":1.}"#, #"{"a":.5}"#, #"{"a":+1}"#, #"{"a":-}"#,
        #"{"a":"\ud800"}"#,            // lone high surrogate
        #"{"a":"\udc00"}"#,            // lone low surrogate
        #"{"a":"\x"}"#, #"{"a":"\u12"}"#,
        "{\"a\":\"\u{01}\"}",          // raw control character
        #"{"a":1,}"#, #"[1,]"#, #"{"a" 1}"#, #"{a:1}"#, "{'a':1}",
        #"{"a":1} x"#, #"{"a":1}{}"#, "", " ", #"{"a":tru}"#, #"{"a":nul}"#,
        #"{"a":"unterminated}"#,
    ])
    func refuses(_ text: String) {
        #expect(throws: JSONParseError.self) { try parse(text) }
    }

    @Test("invalid UTF-8 is refused: stray continuation, overlong, encoded surrogate, truncated")
    func invalidUTF8() throws {
        for bytes: [UInt8] in [[0x80], [0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xE2, 0x82], [0xF4, 0x90, 0x80, 0x80], [0xFF]] {
            let document = Array(#"{"a":""#.utf8) + bytes + Array(#""}"#.utf8)
            #expect(throws: JSONParseError.self) { try JOSEJSONReader.parse(document) }
        }
        #expect(try JOSEJSONReader.parse(Array(#"{"a":"é"}"#.utf8))["a"] == "é")
    }

    @Test("nesting up to 64 levels is accepted, 65 is not")
    func depth() throws {
        let ok = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        _ = try parse(ok)
        let deep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        #expect(throws: JSONParseError.self) { try parse(deep) }
        let deepObjects = String(repeating: #"{"a":"#, count: 65) + "1" + String(repeating: "}", count: 65)
        #expect(throws: JSONParseError.self) { try parse(deepObjects) }
    }

    @Test("the writer's output reads back to the same value")
    func roundTrip() throws {
        let value: JSONValue = ["b": [1, 2.5, "x\n\"y\u{1}"], "a": ["nested": true, "n": nil], "i": .integer(Int64.max)]
        let text = JSONWriter.serialize(value)
        #expect(text.hasPrefix(#"{"a":"#))  // sorted keys
        #expect(try parse(text) == value)
    }
}

@Suite("strict base64url")
struct Base64URLTests {
    @Test("round trips every length")
    func roundTrip() {
        for length in 0..<40 {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            let encoded = Base64URL.encode(bytes)
            #expect(!encoded.contains("=") && !encoded.contains("+") && !encoded.contains("/"))
            #expect(Base64URL.decode(encoded) == bytes)
        }
        #expect(Base64URL.decode("_-8") == [0xFF, 0xEF])
    }

    @Test("refused encodings", arguments: ["QQ==", "QQ=", "Q", "QUJD=", "+/8", "Q Q", "QQ\n", "QR", "QUF", "QUJDRA=", "Zm9v!"])
    func refuses(_ text: String) {
        // "QR" and "QUF" decode to the same bytes as "QQ" / "QUE" under a lax decoder (non-zero trailing bits).
        #expect(Base64URL.decode(text) == nil, "\(text)")
    }

    @Test("canonical forms of the trailing-bit cases decode")
    func canonical() {
        #expect(Base64URL.decode("QQ") == [0x41])
        #expect(Base64URL.decode("QUE") == [0x41, 0x41])
    }
}
