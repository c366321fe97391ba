import Digest
import Foundation
import KVStore

/// Buffered reader of snapshot frames that verifies each frame's CRC and digests the file.
final class FrameReader {
    let path: String
    private let handle: FileHandle
    private var buffer: [UInt8] = []
    private var cursor = 0
    private var digest = SHA256()
    /// Bytes consumed so far (the offset of the next frame).
    private(set) var offset = 0
    private var eof = false

    init(path: String) throws {
        self.path = path
        guard let h = FileHandle(forReadingAtPath: path) else {
            throw SnapshotError.unreadable(path: path, reason: FileManager.default.fileExists(atPath: path) ? "permission denied" : "no such file")
        }
        handle = h
    }

    deinit { try? handle.close() }

    /// Exactly n bytes, or nil at a clean end of file (nothing left at all).
    private func take(_ n: Int) throws -> ArraySlice<UInt8>? {
        while buffer.count - cursor < n && !eof {
            let chunk = try handle.read(upToCount: max(1 << 20, n)) ?? Data()
            if chunk.isEmpty { eof = true; break }
            buffer.removeSubrange(0..<cursor)
            cursor = 0
            buffer += chunk
        }
        let available = buffer.count - cursor
        if available == 0 && n > 0 { return nil }
        guard available >= n else { throw SnapshotError.truncated(path: path, offset: offset + available) }
        let out = buffer[cursor..<(cursor + n)]
        out.withUnsafeBytes { digest.update($0) }
        cursor += n
        offset += n
        return out
    }

    func header() throws -> Int {
        guard let h = try? take(SnapshotFormat.headerSize), Array(h.prefix(8)) == SnapshotFormat.magic else {
            throw SnapshotError.notASnapshot(path: path)
        }
        return Int(SnapshotFormat.read32(h, 8))
    }

    /// Digest of every byte consumed so far.
    func digestHex() -> String { var d = digest; return d.finalize().hexString }

    /// The next frame, CRC-checked; nil at end of file.
    func next() throws -> (tag: SnapshotFormat.Tag, payload: ArraySlice<UInt8>, offset: Int)? {
        let start = offset
        guard let head = try take(5) else { return nil }
        let length = Int(SnapshotFormat.read32(head, 1))
        guard length <= SnapshotFormat.maxFrame else { throw SnapshotError.corrupt(path: path, offset: start, reason: "frame length \(length) is impossible") }
        guard let payload = try take(length), let tail = try take(4) else { throw SnapshotError.truncated(path: path, offset: offset) }
        var crc = head.withUnsafeBytes { CRC32C.checksum($0) }
        crc = payload.withUnsafeBytes { CRC32C.checksum($0, seed: crc) }
        guard crc == SnapshotFormat.read32(tail, 0) else {
            throw SnapshotError.corrupt(path: path, offset: start, reason: "frame checksum mismatch")
        }
        guard let tag = SnapshotFormat.Tag(rawValue: head[head.startIndex]) else {
            throw SnapshotError.corrupt(path: path, offset: start, reason: "unknown frame type \(head[head.startIndex])")
        }
        return (tag, payload, start)
    }
}

/// Reads and fully verifies a snapshot: format, version, frame order and checksums, every
/// tensor record's own checksum, counts, and the trailer's whole-file digest. Documents are
/// handed to `visit` as they are read, but a caller must not act on them until `read` returns
/// without throwing: only then is the whole file known to be intact.
public enum SnapshotReader {
    /// The manifest alone (the first frame), for `snapshot inspect`.
    public static func manifest(path: String) throws -> SnapshotManifest {
        let r = try FrameReader(path: path)
        return try readManifest(r)
    }

    private static func readManifest(_ r: FrameReader) throws -> SnapshotManifest {
        let version = try r.header()
        guard version == SnapshotManifest.currentVersion else { throw SnapshotError.unsupportedVersion(path: r.path, version: version) }
        guard let f = try r.next() else { throw SnapshotError.truncated(path: r.path, offset: r.offset) }
        guard f.tag == .manifest, let m = try? JSONDecoder().decode(SnapshotManifest.self, from: Data(f.payload)) else {
            throw SnapshotError.corrupt(path: r.path, offset: f.offset, reason: "the first frame is not a valid manifest")
        }
        guard m.format == SnapshotManifest.formatName else { throw SnapshotError.notASnapshot(path: r.path) }
        guard m.formatVersion == SnapshotManifest.currentVersion else { throw SnapshotError.unsupportedVersion(path: r.path, version: m.formatVersion) }
        return m
    }

