/// Incremental detokenizer for generation. `append` returns only complete UTF-8 text: the bytes of a
/// multi-byte character split across tokens are held back until the character is complete. The
/// concatenation of all returned strings plus `flush()` equals `decode` of all ids.
public struct StreamingDecoder {
    private let tokenizer: BPETokenizer
    private let skipSpecial: Bool
    private var pending: [UInt8] = []

    init(tokenizer: BPETokenizer, skipSpecial: Bool) {
        self.tokenizer = tokenizer
        self.skipSpecial = skipSpecial
    }

    /// Bytes held back because they may start an incomplete character.
    public var pendingByteCount: Int { pending.count }

    public mutating func append(_ id: Int32) -> String {
        if skipSpecial && tokenizer.isSpecial(id) { return "" }
        pending.append(contentsOf: tokenizer.bytes(of: id))
        let keep = Self.incompleteSuffixLength(pending)
        if keep == pending.count { return "" }
        let text = String(decoding: pending[0..<(pending.count - keep)], as: UTF8.self)
        pending.removeFirst(pending.count - keep)
        return text
    }

    /// Emits everything held back (an unfinished character becomes U+FFFD) and resets.
    public mutating func flush() -> String {
        defer { pending.removeAll() }
        return pending.isEmpty ? "" : String(decoding: pending, as: UTF8.self)
    }

    /// Length of the trailing bytes that form a valid but incomplete UTF-8 sequence (0...3).
    static func incompleteSuffixLength(_ b: [UInt8]) -> Int {
        let n = b.count
        var k = 1
        while k <= min(3, n) {
            let lead = b[n - k]
            if lead & 0xC0 == 0x80 { k += 1; continue }  // continuation byte: look further back
            let need: Int
            if lead >= 0xC2 && lead <= 0xDF { need = 2 }
            else if lead >= 0xE0 && lead <= 0xEF { need = 3 }
            else if lead >= 0xF0 && lead <= 0xF4 { need = 4 }
            else { return 0 }  // ASCII or invalid lead: nothing to hold back
            if k >= need { return 0 }  // complete (or over-long run handled by the decoder)
            // Check that the continuation bytes present are allowed after this lead (Unicode table 3-7).
            if k >= 2 {
                let c1 = b[n - k + 1]
                var lo: UInt8 = 0x80, hi: UInt8 = 0xBF
                switch lead {
                case 0xE0: lo = 0xA0
                case 0xED: hi = 0x9F
                case 0xF0: lo = 0x90
                case 0xF4: hi = 0x8F
                default: break
                }
                if c1 < lo || c1 > hi { return 0 }
            }
            return k
        }
        return 0
    }
}
