import Digest
import Foundation
import KVStore

/// Buffered, digesting writer of snapshot frames to a file.
final class FrameWriter {
    private let handle: FileHandle
    private var buffer: [UInt8] = []
    private var digest = SHA256()
    private(set) var bytesWritten = 0
    private let flushAt = 4 << 20

    init(handle: FileHandle) { self.handle = handle }

    func raw(_ bytes: [UInt8]) throws {
        buffer += bytes
        bytes.withUnsafeBytes { digest.update($0) }
        bytesWritten += bytes.count
        if buffer.count >= flushAt { try flush() }
    }

    func frame(_ tag: SnapshotFormat.Tag, _ payload: [UInt8]) throws {
        var head: [UInt8] = [tag.rawValue]
        SnapshotFormat.append32(UInt32(payload.count), to: &head)
        var crc = head.withUnsafeBytes { CRC32C.checksum($0) }
        crc = payload.withUnsafeBytes { CRC32C.checksum($0, seed: crc) }
        var tail: [UInt8] = []
        SnapshotFormat.append32(crc, to: &tail)
        try raw(head)
        try raw(payload)
        try raw(tail)
    }

    /// Digest of everything written so far.
    func digestHex() -> String { var d = digest; return d.finalize().hexString }

    func flush() throws {
        guard !buffer.isEmpty else { return }
        try handle.write(contentsOf: buffer)
        buffer.removeAll(keepingCapacity: true)
    }
}

public struct ExportReport: Sendable {
    public var manifest: SnapshotManifest
    public var path: String
    public var bytes: Int
    public var seconds: Double
    public var megabytesPerSecond: Double { seconds > 0 ? Double(bytes) / 1e6 / seconds : 0 }
}

/// Writes a snapshot of a store (or of some of its documents) from one consistent RocksDB
/// snapshot, so the store keeps serving reads and writes meanwhile. Streamed: memory holds one
/// document's windows and one KV record at a time. The file appears under its name only when
/// complete (written to NAME.partial, synced, renamed over NAME, the folder synced): an
/// existing NAME stays whole until the new file replaces it.
public enum SnapshotExporter {
    /// Repeated ids in `ids` are exported once (documents go out in store order either way).
    public static func export(store: any DocumentStore, documents ids: [String]? = nil, to path: String,
                              progress: (_ done: Int, _ total: Int, _ bytes: Int) -> Void = { _, _, _ in }) throws -> ExportReport {
        let t0 = DispatchTime.now().uptimeNanoseconds
        let snap = store.snapshot()
        var docs: [DocumentRecord]
        if let ids {
            var seen = Set<String>()
            docs = try ids.filter { seen.insert($0).inserted }.map { id in
                guard let d = try store.document(id, snapshot: snap) else {
                    throw SnapshotError.invalid("no document '\(id)' in the store; nothing was exported")
                }
                return d
            }
        } else {
            docs = try store.documents(snapshot: snap)
        }
        docs.sort { $0.number < $1.number }
        // Every document of a store has the model's layer count; one that has not (written by
        // an older build) is refused rather than cut to the others' count.
        let layers = docs.isEmpty ? 0 : try store.modelShape(snapshot: snap)?.layers ?? store.layerCount(of: docs[0], snapshot: snap)
        for d in docs {
            let n = try store.layerCount(of: d, snapshot: snap)
            guard n == layers else {
                throw SnapshotError.invalid("document '\(d.id)' holds \(n) layers of KV, the store's model has \(layers); delete it (anchorkv docs delete) or ingest it again. Nothing was exported")
            }
        }
        var adapters: [String: String] = [:]
        for d in docs { adapters[String(d.ratio)] = d.adapter ?? "none" }
        let windows = docs.reduce(0) { $0 + $1.windows }
        let manifest = SnapshotManifest(
            format: SnapshotManifest.formatName, formatVersion: SnapshotManifest.currentVersion, createdAt: KVStore.timestamp(),
            modelFingerprint: store.manifest.modelFingerprint, modelName: store.manifest.modelName, adapters: adapters,
            ratios: Set(docs.map(\.ratio)).sorted(), documents: docs.count, windows: windows, kvRecords: windows * layers,
            kvBytes: docs.reduce(0) { $0 + $1.kvBytes }, tokens: docs.reduce(0) { $0 + $1.tokens }, layers: layers,
            sourceStore: store.location)

        let partial = path + ".partial"
        let fm = FileManager.default
        try? fm.removeItem(atPath: partial)
        guard fm.createFile(atPath: partial, contents: nil), let handle = FileHandle(forWritingAtPath: partial) else {
            throw SnapshotError.invalid("cannot create \(partial); check that the folder exists and is writable")
        }
        var done = false
        defer {
            try? handle.close()
            if !done { try? fm.removeItem(atPath: partial) }
        }
        let w = FrameWriter(handle: handle)
        try w.raw(SnapshotFormat.header())
        try w.frame(.manifest, try SnapshotFormat.json(manifest))
        for (i, doc) in docs.enumerated() {
            let wins = try (0..<doc.windows).map { try store.window(doc, $0, snapshot: snap) }
            try w.frame(.document, try SnapshotFormat.json(DocumentFrame(record: doc, windows: wins)))
            for win in 0..<doc.windows {
                for l in 0..<layers {
                    var payload: [UInt8] = []
                    SnapshotFormat.append32(UInt32(win), to: &payload)
                    SnapshotFormat.append16(UInt16(l), to: &payload)
                    payload += try store.rawKV(doc, window: win, layer: l, snapshot: snap)
                    try w.frame(.kv, payload)
                }
            }
            progress(i + 1, docs.count, w.bytesWritten)
        }
        let trailer = SnapshotTrailer(documents: docs.count, windows: windows, kvRecords: windows * layers, sha256: w.digestHex())
        try w.frame(.trailer, try SnapshotFormat.json(trailer))
        try w.flush()
        try handle.synchronize()
        try handle.close()
        try DurableFile.replace(path, with: partial)
        done = true
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        return ExportReport(manifest: manifest, path: path, bytes: w.bytesWritten, seconds: seconds)
    }
}
