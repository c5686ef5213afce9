// libFuzzer entry point for the JOSE parsers and verifier and the gateway's HTTP path
// (docs/fuzzing.md). The target is chosen by `PORTCULLIS_FUZZ_TARGET` or a leading
// `--target=NAME` argument (`FuzzTarget`); without either it is `jose`.
//
// Built with `-DFUZZING -sanitize=fuzzer,address -parse-as-library`, libFuzzer supplies `main` and
// calls `LLVMFuzzerTestOneInput`. In a normal build this is a plain program that replays inputs
// through the same harness (so `swift build` of every target keeps working, and an input the
// fuzzer found can be replayed without sanitizers):
//   PortcullisFuzz [--target=NAME] FILE|DIR...          replay inputs
//   PortcullisFuzz [--target=NAME] --write-seeds DIR    write the harness's seed inputs
// (No `main.swift`: libFuzzer builds need `-parse-as-library`, which forbids top-level code even
// in an inactive `#if` branch.)

#if FUZZING
#if canImport(Glibc)
import Glibc
#endif

/// Chosen once, before libFuzzer starts calling in (`fuzzMain` sets the environment first).
private let target = FuzzTarget.selected()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    target.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

/// SwiftPM links executables with `main=<Target>_main`, which would replace libFuzzer's `main`;
/// so provide that symbol and hand control to libFuzzer's driver (LLVMFuzzerRunDriver, LLVM 11+).
@_cdecl("PortcullisFuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    typealias Callback = @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
    typealias Driver = @convention(c) (UnsafeMutablePointer<CInt>, UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>, Callback) -> CInt
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "LLVMFuzzerRunDriver") else {
        let message = "PortcullisFuzz: libFuzzer's LLVMFuzzerRunDriver is not linked in (build with -sanitize=fuzzer)\n"
        _ = message.withCString { write(2, $0, strlen($0)) }
        return 2
    }
    let driver = unsafeBitCast(symbol, to: Driver.self)
    var argc = argc
    var argv = argv
    // `--target=NAME` right after the program name goes into the environment (where forked
    // workers find it too) and is hidden from libFuzzer, which would take it for a corpus folder.
    if argc > 1, let base = argv, let first = base[1], String(cString: first).hasPrefix("--target=") {
        var arguments = [String(cString: first)]
        FuzzTarget.takeTargetArgument(&arguments)
        base[1] = base[0]
        argv = base + 1
        argc -= 1
    }
    _ = target
    return driver(&argc, &argv, fuzzOneInput)
}
#else
import Foundation

@main
struct FuzzReplay {
    static func main() throws {
        var arguments = Array(CommandLine.arguments.dropFirst())
        FuzzTarget.takeTargetArgument(&arguments)
        let target = FuzzTarget.selected()
        if arguments.first == "--write-seeds", arguments.count == 2 {
            try FileManager.default.createDirectory(atPath: arguments[1], withIntermediateDirectories: true)
            for (index, seed) in target.seeds.enumerated() {
                try Data(seed).write(to: URL(fileURLWithPath: arguments[1]).appendingPathComponent("seed-\(index)"))
            }
            print("wrote \(target.seeds.count) \(target.rawValue) seeds to \(arguments[1])")
            return
        }
        var files: [String] = []
        for path in arguments {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                FileHandle.standardError.write(Data("no such file: \(path)\n".utf8))
                exit(2)
            }
            if isDirectory.boolValue {
                files += try FileManager.default.contentsOfDirectory(atPath: path).sorted().map { path + "/" + $0 }
            } else {
                files.append(path)
            }
        }
        for file in files {
            let data = try Data(contentsOf: URL(fileURLWithPath: file))
            data.withUnsafeBytes { target.run($0) }
        }
        print("replayed \(files.count) \(target.rawValue) inputs without a failure")
    }
}
#endif
