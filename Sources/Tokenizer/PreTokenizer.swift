/// Which regex-style pre-tokenizer splits text into words before BPE.
public enum PreTokenizerKind: Sendable {
    /// HF Sequence[Digits(individual_digits: true), ByteLevel(use_regex: true)] (SmolLM / StarCoder style).
    case smollm
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    case llama3
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    case gpt2
}

/// Character classes of unicode scalars as Oniguruma (HF tokenizers' regex engine) sees them.
enum CharClass {
    static let letter: UInt8 = 1        // \p{L}
    static let number: UInt8 = 2        // \p{N}
    static let space: UInt8 = 4         // \s (Unicode White_Space)
    static let newline: UInt8 = 8       // \r or \n (also `space`)

    static func compute(_ v: UInt32) -> UInt8 {
        guard let u = Unicode.Scalar(v) else { return 0 }
        let p = u.properties
        if p.isWhitespace {
            return (v == 0x0A || v == 0x0D) ? (space | newline) : space
        }
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            return letter
        case .decimalNumber, .letterNumber, .otherNumber:
            return number
        default:
            return 0
        }
    }

    /// Classes of the basic multilingual plane, computed once.
    static let bmp: [UInt8] = {
        var t = [UInt8](repeating: 0, count: 0x10000)
        for v in 0..<0x10000 { t[v] = compute(UInt32(v)) }
        return t
    }()

    @inline(__always)
    static func of(_ v: UInt32) -> UInt8 {
        v < 0x10000 ? bmp[Int(v)] : compute(v)
    }
}

/// Hand-written scanner equivalent to the pre-tokenizer regexes. Works on scalar values `sc` and
/// their classes `cls`; appends the (exclusive) end index of every piece in `lo..<hi` to `ends`.
struct PreTokenizerScanner {
    let kind: PreTokenizerKind

    @inline(__always)
    private static func isOther(_ c: UInt8) -> Bool { c == 0 }

    func split(sc: UnsafeBufferPointer<UInt32>, cls: UnsafeBufferPointer<UInt8>, lo: Int, hi: Int, ends: inout [Int]) {
        switch kind {
        case .gpt2:
            Self.gpt2(sc: sc, cls: cls, lo: lo, hi: hi, ends: &ends)
        case .llama3:
            Self.llama3(sc: sc, cls: cls, lo: lo, hi: hi, ends: &ends)
        case .smollm:
            // Digits(individual_digits): every \p{N} scalar is its own piece; GPT-2 regex on the rest.
            var start = lo
            var i = lo
            while i < hi {
                if cls[i] & CharClass.number != 0 {
                    if start < i { Self.gpt2(sc: sc, cls: cls, lo: start, hi: i, ends: &ends) }
                    ends.append(i + 1)
                    start = i + 1
                }
                i += 1
            }
            if start < hi { Self.gpt2(sc: sc, cls: cls, lo: start, hi: hi, ends: &ends) }
        }
    }

    /// Whitespace handling shared by both regexes: `\s+(?!\S)|\s+` starting at whitespace i.
    @inline(__always)
    private static func whitespaceRun(cls: UnsafeBufferPointer<UInt8>, i: Int, hi: Int) -> Int {
        var j = i
        while j < hi && cls[j] & CharClass.space != 0 { j += 1 }
        if j == hi || j - i < 2 { return j }
        return j - 1
    }

    static func gpt2(sc: UnsafeBufferPointer<UInt32>, cls: UnsafeBufferPointer<UInt8>, lo: Int, hi: Int, ends: inout [Int]) {
        var i = lo
        while i < hi {
            let end = gpt2Piece(sc: sc, cls: cls, i: i, hi: hi)
            ends.append(end)
            i = end
        }
    }

