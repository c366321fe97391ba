/// Errors raised while building a tokenizer. Encoding and decoding never throw.
public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    /// The vocabulary is empty.
    case emptyVocabulary
    /// `tokenTypes` was given but its length differs from the number of tokens.
    case tokenTypeCountMismatch(tokens: Int, types: Int)
    /// A merges line is not of the form "left right" (exactly one space). `line` is 1-based.
    case badMergeLine(line: Int, text: String)
    /// A merge refers to a token (or produces a merged token) that is not in the vocabulary.
    case mergeTokenMissing(line: Int, token: String)
    /// A special id (bos/eos/unk) is outside the vocabulary.
    case specialIDOutOfRange(name: String, id: Int32, vocabularySize: Int)
    /// Two vocabulary entries have the same string, or an id is used twice.
    case duplicateToken(token: String, id: Int)
    /// tokenizer.json could not be parsed as JSON or lacks a required field.
    case malformedTokenizerJSON(String)
    /// tokenizer.json uses a model type other than byte-level BPE.
    case unsupportedModelType(String)
    /// tokenizer.json uses a pre-tokenizer / normalizer / decoder configuration this implementation does not know.
    case unsupportedConfiguration(String)

    public var description: String {
        switch self {
        case .emptyVocabulary:
            return "tokenizer vocabulary is empty; check that the model file carries tokenizer.ggml.tokens (GGUF) or model.vocab (tokenizer.json)"
        case let .tokenTypeCountMismatch(tokens, types):
            return "token type array has \(types) entries but the vocabulary has \(tokens) tokens; the tokenizer metadata is inconsistent"
        case let .badMergeLine(line, text):
            return "merge #\(line) '\(text)' is not of the form 'left right' (two tokens separated by exactly one space)"
        case let .mergeTokenMissing(line, token):
            return "merge #\(line) refers to token '\(token)' which is not in the vocabulary; vocabulary and merges do not belong together"
        case let .specialIDOutOfRange(name, id, size):
            return "\(name) token id \(id) is outside the vocabulary (size \(size))"
        case let .duplicateToken(token, id):
            return "token '\(token)' (id \(id)) appears twice in the vocabulary"
        case let .malformedTokenizerJSON(why):
            return "malformed tokenizer.json: \(why)"
        case let .unsupportedModelType(type):
            return "unsupported tokenizer model type '\(type)'; only byte-level BPE (model.type \"BPE\") is supported"
        case let .unsupportedConfiguration(why):
            return "unsupported tokenizer configuration: \(why)"
        }
    }
}
