import Foundation

/// Minimal JSON tree for reading HF tokenizer.json.
enum JSONValue: Decodable {
    case null, bool(Bool), number(Double), string(String), array([JSONValue]), object([String: JSONValue])

    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let d = try? c.decode(Double.self) { self = .number(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    subscript(key: String) -> JSONValue? {
        if case let .object(o) = self { return o[key] }
        return nil
    }
    var string: String? { if case let .string(s) = self { return s }; return nil }
    var bool: Bool? { if case let .bool(b) = self { return b }; return nil }
    var array: [JSONValue]? { if case let .array(a) = self { return a }; return nil }
    var object: [String: JSONValue]? { if case let .object(o) = self { return o }; return nil }
    var int: Int? {
        if case let .number(d) = self, d.rounded() == d, abs(d) < 1e15 { return Int(d) }
        return nil
    }
    var isNull: Bool { if case .null = self { return true }; return false }
}

extension BPETokenizer {
    static let llama3Pattern =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// Loads an HF tokenizer.json whose model is byte-level BPE and whose pre-tokenizer is one of
    /// the supported kinds (ByteLevel with regex → gpt2; Sequence[Digits(individual), ByteLevel] → smollm;
    /// Sequence[Split(llama3 regex), ByteLevel(use_regex: false)] → llama3).
    /// Added tokens with `special: true` are special; other added tokens are always matched literally.
    /// BOS comes from a TemplateProcessing post-processor (then addBOS is true) or a known token name;
    /// EOS from a known name (<|end_of_text|>, <|im_end|>, <|endoftext|>, </s>, <|eot_id|>).
    public static func fromTokenizerJSON(_ data: Data) throws -> BPETokenizer {
        let root: JSONValue
        do {
            root = try JSONDecoder().decode(JSONValue.self, from: data)
        } catch {
            throw TokenizerError.malformedTokenizerJSON("not valid JSON (\(error))")
        }
        guard root.object != nil else { throw TokenizerError.malformedTokenizerJSON("top level is not an object") }
        guard let model = root["model"]?.object else {
            throw TokenizerError.malformedTokenizerJSON("missing \"model\" object")
        }
        let type = model["type"]?.string ?? "BPE"
        guard type == "BPE" else { throw TokenizerError.unsupportedModelType(type) }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let v = model[key], let s = v.string, !s.isEmpty {
                throw TokenizerError.unsupportedConfiguration("model.\(key) = \"\(s)\" (not byte-level BPE)")
            }
        }
        if let norm = root["normalizer"], !norm.isNull {
            let isEmptySequence = norm["type"]?.string == "Sequence" && (norm["normalizers"]?.array?.isEmpty ?? false)
            if !isEmptySequence {
                throw TokenizerError.unsupportedConfiguration("normalizer \(norm["type"]?.string ?? "?") is not supported")
            }
        }
        if let dec = root["decoder"], !dec.isNull, dec["type"]?.string != "ByteLevel" {
            throw TokenizerError.unsupportedConfiguration("decoder \(dec["type"]?.string ?? "?") is not ByteLevel")
        }
        let kind = try detectPreTokenizer(root["pre_tokenizer"])

        // Vocabulary.
        guard let vocab = model["vocab"]?.object else {
            throw TokenizerError.malformedTokenizerJSON("model.vocab is missing or not an object")
        }
        var byID: [Int: String] = [:]
        var maxID = -1
        for (tok, v) in vocab {
            guard let id = v.int, id >= 0, id < 10_000_000 else {
                throw TokenizerError.malformedTokenizerJSON("model.vocab entry \"\(tok)\" has no valid integer id")
            }
            if byID[id] != nil { throw TokenizerError.duplicateToken(token: tok, id: id) }
            byID[id] = tok
            maxID = max(maxID, id)
        }
        var added: [(id: Int32, special: Bool)] = []
        for (n, a) in (root["added_tokens"]?.array ?? []).enumerated() {
            guard let id = a["id"]?.int, id >= 0, id < 10_000_000, let content = a["content"]?.string, !content.isEmpty else {
                throw TokenizerError.malformedTokenizerJSON("added_tokens[\(n)] needs an integer \"id\" and a non-empty \"content\"")
            }
            if let existing = byID[id], existing != content {
                throw TokenizerError.malformedTokenizerJSON("added token id \(id) '\(content)' clashes with vocab entry '\(existing)'")
            }
            byID[id] = content
            maxID = max(maxID, id)
            added.append((Int32(id), a["special"]?.bool ?? false))
        }
        guard maxID >= 0 else { throw TokenizerError.emptyVocabulary }
        // Ids are 0..<count with none missing: a hole would be a token that decodes to nothing,
        // and a far id would size the table by the claim instead of the entries.
        guard byID.count == maxID + 1 else {
            let hole = (0...maxID).first { byID[$0] == nil } ?? 0
            throw TokenizerError.malformedTokenizerJSON("token ids run to \(maxID) but only \(byID.count) tokens are defined (id \(hole) has none); model.vocab and added_tokens must cover 0..<count")
        }
        var tokens = [String](repeating: "", count: maxID + 1)
        for (id, t) in byID { tokens[id] = t }

        // Merges: "a b" strings (legacy) or ["a", "b"] pairs.
        var pairs: [(String, String)] = []
        let merges = model["merges"]?.array ?? []
        pairs.reserveCapacity(merges.count)
        for (n, m) in merges.enumerated() {
            if let s = m.string {
                let parts = s.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                    throw TokenizerError.badMergeLine(line: n + 1, text: s)
                }
                pairs.append((String(parts[0]), String(parts[1])))
            } else if let a = m.array, a.count == 2, let l = a[0].string, let r = a[1].string {
                pairs.append((l, r))
            } else {
                throw TokenizerError.badMergeLine(line: n + 1, text: "\(m)")
            }
        }

        let unk = model["unk_token"]?.string.flatMap { name in byID.first(where: { $0.value == name })?.key }
        var bos: Int32? = nil
        var addBOS = false
        if let id = templateBOS(root["post_processor"], added: added, tokens: tokens) {
            bos = id
            addBOS = true
        }
        func find(_ names: [String]) -> Int32? {
            for name in names {
                if let a = added.first(where: { tokens[Int($0.id)] == name }) { return a.id }
            }
            return nil
        }
        if bos == nil { bos = find(["<|begin_of_text|>", "<s>", "<|startoftext|>", "<|im_start|>"]) }
        let eos = find(["<|end_of_text|>", "<|im_end|>", "<|endoftext|>", "</s>", "<|eot_id|>"])

        return try BPETokenizer(tokens: tokens, mergePairs: pairs, added: added, preTokenizer: kind,
                                ignoreMerges: model["ignore_merges"]?.bool ?? false,
                                bosID: bos, eosID: eos, unknownID: unk.map { Int32($0) }, addBOS: addBOS)
    }

