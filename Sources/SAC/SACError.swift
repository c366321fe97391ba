/// Errors of the SAC layer: each names what is wrong and what to do about it.
public enum SACError: Error, CustomStringConvertible, Equatable {
    case invalidAdapter(path: String, reason: String)
    case modelMismatch(what: String, expected: String, found: String)
    case adapterMismatch(expected: String, found: String)
    case invalidKVFile(path: String, reason: String)
    case invalidInput(String)
    /// The encoder's deadline passed before window `windowsDone` (of `windows`) was started.
    case deadlinePassed(windowsDone: Int, windows: Int)

    public var description: String {
        switch self {
        case .invalidAdapter(let p, let r):
            return "invalid SAC adapter \(p): \(r)"
        case .modelMismatch(let what, let e, let f):
            return "\(what) was made for base model \(e), but the loaded model is \(f); load the model it was made with (--model)"
        case .adapterMismatch(let e, let f):
            return "the compressed context was encoded with adapter \(e), but the decoder has adapter \(f); pass the same --adapter"
        case .invalidKVFile(let p, let r):
            return "invalid KV file \(p): \(r)"
        case .invalidInput(let why):
            return "invalid input: \(why)"
        case .deadlinePassed(let done, let n):
            return "the encoding deadline passed after \(done) of \(n) windows"
        }
    }
}
