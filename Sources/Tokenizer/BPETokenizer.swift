import Foundation
import Synchronization

/// Byte-level BPE tokenizer (GPT-2 byte mapping, ranked merges) matching HF `tokenizers`.
/// Immutable after init apart from an internal, lock-protected word cache; safe to share across threads.
public final class BPETokenizer: Sendable {
    /// GGUF token types.
    public enum TokenType {
        public static let normal: Int32 = 1
        public static let unknown: Int32 = 2
        public static let control: Int32 = 3
        public static let userDefined: Int32 = 4
        public static let unused: Int32 = 5
        public static let byte: Int32 = 6
    }

    public let bosID: Int32?
    public let eosID: Int32?
    public let unknownID: Int32?
    public let addBOS: Bool
    public let preTokenizer: PreTokenizerKind
    /// If true, a word that is itself in the vocabulary is emitted as one token without merging (HF `ignore_merges`).
    public let ignoreMerges: Bool

    public var vocabularySize: Int { tokens.count }

    private let tokens: [String]
    private let tokenToID: [String: Int32]
    /// Bytes each id decodes to.
    private let tokenBytes: [[UInt8]]
    private let special: [Bool]
    /// Initial token of each byte, -1 if the vocabulary lacks it.
    private let byteToken: [Int32]
    /// (left << 32 | right) -> (rank << 32 | merged id).
    private let mergeTable: [UInt64: UInt64]
    /// Raw bytes of byte-level vocabulary entries -> id (for ignoreMerges).
    private let bytesToID: [[UInt8]: Int32]
    /// Added tokens matched literally in the input, per first byte, longest first.
    private let matchers: [[(bytes: [UInt8], id: Int32, special: Bool)]]
    private let hasMatchers: Bool
    private let scanner: PreTokenizerScanner
    /// Words with more initial symbols than this use the heap-based merge (tests set 0 to cover it).
    let heapThreshold: Int
    private let cache = Mutex<[String: [Int32]]>([:])
    private static let cacheLimit = 200_000
    private static let maxCachedWordBytes = 64

