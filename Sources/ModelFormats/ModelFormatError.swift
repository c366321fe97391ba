/// Errors of the file-format layer. Each says which file, what is wrong, and where.
public enum ModelFormatError: Error, CustomStringConvertible, Equatable {
    case cannotOpen(path: String, reason: String)
    case notGGUF(path: String)
    case unsupportedGGUFVersion(path: String, version: UInt32)
    case truncated(path: String, what: String, offset: Int, fileSize: Int)
    case invalidMetadata(path: String, key: String, reason: String)
    case invalidTensor(path: String, name: String, reason: String)
    case unsupportedTensorType(name: String, type: String)
    case missingTensor(name: String)
    case invalidSafetensors(path: String, reason: String)
    case writeFailed(path: String, reason: String)

    public var description: String {
        switch self {
        case .cannotOpen(let p, let r):
            return "cannot open \(p): \(r)"
        case .notGGUF(let p):
            return "\(p) is not a GGUF file (bad magic); pass a .gguf model or a Hugging Face directory"
        case .unsupportedGGUFVersion(let p, let v):
            return "\(p) is GGUF version \(v); AnchorKV reads versions 2 and 3 (re-convert with a current llama.cpp)"
        case .truncated(let p, let what, let off, let size):
            return "\(p) is truncated or corrupt: \(what) at byte \(off) runs past the end of the file (\(size) bytes); re-download the file"
        case .invalidMetadata(let p, let k, let r):
            return "\(p): metadata '\(k)' is invalid: \(r)"
        case .invalidTensor(let p, let n, let r):
            return "\(p): tensor '\(n)' is invalid: \(r)"
        case .unsupportedTensorType(let n, let t):
            return "tensor '\(n)' has type \(t), which AnchorKV cannot decode (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)"
        case .missingTensor(let n):
            return "no tensor named '\(n)' in the model files"
        case .invalidSafetensors(let p, let r):
            return "\(p) is not a valid safetensors file: \(r)"
        case .writeFailed(let p, let r):
            return "cannot write \(p): \(r)"
        }
    }
}