    private static func templateBOS(_ pp: JSONValue?, added: [(id: Int32, special: Bool)], tokens: [String]) -> Int32? {
        guard let pp, !pp.isNull else { return nil }
        if pp["type"]?.string == "Sequence" {
            for p in pp["processors"]?.array ?? [] {
                if let id = templateBOS(p, added: added, tokens: tokens) { return id }
            }
            return nil
        }
        guard pp["type"]?.string == "TemplateProcessing",
              let first = pp["single"]?.array?.first,
              let name = first["SpecialToken"]?["id"]?.string,
              let id = tokens.firstIndex(of: name) else { return nil }
        return Int32(id)
    }

    private static func isByteLevelWithRegex(_ p: JSONValue, regex: Bool) throws -> Bool {
        guard p["type"]?.string == "ByteLevel" else { return false }
        if p["add_prefix_space"]?.bool == true {
            throw TokenizerError.unsupportedConfiguration("ByteLevel pre-tokenizer with add_prefix_space = true")
        }
        return (p["use_regex"]?.bool ?? true) == regex
    }

    static func detectPreTokenizer(_ pre: JSONValue?) throws -> PreTokenizerKind {
        guard let pre, !pre.isNull else {
            throw TokenizerError.unsupportedConfiguration("pre_tokenizer is null; a byte-level pre-tokenizer is required")
        }
        if try isByteLevelWithRegex(pre, regex: true) { return .gpt2 }
        if pre["type"]?.string == "Sequence", let seq = pre["pretokenizers"]?.array {
            if seq.count == 1, try isByteLevelWithRegex(seq[0], regex: true) { return .gpt2 }
            if seq.count == 2 {
                let a = seq[0], b = seq[1]
                if a["type"]?.string == "Digits", a["individual_digits"]?.bool == true,
                   try isByteLevelWithRegex(b, regex: true) {
                    return .smollm
                }
                if a["type"]?.string == "Split", a["pattern"]?["Regex"]?.string == llama3Pattern,
                   (a["behavior"]?.string ?? "Isolated") == "Isolated", (a["invert"]?.bool ?? false) == false,
                   try isByteLevelWithRegex(b, regex: false) {
                    return .llama3
                }
            }
        }
        let desc = String(pre.debugDescriptionValue.prefix(300))
        throw TokenizerError.unsupportedConfiguration(
            "pre_tokenizer \(desc) is not one of: ByteLevel(use_regex) [gpt2], Sequence[Digits(individual_digits), ByteLevel] [smollm], Sequence[Split(llama3 regex), ByteLevel(use_regex: false)] [llama3]")
    }
}

extension JSONValue {
    /// A compact, encodable rendering for error messages.
    var debugDescriptionValue: String {
        switch self {
        case .null: return "null"
        case let .bool(b): return "\(b)"
        case let .number(d): return "\(d)"
        case let .string(s): return "\"\(s)\""
        case let .array(a): return "[" + a.map(\.debugDescriptionValue).joined(separator: ",") + "]"
        case let .object(o):
            return "{" + o.keys.sorted().map { "\"\($0)\":\(o[$0]!.debugDescriptionValue)" }.joined(separator: ",") + "}"
        }
    }
}
