import CFuzzDriver
import Foundation
import FuzzTargets

// anchorkv-fuzz: the coverage-guided fuzzers of the file and request readers (docs/fuzzing.md).
//   anchorkv-fuzz TARGET [libFuzzer flags] [CORPUS_DIR ...]   fuzz (the build of tools/fuzz/run.sh)
//   anchorkv-fuzz replay TARGET FILE_OR_DIR ...              run inputs once each (any build)
//   anchorkv-fuzz list                                        the targets
// The tiny test model comes from --model PATH, $ANCHORKV_FUZZ_MODEL, or Tests/LLMTests/Goldens/tiny-llama.

func usage() -> Never {
    let names = FuzzTarget.allCases.map { "  \($0.rawValue.padding(toLength: 15, withPad: " ", startingAt: 0)) \($0.summary)" }.joined(separator: "\n")
    FileHandle.standardError.write(Data("""
    usage: anchorkv-fuzz TARGET [libFuzzer flags] [CORPUS_DIR ...]   (fuzzing build: bash tools/fuzz/run.sh)
           anchorkv-fuzz replay TARGET FILE_OR_DIR ...              (any build: each input once)
           anchorkv-fuzz list
    options: --model PATH   the tiny Llama the model-dependent targets check against
    targets:
    \(names)

    """.utf8))
    exit(64)
}

var args = Array(CommandLine.arguments.dropFirst())
var modelPath = ProcessInfo.processInfo.environment["ANCHORKV_FUZZ_MODEL"] ?? "Tests/LLMTests/Goldens/tiny-llama"
if let i = args.firstIndex(of: "--model") {
    guard i + 1 < args.count else { usage() }
    modelPath = args[i + 1]
    args.removeSubrange(i...(i + 1))
}
guard let command = args.first else { usage() }
if command == "list" {
    for t in FuzzTarget.allCases { print("\(t.rawValue)\t\(t.summary)") }
    exit(0)
}
if command == "-h" || command == "--help" { usage() }

/// Every regular file named or inside a named folder, sorted (folders one level deep, as libFuzzer's corpora).
func inputs(_ paths: [String]) -> [String] {
    var out: [String] = []
    for p in paths {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: p, isDirectory: &isDir) else {
            FileHandle.standardError.write(Data("anchorkv-fuzz: \(p) does not exist\n".utf8))
            exit(66)
        }
        if isDir.boolValue {
            out += ((try? FileManager.default.contentsOfDirectory(atPath: p)) ?? []).sorted().map { "\(p)/\($0)" }
        } else {
            out.append(p)
        }
    }
    return out
}

if command == "replay" {
    guard args.count >= 3, let target = FuzzTarget(rawValue: args[1]) else { usage() }
    let context = FuzzContext(modelPath: modelPath)
    var accepted = 0
    let files = inputs(Array(args.dropFirst(2)))
    for f in files {
        guard let data = FileManager.default.contents(atPath: f) else { continue }
        if data.withUnsafeBytes({ target.run($0, context: context) }) { accepted += 1 }
    }
    print("\(target.rawValue): replayed \(files.count) inputs, \(accepted) accepted, \(files.count - accepted) refused, 0 crashes")
    exit(0)
}

guard let target = FuzzTarget(rawValue: command) else { usage() }
guard akv_fuzzer_linked() == 1 else {
    FileHandle.standardError.write(Data("anchorkv-fuzz: this build has no libFuzzer; build the fuzzing binary with `bash tools/fuzz/run.sh` (or use `replay`)\n".utf8))
    exit(69)
}

// libFuzzer calls back through a C function pointer, which captures nothing: the target and
// its context are globals, set once before the driver starts (libFuzzer runs inputs on one thread).
nonisolated(unsafe) var currentTarget = target
nonisolated(unsafe) var currentContext = FuzzContext(modelPath: modelPath)

// libFuzzer gets the program name and everything after the target name.
var cArgs: [UnsafeMutablePointer<CChar>?] = ([CommandLine.arguments[0]] + args.dropFirst()).map { strdup($0) } + [nil]
var argc = Int32(cArgs.count - 1)
let rc = cArgs.withUnsafeMutableBufferPointer { buf -> Int32 in
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = buf.baseAddress
    return akv_fuzzer_run(&argc, &argv) { data, size in
        _ = currentTarget.run(UnsafeRawBufferPointer(start: data, count: size), context: currentContext)
        return 0
    }
}
exit(rc)