    /// Builds a tokenizer from GGUF-style metadata. Tokens of type CONTROL (3) or USER_DEFINED (4)
    /// are special: matched literally when encoding with `parseSpecial`, never produced by merges.
    public convenience init(tokens: [String], merges: [String], tokenTypes: [Int32]?, preTokenizer: PreTokenizerKind,
                            bosID: Int32?, eosID: Int32?, unknownID: Int32?, addBOS: Bool) throws {
        if let types = tokenTypes, types.count != tokens.count {
            throw TokenizerError.tokenTypeCountMismatch(tokens: tokens.count, types: types.count)
        }
        var pairs: [(String, String)] = []
        pairs.reserveCapacity(merges.count)
        for (n, line) in merges.enumerated() {
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw TokenizerError.badMergeLine(line: n + 1, text: line)
            }
            pairs.append((String(parts[0]), String(parts[1])))
        }
        var added: [(id: Int32, special: Bool)] = []
        if let types = tokenTypes {
            for (i, t) in types.enumerated() where t == TokenType.control || t == TokenType.userDefined {
                added.append((Int32(i), true))
            }
        }
        try self.init(tokens: tokens, mergePairs: pairs, added: added, preTokenizer: preTokenizer,
                      ignoreMerges: preTokenizer == .llama3, bosID: bosID, eosID: eosID, unknownID: unknownID,
                      addBOS: addBOS)
    }

    /// Designated initializer. `added` lists ids matched literally in the input; `special` ones only when
    /// parsing special tokens (and reported by `isSpecial`), the others always (HF non-special added tokens).
    init(tokens: [String], mergePairs: [(String, String)], added: [(id: Int32, special: Bool)],
         preTokenizer: PreTokenizerKind, ignoreMerges: Bool,
         bosID: Int32?, eosID: Int32?, unknownID: Int32?, addBOS: Bool, heapThreshold: Int = 48) throws {
        self.heapThreshold = max(1, heapThreshold)
        guard !tokens.isEmpty else { throw TokenizerError.emptyVocabulary }
        for (name, id) in [("bos", bosID), ("eos", eosID), ("unknown", unknownID)] {
            if let id, id < 0 || Int(id) >= tokens.count {
                throw TokenizerError.specialIDOutOfRange(name: name, id: id, vocabularySize: tokens.count)
            }
        }
        for a in added where a.id < 0 || Int(a.id) >= tokens.count {
            throw TokenizerError.specialIDOutOfRange(name: "added token", id: a.id, vocabularySize: tokens.count)
        }
        self.tokens = tokens
        self.bosID = bosID
        self.eosID = eosID
        self.unknownID = unknownID
        self.addBOS = addBOS
        self.preTokenizer = preTokenizer
        self.ignoreMerges = ignoreMerges
        self.scanner = PreTokenizerScanner(kind: preTokenizer)

        var tokenToID = [String: Int32](minimumCapacity: tokens.count)
        var tokenBytes: [[UInt8]] = []
        tokenBytes.reserveCapacity(tokens.count)
        var bytesToID = [[UInt8]: Int32](minimumCapacity: ignoreMerges ? tokens.count : 0)
        for (i, t) in tokens.enumerated() {
            // First occurrence wins (HF vocab is a map; GGUF vocabularies may pad with duplicates).
            if !t.isEmpty && tokenToID[t] == nil { tokenToID[t] = Int32(i) }
            let bytes = ByteLevel.decode(t)
            tokenBytes.append(bytes)
            if ignoreMerges && !t.isEmpty && ByteLevel.isByteLevel(t) && bytesToID[bytes] == nil {
                bytesToID[bytes] = Int32(i)
            }
        }
        self.tokenToID = tokenToID
        self.tokenBytes = tokenBytes
        self.bytesToID = bytesToID

        var byteToken = [Int32](repeating: -1, count: 256)
        for b in 0..<256 {
            let s = String(Unicode.Scalar(ByteLevel.byteToScalar[b])!)
            if let id = tokenToID[s] { byteToken[b] = id }
        }
        self.byteToken = byteToken

        var mergeTable = [UInt64: UInt64](minimumCapacity: mergePairs.count)
        for (rank, (l, r)) in mergePairs.enumerated() {
            guard let a = tokenToID[l] else { throw TokenizerError.mergeTokenMissing(line: rank + 1, token: l) }
            guard let b = tokenToID[r] else { throw TokenizerError.mergeTokenMissing(line: rank + 1, token: r) }
            guard let m = tokenToID[l + r] else { throw TokenizerError.mergeTokenMissing(line: rank + 1, token: l + r) }
            let key = UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
            if mergeTable[key] == nil {  // first (lowest rank) wins, as in HF
                mergeTable[key] = UInt64(rank) << 32 | UInt64(UInt32(bitPattern: m))
            }
        }
        self.mergeTable = mergeTable

        var special = [Bool](repeating: false, count: tokens.count)
        var matchers = [[(bytes: [UInt8], id: Int32, special: Bool)]](repeating: [], count: 256)
        for a in added {
            if a.special { special[Int(a.id)] = true }
            let bytes = Array(tokens[Int(a.id)].utf8)
            guard let first = bytes.first else { continue }
            if matchers[Int(first)].contains(where: { $0.bytes == bytes }) { continue }
            matchers[Int(first)].append((bytes, a.id, a.special))
        }
        for i in 0..<256 { matchers[i].sort { $0.bytes.count > $1.bytes.count } }
        self.special = special
        self.matchers = matchers
        self.hasMatchers = !added.isEmpty
    }

    // MARK: - Lookup

    /// Raw vocabulary string of an id (byte-level encoded), or nil when out of range.
    public func token(_ id: Int32) -> String? {
        guard id >= 0, Int(id) < tokens.count else { return nil }
        return tokens[Int(id)]
    }

    public func id(of token: String) -> Int32? { tokenToID[token] }

    /// True for control / user-defined special tokens (GGUF types 3, 4; tokenizer.json added tokens with special: true).
    public func isSpecial(_ id: Int32) -> Bool {
        guard id >= 0, Int(id) < special.count else { return false }
        return special[Int(id)]
    }

    /// The bytes an id decodes to (empty for out-of-range ids).
    public func bytes(of id: Int32) -> [UInt8] {
        guard id >= 0, Int(id) < tokenBytes.count else { return [] }
        return tokenBytes[Int(id)]
    }

    // MARK: - Encoding

    public func encode(_ text: String, parseSpecial: Bool = true, addBOS: Bool? = nil) -> [Int32] {
        var out: [Int32] = []
        out.reserveCapacity(text.utf8.count / 3 + 2)
        if addBOS ?? self.addBOS, let bos = bosID { out.append(bos) }
        var text = text
        text.makeContiguousUTF8()
        text.utf8.withContiguousStorageIfAvailable { buf in
            encodeBytes(buf, parseSpecial: parseSpecial, into: &out)
        }
        return out
    }

    private func encodeBytes(_ buf: UnsafeBufferPointer<UInt8>, parseSpecial: Bool, into out: inout [Int32]) {
        var state = EncodeState()
        guard hasMatchers else {
            encodeSegment(buf, 0, buf.count, &state, &out)
            return
        }
        var segStart = 0
        var i = 0
        let n = buf.count
        while i < n {
            let cands = matchers[Int(buf[i])]
            var matched: (len: Int, id: Int32)? = nil
            if !cands.isEmpty {
                for c in cands where (parseSpecial || !c.special) && c.bytes.count <= n - i {
                    var ok = true
                    for k in 1..<c.bytes.count where buf[i + k] != c.bytes[k] { ok = false; break }
                    if ok { matched = (c.bytes.count, c.id); break }
                }
            }
            if let m = matched {
                if segStart < i { encodeSegment(buf, segStart, i, &state, &out) }
                out.append(m.id)
                i += m.len
                segStart = i
            } else {
                i += 1
            }
        }
        if segStart < n { encodeSegment(buf, segStart, n, &state, &out) }
    }

    /// Reusable scratch buffers for one encode call.
    private struct EncodeState {
        var sc: [UInt32] = []
        var cls: [UInt8] = []
        var off: [Int] = []
        var ends: [Int] = []
        var syms: [Int32] = []
        var ranks: [UInt64] = []
    }

    private func encodeSegment(_ buf: UnsafeBufferPointer<UInt8>, _ lo: Int, _ hi: Int,
                               _ st: inout EncodeState, _ out: inout [Int32]) {
        // Decode scalars (input comes from a Swift String, so it is valid UTF-8).
        st.sc.removeAll(keepingCapacity: true)
        st.cls.removeAll(keepingCapacity: true)
        st.off.removeAll(keepingCapacity: true)
        var p = lo
        while p < hi {
            let b0 = UInt32(buf[p])
            var v: UInt32
            var len: Int
            if b0 < 0x80 { v = b0; len = 1 }
            else if b0 < 0xE0 { v = b0 & 0x1F; len = 2 }
            else if b0 < 0xF0 { v = b0 & 0x0F; len = 3 }
            else { v = b0 & 0x07; len = 4 }
            if p + len > hi { len = hi - p }
            var k = 1
            while k < len { v = (v << 6) | (UInt32(buf[p + k]) & 0x3F); k += 1 }
            st.sc.append(v)
            st.cls.append(CharClass.of(v))
            st.off.append(p)
            p += len
        }
        st.off.append(hi)
        st.ends.removeAll(keepingCapacity: true)
        st.sc.withUnsafeBufferPointer { sc in
            st.cls.withUnsafeBufferPointer { cls in
                scanner.split(sc: sc, cls: cls, lo: 0, hi: sc.count, ends: &st.ends)
            }
        }
        var start = 0
        for e in st.ends {
            let a = st.off[start], b = st.off[e]
            encodeWord(UnsafeBufferPointer(rebasing: buf[a..<b]), &st, &out)
            start = e
        }
    }

    private func encodeWord(_ word: UnsafeBufferPointer<UInt8>, _ st: inout EncodeState, _ out: inout [Int32]) {
        if word.count == 1 {
            let t = byteToken[Int(word[0])]
            if t >= 0 { out.append(t) } else if let u = unknownID { out.append(u) }
            return
        }
        let cacheable = word.count <= Self.maxCachedWordBytes
        var key = ""
        if cacheable {
            key = String(decoding: word, as: UTF8.self)
            if let hit = cache.withLock({ $0[key] }) {
                out.append(contentsOf: hit)
                return
            }
        }
        let start = out.count
        bpe(word, &st, &out)
        if cacheable {
            let result = Array(out[start...])
            cache.withLock { c in
                if c.count >= Self.cacheLimit { c.removeAll(keepingCapacity: true) }
                c[key] = result
            }
        }
    }

    @inline(__always)
    private func pairValue(_ a: Int32, _ b: Int32) -> UInt64 {
        let key = UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
        return mergeTable[key] ?? UInt64.max
    }

    /// Lowest-rank-first, leftmost-first merging, identical to HF's BPE `merge_all` without dropout.
    private func bpe(_ word: UnsafeBufferPointer<UInt8>, _ st: inout EncodeState, _ out: inout [Int32]) {
        if ignoreMerges, let id = bytesToID[Array(word)] {
            out.append(id)
            return
        }
        st.syms.removeAll(keepingCapacity: true)
        for b in word {
            let t = byteToken[Int(b)]
            if t >= 0 {
                st.syms.append(t)
            } else if let u = unknownID {
                // HF marks unknown characters with unk and does not merge across them.
                if !st.syms.isEmpty { mergeAll(&st, &out) }
                out.append(u)
                st.syms.removeAll(keepingCapacity: true)
            }
        }
        if !st.syms.isEmpty { mergeAll(&st, &out) }
    }

    private func mergeAll(_ st: inout EncodeState, _ out: inout [Int32]) {
        let n = st.syms.count
        if n > heapThreshold {
            mergeAllHeap(&st, &out)
            return
        }
        if n > 1 {
            st.ranks.removeAll(keepingCapacity: true)
            for i in 0..<(n - 1) { st.ranks.append(pairValue(st.syms[i], st.syms[i + 1])) }
            while true {
                var best = UInt64.max
                var bi = -1
                for i in 0..<st.ranks.count where st.ranks[i] < best {
                    best = st.ranks[i]
                    bi = i
                }
                if bi < 0 { break }
                st.syms[bi] = Int32(bitPattern: UInt32(truncatingIfNeeded: best))
                st.syms.remove(at: bi + 1)
                st.ranks.remove(at: bi)
                if bi > 0 { st.ranks[bi - 1] = pairValue(st.syms[bi - 1], st.syms[bi]) }
                if bi < st.ranks.count { st.ranks[bi] = pairValue(st.syms[bi], st.syms[bi + 1]) }
            }
        }
        out.append(contentsOf: st.syms)
    }

    /// O(n log n) variant for long words (HF's algorithm: a heap of (rank, position) over a linked list).
    private func mergeAllHeap(_ st: inout EncodeState, _ out: inout [Int32]) {
        let n = st.syms.count
        var sym = st.syms
        var prev = [Int32](repeating: -1, count: n)
        var next = [Int32](repeating: -1, count: n)
        var alive = [Bool](repeating: true, count: n)
        for i in 0..<n {
            prev[i] = Int32(i - 1)
            next[i] = i + 1 < n ? Int32(i + 1) : -1
        }
        var heap = MinHeap()
        for i in 0..<(n - 1) {
            let v = pairValue(sym[i], sym[i + 1])
            if v != UInt64.max { heap.push((v >> 32) << 32 | UInt64(i)) }
        }
        while let top = heap.pop() {
            let rank = top >> 32
            let p = Int(top & 0xFFFF_FFFF)
            guard alive[p], next[p] >= 0 else { continue }
            let q = Int(next[p])
            let v = pairValue(sym[p], sym[q])
            guard v != UInt64.max, v >> 32 == rank else { continue }  // stale entry
            sym[p] = Int32(bitPattern: UInt32(truncatingIfNeeded: v))
            alive[q] = false
            next[p] = next[q]
            if next[q] >= 0 { prev[Int(next[q])] = Int32(p) }
            if prev[p] >= 0 {
                let l = Int(prev[p])
                let lv = pairValue(sym[l], sym[p])
                if lv != UInt64.max { heap.push((lv >> 32) << 32 | UInt64(l)) }
            }
            if next[p] >= 0 {
                let rv = pairValue(sym[p], sym[Int(next[p])])
                if rv != UInt64.max { heap.push((rv >> 32) << 32 | UInt64(p)) }
            }
        }
        var i = 0
        while i >= 0 && i < n {
            out.append(sym[i])
            i = Int(next[i])
        }
    }

    // MARK: - Decoding

    /// Decodes ids to text (HF ByteLevel decoder: bytes joined, invalid UTF-8 replaced by U+FFFD).
    /// Out-of-range ids are skipped.
    public func decode(_ ids: [Int32], skipSpecial: Bool = false) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(ids.count * 4)
        for id in ids {
            guard id >= 0, Int(id) < tokenBytes.count else { continue }
            if skipSpecial && special[Int(id)] { continue }
            bytes.append(contentsOf: tokenBytes[Int(id)])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    public func makeStreamingDecoder() -> StreamingDecoder {
        StreamingDecoder(tokenizer: self, skipSpecial: false)
    }

    public func makeStreamingDecoder(skipSpecial: Bool) -> StreamingDecoder {
        StreamingDecoder(tokenizer: self, skipSpecial: skipSpecial)
    }
}

/// Binary min-heap of UInt64 keys (rank << 32 | position).
struct MinHeap {
    private var a: [UInt64] = []

    mutating func push(_ x: UInt64) {
        a.append(x)
        var i = a.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if a[parent] <= a[i] { break }
            a.swapAt(parent, i)
            i = parent
        }
    }

    mutating func pop() -> UInt64? {
        guard let top = a.first else { return nil }
        let last = a.removeLast()
        if !a.isEmpty {
            a[0] = last
            var i = 0
            let n = a.count
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < n && a[l] < a[m] { m = l }
                if r < n && a[r] < a[m] { m = r }
                if m == i { break }
                a.swapAt(i, m)
                i = m
            }
        }
        return top
    }
}
