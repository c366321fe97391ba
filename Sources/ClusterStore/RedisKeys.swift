import Digest
import Foundation
import RedisCluster

/// Where a knowledge base's data lives in a Redis Cluster. Every key starts "akv:" and carries
/// a hash tag, so that what must change together shares a slot:
///
///   {akv:KB}:manifest              StoreManifest JSON (model, adapters, shape), set once
///   {akv:KB}:next                  document number counter (INCR)
///   {akv:KB}:docs                  hash id -> document tag: the catalogue, a superset of what
///                                  is visible (added before a document commits, removed after
///                                  it is gone)
///   {akv:KB}:stats                 hash of counters (documents, windows, tokens, anchors, kvBytes,
///                                  totalLength), kept by HINCRBY after each commit: statistics, not truth
///   {akv:KB:D}:m                   the document's manifest (DocumentRecord + layout): it alone
///                                  makes the document visible; set and removed by MULTI/EXEC
///   {akv:KB:D}:N:w:W               window W's record (JSON) of the version numbered N
///   {akv:KB:D}:N:kv:W:G            window W's KV records for layer group G (framed TensorCodec
///                                  records, at most `maxValueBytes` each)
///   {akv:KB:ixB}:TERM              postings of TERM, bucket B = CRC16(TERM) mod 64: hash field
///                                  "D:N:W" -> tf u32, window length u32 (little-endian)
///
/// D is the first 16 hex digits of the id's SHA-256 (ids may hold braces, which would move the
/// hash tag). A version's keys are immutable and carry its number N, so a reader that read the
/// manifest reads exactly that version or fails with a missing record, never a mix; postings and
/// catalogue entries name a version and are checked against the manifest before use.
struct RedisKeys: Sendable {
    let kb: String
    static let indexBuckets = 64

    init(knowledgeBase kb: String) { self.kb = kb }

    var kbTag: String { "{akv:\(kb)}" }
    var manifest: [UInt8] { Array("\(kbTag):manifest".utf8) }
    var next: [UInt8] { Array("\(kbTag):next".utf8) }
    var catalogue: [UInt8] { Array("\(kbTag):docs".utf8) }
    var stats: [UInt8] { Array("\(kbTag):stats".utf8) }
    var kbSlot: Int { HashSlot.slot(of: manifest) }

    static func documentTag(_ id: String) -> String {
        var h = SHA256()
        h.update(id)
        return h.finalize().prefix(8).map { String(format: "%02x", $0) }.joined()
    }

    func docPrefix(_ tag: String) -> String { "{akv:\(kb):\(tag)}" }
    func docManifest(_ tag: String) -> [UInt8] { Array("\(docPrefix(tag)):m".utf8) }
    func window(_ tag: String, _ number: UInt64, _ w: Int) -> [UInt8] { Array("\(docPrefix(tag)):\(number):w:\(w)".utf8) }
    func kv(_ tag: String, _ number: UInt64, _ w: Int, group: Int) -> [UInt8] { Array("\(docPrefix(tag)):\(number):kv:\(w):\(group)".utf8) }
    func docSlot(_ tag: String) -> Int { HashSlot.slot(of: docManifest(tag)) }

    func postings(_ term: String) -> [UInt8] {
        let bucket = Int(HashSlot.crc16(Array(term.utf8))) % Self.indexBuckets
        return Array("{akv:\(kb):ix\(bucket)}:".utf8) + Array(term.utf8)
    }

    static func postingField(tag: String, number: UInt64, window: Int) -> [UInt8] { Array("\(tag):\(number):\(window)".utf8) }

    /// A knowledge-base name: letters, digits, '-', '_' and '.', 1 to 64 of them.
    static func validName(_ s: String) -> Bool {
        (1...64).contains(s.count) && s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }
    }
}

/// A window's layers, several to a value: u32 count, then per layer u32 length and the record
/// (little-endian lengths). Groups are cut so that no value passes the bound.
enum LayerFrames {
    static func groups(_ layers: [[UInt8]], maxBytes: Int) -> [[UInt8]] {
        var out: [[UInt8]] = []
        var current: [[UInt8]] = []
        var size = 4
        func flush() {
            guard !current.isEmpty else { return }
            var v: [UInt8] = []
            v.reserveCapacity(size)
            append32(&v, current.count)
            for r in current { append32(&v, r.count); v += r }
            out.append(v)
            current = []
            size = 4
        }
        for r in layers {
            if !current.isEmpty && size + 4 + r.count > maxBytes { flush() }
            current.append(r)
            size += 4 + r.count
        }
        flush()
        return out
    }

    static func split(_ v: [UInt8]) -> [[UInt8]]? {
        var at = 0
        func read32() -> Int? {
            guard at + 4 <= v.count else { return nil }
            let n = Int(v[at]) | Int(v[at + 1]) << 8 | Int(v[at + 2]) << 16 | Int(v[at + 3]) << 24
            at += 4
            return n
        }
        guard let count = read32(), count <= v.count / 4 else { return nil }
        var out: [[UInt8]] = []
        out.reserveCapacity(count)
        for _ in 0..<count {
            guard let n = read32(), n <= v.count - at else { return nil }
            out.append(Array(v[at..<(at + n)]))
            at += n
        }
        return at == v.count ? out : nil
    }

    static func append32(_ v: inout [UInt8], _ n: Int) {
        withUnsafeBytes(of: UInt32(n).littleEndian) { v += $0 }
    }
}
