import ArgumentParser
import Foundation
import LLM

/// --model, --threads and --config, shared by every command that runs the model.
struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Model: a .gguf file or a Hugging Face directory (config.json, *.safetensors, tokenizer.json).",
                                            discussion: "Defaults to $ANCHORKV_MODEL, else the config file's model, else the model tools/setup.sh installed in models/."))
    var model: String?

    @Option(name: .long, help: "Worker threads (default: $ANCHORKV_THREADS, the config file, or all cores).")
    var threads: Int?

    @Option(name: .long, help: "Config file (default: $ANCHORKV_CONFIG or config/anchorkv.json in the working directory or a parent).")
    var config: String?

    func appConfig() throws -> AppConfig { try AppConfig.load(explicitPath: config) }

    func load() throws -> LlamaModel {
        let cfg = try appConfig()
        let env = ProcessInfo.processInfo.environment
        if let t = threads {
            guard t > 0 else { throw ValidationError("--threads must be positive") }
            setenv("ANCHORKV_THREADS", String(t), 1)
        } else if env["ANCHORKV_THREADS"] == nil, let t = cfg.threads {
            setenv("ANCHORKV_THREADS", String(t), 1)
        }
        let envModel = env["ANCHORKV_MODEL"].flatMap { $0.isEmpty ? nil : $0 }
        let path = model ?? envModel ?? cfg.model ?? LlamaModel.defaultModelPath()
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