    @discardableResult
    public static func read(path: String, visit: (EncodedDocument) throws -> Void = { _ in }) throws -> SnapshotManifest {
        let r = try FrameReader(path: path)
        let m = try readManifest(r)
        func corrupt(_ at: Int, _ why: String) -> SnapshotError { .corrupt(path: path, offset: at, reason: why) }
        var docs = 0, windows = 0, kvRecords = 0
        var pending: (record: DocumentRecord, windows: [WindowRecord], kv: [[[UInt8]]], anchors: Int)?
        var expected = (window: 0, layer: 0)

        func finishDocument(at: Int) throws {
            guard let p = pending else { return }
            guard expected.window == p.record.windows, expected.layer == 0 else {
                throw corrupt(at, "document '\(p.record.id)' has \(kvRecords) KV records so far; its window \(expected.window) layer \(expected.layer) is missing")
            }
            guard p.anchors == p.record.anchors else { throw corrupt(at, "document '\(p.record.id)' has \(p.anchors) anchors in its KV, its record says \(p.record.anchors)") }
            try visit(EncodedDocument(record: p.record, windows: p.windows, kv: p.kv))
            pending = nil
        }

        while true {
            let digestBefore = r.digestHex()
            guard let f = try r.next() else { throw SnapshotError.truncated(path: path, offset: r.offset) }
            switch f.tag {
            case .manifest:
                throw corrupt(f.offset, "a second manifest")
            case .document:
                try finishDocument(at: f.offset)
                guard let d = try? JSONDecoder().decode(DocumentFrame.self, from: Data(f.payload)) else { throw corrupt(f.offset, "a document frame is not valid JSON") }
                guard d.windows.count == d.record.windows, d.record.windows > 0 else {
                    throw corrupt(f.offset, "document '\(d.record.id)' has \(d.windows.count) windows, its record says \(d.record.windows)")
                }
                guard m.ratios.contains(d.record.ratio), m.adapters[String(d.record.ratio)] == (d.record.adapter ?? "none") else {
                    throw corrupt(f.offset, "document '\(d.record.id)' is at ratio \(d.record.ratio) with an adapter the manifest does not list")
                }
                pending = (d.record, d.windows, Array(repeating: [], count: d.windows.count), 0)
                expected = (0, 0)
                docs += 1
                windows += d.windows.count
            case .kv:
                guard pending != nil else { throw corrupt(f.offset, "a KV record before any document") }
                guard f.payload.count > 6 else { throw corrupt(f.offset, "a KV frame too short to hold a record") }
                let w = Int(SnapshotFormat.read32(f.payload, 0)), l = Int(SnapshotFormat.read16(f.payload, 4))
                guard w == expected.window, l == expected.layer else {
                    throw corrupt(f.offset, "KV record for window \(w) layer \(l) where window \(expected.window) layer \(expected.layer) was expected")
                }
                let bytes = Array(f.payload.dropFirst(6))
                do { try bytes.withUnsafeBytes { try TensorCodec.verify($0) } } catch {
                    throw corrupt(f.offset, "tensor record of document '\(pending!.record.id)' window \(w) layer \(l): \(error)")
                }
                if l == 0 { pending!.anchors += bytes.withUnsafeBytes { TensorCodec.rows($0) } }
                pending!.kv[w].append(bytes)
                kvRecords += 1
                expected = l + 1 == m.layers ? (w + 1, 0) : (w, l + 1)
            case .trailer:
                try finishDocument(at: f.offset)
                guard let t = try? JSONDecoder().decode(SnapshotTrailer.self, from: Data(f.payload)) else { throw corrupt(f.offset, "the trailer is not valid JSON") }
                guard t.sha256 == digestBefore else { throw corrupt(f.offset, "the file's sha256 does not match its trailer") }
                guard t.documents == docs, t.windows == windows, t.kvRecords == kvRecords,
                      m.documents == docs, m.windows == windows, m.kvRecords == kvRecords else {
                    throw corrupt(f.offset, "counts do not match: manifest \(m.documents)/\(m.windows)/\(m.kvRecords), trailer \(t.documents)/\(t.windows)/\(t.kvRecords), file \(docs)/\(windows)/\(kvRecords) documents/windows/records")
                }
                guard try r.next() == nil else { throw corrupt(r.offset, "data after the trailer") }
                return m
            }
        }
    }
}

