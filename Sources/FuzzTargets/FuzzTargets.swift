import Foundation
import HTTPService
import AnchorKVCore
import KVStore
import LLM
import ModelFormats
import RedisCluster
import SAC
import Snapshots
import Tokenizer

/// The readers an attacker can reach with a file or a request body, one fuzz target each. A
/// target feeds arbitrary bytes through the same public entry point the product uses and then
/// through what the product does next with the result (a loaded model is checked, a KV file is
/// decoded against a model, a tokenizer encodes text). A thrown error is the expected answer to
/// bad input; a trap, a signal or an unbounded allocation is a bug (libFuzzer reports it).
public enum FuzzTarget: String, CaseIterable, Sendable {
    case gguf
    case safetensors
    case kvFile = "kv-file"
    case snapshot
    case tensorRecord = "tensor-record"
    case tokenizerJSON = "tokenizer-json"
    case httpBody = "http-body"
    case resp

    /// What one input exercises, for --help and the docs.
    public var summary: String {
        switch self {
        case .gguf: return "a GGUF file: GGUFFile's header, metadata and tensor table, then the Llama loader (config, tokenizer, every tensor's shape and type)"
        case .safetensors: return "a safetensors file: header and tensor table, each small tensor read as floats, then loaded as a SAC adapter for the tiny model"
        case .kvFile: return "a KV file (anchorkv compress / GET .../kv): metadata and tensors, then answered from with the tiny model"
        case .snapshot: return "a snapshot file: frames, manifest, documents, KV records, trailer, checked against a 2-layer model shape"
        case .tensorRecord: return "one stored tensor record: header, sizes, LZ4 payload, positions and decode"
        case .tokenizerJSON: return "a tokenizer.json: vocabulary, merges, pre-tokenizer, added tokens, then an encode/decode round"
        case .httpBody: return "a JSON request body, parsed as every route that takes one (ingest, query, chat completions, export, compact)"
        case .resp: return "bytes from a Redis Cluster node: RESP2 replies decoded one after another (accepted when they decode whole)"
        }
    }

    /// Runs one input; true when the product accepted it (seeds must be accepted, see FuzzTargetsTests).
    @discardableResult
    public func run(_ data: UnsafeRawBufferPointer, context: FuzzContext) -> Bool {
        do {
            switch self {
            case .gguf:
                let path = try context.file(data, extension: "gguf")
                let file = try GGUFFile(path: path)
                for t in file.tensors where t.elementCount <= 1 << 14 { _ = try file.dequantize(t) }
                _ = try LlamaModel.load(path: path)
            case .safetensors:
                let path = try context.file(data, extension: "safetensors")
                let file = try SafetensorsFile(path: path)
                for name in file.tensors.keys.sorted() where (file.tensors[name]?.elementCount ?? 0) <= 1 << 14 { _ = try file.floats(name) }
                _ = try SACAdapter.load(path: path, for: try context.model())
            case .kvFile:
                let path = try context.file(data, extension: "akv")
                let ctx = try KVFile.read(path).context
                let model = try context.model()
                _ = try SACDecoder(model: model, adapter: nil).answer(ctx, question: "Who?", maxTokens: 1)
            case .snapshot:
                let path = try context.file(data, extension: "akvs")
                _ = try SnapshotReader.read(path: path, expect: context.modelShape) { doc in
                    for w in doc.kv { for record in w { _ = try record.withUnsafeBytes { try TensorCodec.decode($0) } } }
                }
            case .tensorRecord:
                _ = try TensorCodec.positions(data)
                _ = try TensorCodec.decode(data)
            case .tokenizerJSON:
                let tok = try BPETokenizer.fromTokenizerJSON(Data(data))
                let ids = tok.encode("Hello, world! 123 naïve — 日本語 <|im_start|>user\n")
                _ = tok.decode(ids)
            case .httpBody:
                let body = [UInt8](data)
                var accepted = false
                for route in RequestBodies.Route.allCases {
                    if (try? RequestBodies.check(route, body: body, config: context.serviceConfig, modelID: "SmolLM2-135M-Instruct")) != nil { accepted = true }
                }
                return accepted
            case .resp:
                var rest = [UInt8](data)[...]
                var values = 0
                while let (v, n) = try RESPDecoder().decode(rest) {
                    _ = v.errorCode
                    rest = rest.dropFirst(n)
                    values += 1
                }
                return values > 0 && rest.isEmpty
            }
            return true
        } catch {
            return false
        }
    }
}

/// What the targets share across inputs: one scratch file per process (readers take paths and
/// memory-map them, as the product does) and the tiny test model, loaded once.
public final class FuzzContext: @unchecked Sendable {  // used from libFuzzer's one thread only
    public let modelPath: String
    public let modelShape = ModelShape(layers: 2, kvDim: 32)  // the tiny model's
    let serviceConfig = ServiceConfig()
    private let scratch: String
    private var loaded: LlamaModel?

    /// `modelPath`: the tiny Llama in Tests/LLMTests/Goldens/tiny-llama (2 layers, kv_dim 32).
    public init(modelPath: String) {
        self.modelPath = modelPath
        let dir = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        scratch = "\(dir)/anchorkv-fuzz-\(getpid())"
    }

    deinit { for ext in ["gguf", "safetensors", "akv", "akvs"] { unlink("\(scratch).\(ext)") } }

    func file(_ data: UnsafeRawBufferPointer, extension ext: String) throws -> String {
        let path = "\(scratch).\(ext)"
        try Data(data).write(to: URL(fileURLWithPath: path))
        return path
    }

    func model() throws -> LlamaModel {
        if let loaded { return loaded }
        let m = try LlamaModel.load(path: modelPath)
        loaded = m
        return m
    }
}