    @inline(__always)
    private static func gpt2Piece(sc: UnsafeBufferPointer<UInt32>, cls: UnsafeBufferPointer<UInt8>, i: Int, hi: Int) -> Int {
        // 's|'t|'re|'ve|'m|'ll|'d
        if sc[i] == 0x27 && i + 1 < hi {
            let a = sc[i + 1]
            if a == 0x73 || a == 0x74 || a == 0x6D || a == 0x64 { return i + 2 }  // s t m d
            if i + 2 < hi {
                let b = sc[i + 2]
                if (a == 0x72 && b == 0x65) || (a == 0x76 && b == 0x65) || (a == 0x6C && b == 0x6C) { return i + 3 }
            }
        }
        //  ?\p{L}+ |  ?\p{N}+ |  ?[^\s\p{L}\p{N}]+
        let k = (sc[i] == 0x20 && i + 1 < hi) ? i + 1 : i
        let c = cls[k]
        if c & CharClass.space == 0 {  // letter, number or "other": a run of that class
            var j = k + 1
            while j < hi && cls[j] == c { j += 1 }
            return j
        }
        // \s+(?!\S) | \s+
        return whitespaceRun(cls: cls, i: i, hi: hi)
    }

    static func llama3(sc: UnsafeBufferPointer<UInt32>, cls: UnsafeBufferPointer<UInt8>, lo: Int, hi: Int, ends: inout [Int]) {
        var i = lo
        while i < hi {
            let end = llama3Piece(sc: sc, cls: cls, i: i, hi: hi)
            ends.append(end)
            i = end
        }
    }

    /// ASCII lowercase; U+017F LATIN SMALL LETTER LONG S case-folds to 's' under (?i).
    @inline(__always)
    private static func fold(_ v: UInt32) -> UInt32 {
        if v >= 0x41 && v <= 0x5A { return v + 0x20 }
        if v == 0x17F { return 0x73 }
        return v
    }

    @inline(__always)
    private static func llama3Piece(sc: UnsafeBufferPointer<UInt32>, cls: UnsafeBufferPointer<UInt8>, i: Int, hi: Int) -> Int {
        // (?i:'s|'t|'re|'ve|'m|'ll|'d)
        if sc[i] == 0x27 && i + 1 < hi {
            let a = fold(sc[i + 1])
            if a == 0x73 || a == 0x74 || a == 0x6D || a == 0x64 { return i + 2 }
            if i + 2 < hi {
                let b = fold(sc[i + 2])
                if (a == 0x72 && b == 0x65) || (a == 0x76 && b == 0x65) || (a == 0x6C && b == 0x6C) { return i + 3 }
            }
        }
        let c = cls[i]
        // [^\r\n\p{L}\p{N}]?\p{L}+
        var start = -1
        if c == CharClass.letter {
            start = i
        } else if c & (CharClass.newline | CharClass.number) == 0 && i + 1 < hi && cls[i + 1] == CharClass.letter {
            start = i + 1
        }
        if start >= 0 {
            var j = start + 1
            while j < hi && cls[j] == CharClass.letter { j += 1 }
            return j
        }
        // \p{N}{1,3}
        if c == CharClass.number {
            var j = i + 1
            while j < hi && j < i + 3 && cls[j] == CharClass.number { j += 1 }
            return j
        }
        //  ?[^\s\p{L}\p{N}]+[\r\n]*
        let k = (sc[i] == 0x20 && i + 1 < hi) ? i + 1 : i
        if cls[k] == 0 {
            var j = k + 1
            while j < hi && cls[j] == 0 { j += 1 }
            while j < hi && cls[j] & CharClass.newline != 0 { j += 1 }
            return j
        }
        // Here cls[i] is whitespace.
        // \s*[\r\n]+ : whitespace run up to and including its last newline.
        var j = i
        var lastNewline = -1
        while j < hi && cls[j] & CharClass.space != 0 {
            if cls[j] & CharClass.newline != 0 { lastNewline = j }
            j += 1
        }
        if lastNewline >= 0 { return lastNewline + 1 }
        // \s+(?!\S) | \s+
        return whitespaceRun(cls: cls, i: i, hi: hi)
    }
}
