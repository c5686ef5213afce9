// libFuzzer entry point for the JOSE parsers and verifier (docs/fuzzing.md).
//
// Built with `-DFUZZING -sanitize=fuzzer,address -parse-as-library`, libFuzzer supplies `main` and
// calls `LLVMFuzzerTestOneInput`. In a normal build this file is a plain program that replays
// corpus files through the same harness (so `swift build` of every target keeps working, and
// crashes found by the fuzzer can be replayed without sanitizers):
//   PortcullisFuzz FILE|DIR...          replay inputs
//   PortcullisFuzz --write-seeds DIR    write the seed corpus

#if FUZZING
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    FuzzHarness.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
#else
import Foundation

let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.first == "--write-seeds", arguments.count == 2 {
    try FileManager.default.createDirectory(atPath: arguments[1], withIntermediateDirectories: true)
    for (index, seed) in FuzzHarness.fixture.seeds.enumerated() {
        try Data(seed).write(to: URL(fileURLWithPath: arguments[1]).appendingPathComponent("seed-\(index)"))
    }
    print("wrote \(FuzzHarness.fixture.seeds.count) seeds to \(arguments[1])")
} else {
    var files: [String] = []
    for path in arguments {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            FileHandle.standardError.write(Data("no such file: \(path)\n".utf8))
            exit(2)
        }
        if isDirectory.boolValue {
            let names = try FileManager.default.contentsOfDirectory(atPath: path).sorted()
            files += names.map { path + "/" + $0 }
        } else {
            files.append(path)
        }
    }
    for file in files {
        let data = try Data(contentsOf: URL(fileURLWithPath: file))
        data.withUnsafeBytes { FuzzHarness.run($0) }
    }
    print("replayed \(files.count) inputs without a failure")
}
#endif