/// What to do with a snapshot document whose id the store already holds with other content,
/// ratio or adapter (identical ones are always skipped, so importing twice is a no-op).
public enum ConflictPolicy: String, Sendable, CaseIterable {
    /// Refuse the whole import and change nothing (default).
    case fail
    /// Keep the store's version.
    case skip
    /// Take the snapshot's version.
    case replace
}

public struct ImportReport: Sendable {
    public var manifest: SnapshotManifest
    public var added: [String] = []
    public var replaced: [String] = []
    public var unchanged: [String] = []
    public var skipped: [String] = []
    public var bytes = 0
    public var seconds = 0.0
    public var megabytesPerSecond: Double { seconds > 0 ? Double(bytes) / 1e6 / seconds : 0 }
}

/// Imports a snapshot into a store: the whole file is verified first, then every new or
/// replaced document goes into the store in ONE RocksDB write batch, so a crash, a kill or a
/// bad byte leaves the store exactly as it was. (RocksDB's external-file ingestion would skip
/// the batch, but its C API ingests one column family per call, which is not atomic across the
/// five families a document spans, and imported documents need new internal numbers anyway.)
public enum SnapshotImporter {
    /// Phases reported while importing: documents verified so far, then the single write.
    public enum Progress: Sendable {
        case verified(documents: Int, of: Int)
        case writing(documents: Int)
    }

    public static func importSnapshot(from path: String, into store: KVStore, onConflict: ConflictPolicy = .fail,
                                      progress: (Progress) -> Void = { _ in }) throws -> ImportReport {
        let t0 = DispatchTime.now().uptimeNanoseconds
        let head = try SnapshotReader.manifest(path: path)
        guard head.modelFingerprint == store.manifest.modelFingerprint else {
            throw SnapshotError.modelMismatch(path: path, snapshot: "\(head.modelName) (\(head.modelFingerprint))",
                                              store: "\(store.manifest.modelName) (\(store.manifest.modelFingerprint))")
        }
        var report = ImportReport(manifest: head)
        var writes: [EncodedDocument] = []
        var conflicts: [String] = []
        var seen = 0
        let manifest = try SnapshotReader.read(path: path) { doc in
            seen += 1
            progress(.verified(documents: seen, of: head.documents))
            let id = doc.record.id
            if let old = try store.document(id) {
                if old.contentHash == doc.record.contentHash && old.ratio == doc.record.ratio && old.adapter == doc.record.adapter {
                    report.unchanged.append(id)
                    return
                }
                switch onConflict {
                case .fail: conflicts.append(id); return
                case .skip: report.skipped.append(id); return
                case .replace: report.replaced.append(id)
                }
            } else {
                report.added.append(id)
            }
            writes.append(doc)
        }
        if !conflicts.isEmpty { throw SnapshotError.conflict(ids: conflicts) }
        if !writes.isEmpty {
            let ratios = Set(writes.map { String($0.record.ratio) })
            let adapters = manifest.adapters.filter { ratios.contains($0.key) }
            for (ratio, fp) in adapters {
                if let existing = store.manifest.adapters[ratio], existing != fp {
                    throw SnapshotError.invalid("the store holds ratio \(ratio) KV made with adapter \(existing); the snapshot's is \(fp), and mixing them would break answers. Import into another --store. Nothing was imported")
                }
            }
            progress(.writing(documents: writes.count))
            try store.putEncoded(writes, adapters: adapters)
        }
        report.bytes = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        report.seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        return report
    }
}
