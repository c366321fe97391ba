/// Errors of the model layer. Messages say what is wrong and what to do about it.
public enum LLMError: Error, CustomStringConvertible, Equatable {
    case modelNotFound(String)
    case unsupportedArchitecture(String)
    case invalidConfig(String)
    case missingTensor(String)
    case shapeMismatch(tensor: String, expected: [Int], found: [Int])
    case unsupportedTensorType(tensor: String, type: String)
    case contextOverflow(needed: Int, limit: Int)
    case invalidInput(String)

    public var description: String {
        switch self {
        case .modelNotFound(let p):
            return "model not found at \(p); run tools/setup.sh to fetch the default model, or pass --model PATH (a .gguf file or a Hugging Face directory with config.json)"
        case .unsupportedArchitecture(let a):
            return "unsupported model architecture '\(a)'; AnchorKV runs Llama-family models (GGUF general.architecture = llama, or HF LlamaForCausalLM)"
        case .invalidConfig(let why):
            return "invalid model configuration: \(why)"
        case .missingTensor(let n):
            return "model file has no tensor '\(n)'; the file is incomplete or not a Llama checkpoint"
        case .shapeMismatch(let t, let e, let f):
            return "tensor '\(t)' has shape \(f), expected \(e); the weights do not match the model configuration"
        case .unsupportedTensorType(let t, let ty):
            return "tensor '\(t)' has type \(ty), which this engine cannot compute with; re-export the model as F32/F16/BF16/Q8_0/Q4_0/Q4_1/Q5_0/Q4_K/Q6_K"
        case .contextOverflow(let n, let l):
            return "input needs \(n) positions but the model's context is \(l) tokens; shorten the input"
        case .invalidInput(let why):
            return "invalid input: \(why)"
        }
    }
}
