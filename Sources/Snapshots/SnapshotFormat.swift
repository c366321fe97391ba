import Digest
import Foundation
import KVStore

/// What a snapshot file says about itself (its first frame). `anchorkv snapshot inspect` prints it.
public struct SnapshotManifest: Codable, Sendable, Equatable {
    public static let formatName = "anchorkv.snapshot"
    public static let currentVersion = 1

    public var format: String
    public var formatVersion: Int
    public var createdAt: String
    /// The base model every KV record was made with (LlamaModel.fingerprint()).
    public var modelFingerprint: String
    public var modelName: String
    /// Ratio -> adapter fingerprint ("none" = training-free anchors) of the exported documents.
    public var adapters: [String: String]
    public var ratios: [Int]
    public var documents: Int
    public var windows: Int
    public var kvRecords: Int
    public var kvBytes: Int
    public var tokens: Int
    /// Layers per window (one K/V record each).
    public var layers: Int
    public var sourceStore: String
}

/// Totals and the whole-file digest, in the last frame: a file cut anywhere before it is
/// detected as truncated, and any changed byte fails a frame CRC or this digest.
struct SnapshotTrailer: Codable, Equatable {
    var documents: Int
    var windows: Int
    var kvRecords: Int
    /// sha256 (hex) of every byte of the file before the trailer frame.
    var sha256: String
}

/// One document's frame: its record and windows (tokens, text, index terms). Its KV follows
/// as `windows x layers` KV frames, window-major.
struct DocumentFrame: Codable {
    var record: DocumentRecord
    var windows: [WindowRecord]
}

/// The file layout (little-endian):
///   magic "AKVSNAP\n" | u32 format version | u32 reserved (0)
///   frames: u8 tag | u32 payload length | payload | u32 CRC32C over tag, length and payload
///   tag 1 manifest (JSON), first; tag 2 document (JSON DocumentFrame); tag 3 KV: u32 window,
///   u16 layer, then the stored tensor record byte for byte (it carries its own CRC32C);
///   tag 127 trailer (JSON SnapshotTrailer), last; nothing may follow it.
enum SnapshotFormat {
    static let magic: [UInt8] = Array("AKVSNAP\n".utf8)
    static let headerSize = 16
    static let frameOverhead = 9
    /// No legitimate frame is near this; a larger length means a corrupt or foreign file.
    static let maxFrame = 1 << 30

    enum Tag: UInt8 {
        case manifest = 1, document = 2, kv = 3, trailer = 127
    }

    static func header(version: Int = SnapshotManifest.currentVersion) -> [UInt8] {
        var h = magic
        append32(UInt32(version), to: &h)
        append32(0, to: &h)
        return h
    }

    static func append32(_ v: UInt32, to out: inout [UInt8]) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
    static func append16(_ v: UInt16, to out: inout [UInt8]) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
    static func read32(_ b: ArraySlice<UInt8>, _ at: Int) -> UInt32 {
        let i = b.startIndex + at
        return UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24
    }
    static func read16(_ b: ArraySlice<UInt8>, _ at: Int) -> UInt16 {
        let i = b.startIndex + at
        return UInt16(b[i]) | UInt16(b[i + 1]) << 8
    }

    static func json<T: Encodable>(_ v: T) throws -> [UInt8] {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return [UInt8](try e.encode(v))
    }
}

/// Errors of snapshot files; each says what is wrong and that the store was left unchanged.
public enum SnapshotError: Error, CustomStringConvertible, Equatable {
    case unreadable(path: String, reason: String)
    case notASnapshot(path: String)
    case unsupportedVersion(path: String, version: Int)
    case truncated(path: String, offset: Int)
    case corrupt(path: String, offset: Int, reason: String)
    case modelMismatch(path: String, snapshot: String, store: String)
    case conflict(ids: [String])
    case invalid(String)

    public var description: String {
        switch self {
        case .unreadable(let p, let r):
            return "cannot read snapshot \(p): \(r)"
        case .notASnapshot(let p):
            return "\(p) is not an AnchorKV snapshot (bad magic bytes); make one with `anchorkv export -o FILE`"
        case .unsupportedVersion(let p, let v):
            return "snapshot \(p) has format version \(v); this build reads version \(SnapshotManifest.currentVersion). Export it again with this build's version, or upgrade anchorkv"
        case .truncated(let p, let o):
            return "snapshot \(p) is truncated (it ends at byte \(o) before its trailer); copy the file again. Nothing was imported"
        case .corrupt(let p, let o, let r):
            return "snapshot \(p) is corrupt at byte \(o): \(r); copy or export it again. Nothing was imported"
        case .modelMismatch(let p, let s, let st):
            return "snapshot \(p) holds KV made with base model \(s), but the store is for \(st); import it into a store of that model (or a new --store). Nothing was imported"
        case .conflict(let ids):
            let shown = ids.prefix(5).map { "'\($0)'" }.joined(separator: ", ")
            return "\(ids.count) document(s) already in the store differ from the snapshot's (\(shown)\(ids.count > 5 ? ", ..." : "")); import again with the conflict policy skip (keep the store's) or replace (take the snapshot's): --on-conflict on the command line, ?on_conflict= over HTTP. Nothing was imported"
        case .invalid(let why):
            return why
        }
    }
}
