import ArgumentParser
import Foundation
import LLM

/// --model, shared by every command that runs the model.
struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Model: a .gguf file or a Hugging Face directory (config.json, *.safetensors, tokenizer.json).",
                                            discussion: "Defaults to $ANCHORKV_MODEL, else the model tools/setup.sh installed in models/."))
    var model: String?

    @Option(name: .long, help: "Worker threads (default: $ANCHORKV_THREADS or all cores).")
    var threads: Int?

    func load() throws -> LlamaModel {
        if let t = threads {
            guard t > 0 else { throw ValidationError("--threads must be positive") }
            setenv("ANCHORKV_THREADS", String(t), 1)
        }
        let path = model ?? LlamaModel.defaultModelPath()
        do {
            return try LlamaModel.load(path: path)
        } catch {
            throw CLIError("cannot load model \(path): \(error)")
        }
    }
}

/// A user-facing failure: printed as "error: ..." with exit code 1, no stack trace.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}

enum StandardError {
    static func write(_ s: String) {
        FileHandle.standardError.write(Data(s.utf8))
    }
}

enum Clock {
    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
}

func jsonString(_ object: Any) -> String {
    let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
    return String(decoding: data, as: UTF8.self)
}
