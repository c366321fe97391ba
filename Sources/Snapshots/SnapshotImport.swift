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
        guard crc == SnapshotFormat.read32(tail, 0) || !ChecksumPolicy.enforced else {
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

    /// Reads and verifies the whole file; `expect` is the store's model shape (layers, kv_dim),
    /// which every window must match. Without it (no store yet) the file must agree with itself.
    @discardableResult
    public static func read(path: String, expect: ModelShape? = nil, visit: (EncodedDocument) throws -> Void = { _ in }) throws -> SnapshotManifest {
        try readVerified(path: path, expect: expect, visit: visit).manifest
    }

    /// The longest id `ingest` accepts, in UTF-8 bytes.
    static let maxIDBytes = 512
    /// The longest index term the lexical analyzer makes, in UTF-8 bytes.
    static let maxTermBytes = 64
    /// More layers than any model AnchorKV runs; a larger count is not a real file.
    static let maxLayers = 4096

    static func hasControl(_ s: String) -> Bool { s.unicodeScalars.contains { $0.properties.generalCategory == .control } }

    /// Every claim of the file checked against the others and against `expect`; returns the
    /// manifest and the model shape the file's records have (nil when it holds no record).
    static func readVerified(path: String, expect: ModelShape?, visit: (EncodedDocument) throws -> Void) throws -> (manifest: SnapshotManifest, shape: ModelShape?) {
        let r = try FrameReader(path: path)
        let m = try readManifest(r)
        func corrupt(_ at: Int, _ why: String) -> SnapshotError { .corrupt(path: path, offset: at, reason: why) }
        guard (1...maxLayers).contains(m.layers) || (m.layers == 0 && m.documents == 0) else {
            throw corrupt(SnapshotFormat.headerSize, "the manifest claims \(m.layers) layers per window")
        }
        if let expect, m.documents > 0, m.layers != expect.layers {
            throw SnapshotError.invalid("snapshot \(path) holds \(m.layers) layers of KV per window, but the store's model has \(expect.layers); import it into a store of its own model. Nothing was imported")
        }
        var kvDim = expect?.kvDim
        var docs = 0, windows = 0, kvRecords = 0
        var ids = Set<String>()
        var pending: (record: DocumentRecord, windows: [WindowRecord], kv: [[[UInt8]]], anchors: Int)?
        var positions0: [Int32] = []
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

        /// A document frame's claims: id, ratio, windows laid out as ingest lays them out
        /// (equal lengths but the last, contiguous starts, token ids >= 0), and index terms.
        func checkDocument(_ d: DocumentFrame, at: Int) throws {
            let id = d.record.id
            guard !id.isEmpty, id.utf8.count <= maxIDBytes, !hasControl(id) else {
                throw corrupt(at, "document id \(id.debugDescription.prefix(80)) is empty, longer than \(maxIDBytes) bytes or has control characters")
            }
            guard ids.insert(id).inserted else { throw corrupt(at, "document '\(id)' appears twice") }
            guard KVStore.ratios.contains(d.record.ratio) else { throw corrupt(at, "document '\(id)' has ratio \(d.record.ratio), outside \(KVStore.ratios)") }
            guard d.windows.count == d.record.windows, d.record.windows > 0 else {
                throw corrupt(at, "document '\(id)' has \(d.windows.count) windows, its record says \(d.record.windows)")
            }
            let size = d.windows[0].tokens.count
            var tokens = 0
            for (w, win) in d.windows.enumerated() {
                let n = win.tokens.count
                guard n > 0, n == size || (w == d.windows.count - 1 && n < size), win.start == tokens else {
                    throw corrupt(at, "document '\(id)' window \(w) has \(n) tokens from \(win.start); windows are \(size) tokens each (the last may be shorter), one after another")
                }
                guard !win.tokens.contains(where: { $0 < 0 }) else { throw corrupt(at, "document '\(id)' window \(w) has a negative token id") }
                tokens += n
                var occurrences = 0
                for (term, tf) in win.terms {
                    guard !term.isEmpty, term.utf8.count <= maxTermBytes, !hasControl(term) else {
                        throw corrupt(at, "document '\(id)' window \(w) has index term \(term.debugDescription.prefix(80)): terms are 1 to \(maxTermBytes) bytes without control characters")
                    }
                    guard tf >= 1, tf <= win.text.utf8.count else {
                        throw corrupt(at, "document '\(id)' window \(w): term '\(term)' has frequency \(tf) in a text of \(win.text.utf8.count) bytes")
                    }
                    occurrences += tf
                }
                guard occurrences <= win.text.utf8.count else {
                    throw corrupt(at, "document '\(id)' window \(w) has \(occurrences) term occurrences in a text of \(win.text.utf8.count) bytes")
                }
            }
            guard tokens == d.record.tokens else { throw corrupt(at, "document '\(id)' has \(tokens) tokens in its windows, its record says \(d.record.tokens)") }
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
                try checkDocument(d, at: f.offset)
                guard m.ratios.contains(d.record.ratio), m.adapters[String(d.record.ratio)] == (d.record.adapter ?? "none") else {
                    throw corrupt(f.offset, "document '\(d.record.id)' is at ratio \(d.record.ratio) with an adapter the manifest does not list")
                }
                pending = (d.record, d.windows, Array(repeating: [], count: d.windows.count), 0)
                expected = (0, 0)
                docs += 1
                windows += d.windows.count
            case .kv:
                guard let p = pending else { throw corrupt(f.offset, "a KV record before any document") }
                guard f.payload.count > 6 else { throw corrupt(f.offset, "a KV frame too short to hold a record") }
                let w = Int(SnapshotFormat.read32(f.payload, 0)), l = Int(SnapshotFormat.read16(f.payload, 4))
                guard w < p.record.windows else {
                    throw corrupt(f.offset, "KV record for window \(w) of document '\(p.record.id)', which has \(p.record.windows) windows")
                }
                guard w == expected.window, l == expected.layer else {
                    throw corrupt(f.offset, "KV record for window \(w) layer \(l) where window \(expected.window) layer \(expected.layer) was expected")
                }
                let bytes = Array(f.payload.dropFirst(6))
                let win = p.windows[w]
                let what = "tensor record of document '\(p.record.id)' window \(w) layer \(l)"
                let positions: [Int32]
                do {
                    let rows = KVStore.anchorCount(windowLength: win.tokens.count, ratio: p.record.ratio)
                    let cols = try kvDim ?? bytes.withUnsafeBytes { try TensorCodec.header($0).cols }
                    positions = try bytes.withUnsafeBytes { try TensorCodec.positions($0, expect: .init(rows: rows, cols: cols)) }
                    if kvDim == nil {
                        guard cols > 0 else { throw corrupt(f.offset, "\(what) has no columns") }
                        kvDim = cols
                    }
                } catch let e as SnapshotError { throw e } catch {
                    throw corrupt(f.offset, "\(what): \(error)")
                }
                if l == 0 {
                    let local = positions.map { Int($0) - win.start }
                    guard local.first.map({ $0 >= 1 }) ?? false, local.last! <= win.tokens.count, zip(local, local.dropFirst()).allSatisfy({ $0 < $1 }) else {
                        throw corrupt(f.offset, "\(what): anchor positions are not ascending inside the window (tokens \(win.start + 1)...\(win.start + win.tokens.count))")
                    }
                    positions0 = positions
                    pending!.anchors += positions.count
                } else if positions != positions0 {
                    throw corrupt(f.offset, "\(what): anchor positions differ from layer 0's")
                }
                pending!.kv[w].append(bytes)
                kvRecords += 1
                expected = l + 1 == m.layers ? (w + 1, 0) : (w, l + 1)
            case .trailer:
                try finishDocument(at: f.offset)
                guard let t = try? JSONDecoder().decode(SnapshotTrailer.self, from: Data(f.payload)) else { throw corrupt(f.offset, "the trailer is not valid JSON") }
                guard t.sha256 == digestBefore || !ChecksumPolicy.enforced else { throw corrupt(f.offset, "the file's sha256 does not match its trailer") }
                guard t.documents == docs, t.windows == windows, t.kvRecords == kvRecords,
                      m.documents == docs, m.windows == windows, m.kvRecords == kvRecords else {
                    throw corrupt(f.offset, "counts do not match: manifest \(m.documents)/\(m.windows)/\(m.kvRecords), trailer \(t.documents)/\(t.windows)/\(t.kvRecords), file \(docs)/\(windows)/\(kvRecords) documents/windows/records")
                }
                guard try r.next() == nil else { throw corrupt(r.offset, "data after the trailer") }
                return (m, kvDim.map { ModelShape(layers: m.layers, kvDim: $0) })
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
    /// Same content as the store's, whose stored copy was damaged (`KVStore.damage`): the
    /// snapshot's copy replaced it, whatever `onConflict` says (it is no conflict).
    public var repaired: [String] = []
    public var skipped: [String] = []
    public var bytes = 0
    public var seconds = 0.0
    public var megabytesPerSecond: Double { seconds > 0 ? Double(bytes) / 1e6 / seconds : 0 }
}

/// Imports a snapshot into a store, all or nothing, in bounded memory: each verified document's
/// windows and KV are staged on disk where no reader sees them (`StagedWrite`), and once the
/// whole file has checked out (trailer digest and counts) ONE RocksDB batch makes every new or
/// replaced document visible. A crash, a kill or a bad byte leaves the store as it was (what was
/// staged is deleted, at the latest when the store is next opened). On a Redis Cluster store the
/// same holds until the whole file has checked out; then each document commits atomically, in
/// order (a cluster has no atomic write across slots), so a crash while committing leaves the
/// first documents imported, each whole (docs/scale-out.md). (RocksDB's external-file ingestion would skip
/// the batch, but its C API ingests one column family per call, which is not atomic across the
/// five families a document spans, and imported documents need new internal numbers anyway.)
public enum SnapshotImporter {
    /// Phases reported while importing: documents verified so far, then the single write.
    public enum Progress: Sendable {
        case verified(documents: Int, of: Int)
        case writing(documents: Int)
    }

    public static func importSnapshot(from path: String, into store: any DocumentStore, onConflict: ConflictPolicy = .fail,
                                      progress: (Progress) -> Void = { _ in }) throws -> ImportReport {
        let t0 = DispatchTime.now().uptimeNanoseconds
        let head = try SnapshotReader.manifest(path: path)
        guard head.modelFingerprint == store.manifest.modelFingerprint else {
            throw SnapshotError.modelMismatch(path: path, snapshot: "\(head.modelName) (\(head.modelFingerprint))",
                                              store: "\(store.manifest.modelName) (\(store.manifest.modelFingerprint))")
        }
        var report = ImportReport(manifest: head)
        // Each document to write goes to disk as soon as it is verified, staged where no reader
        // sees it; one final batch makes all of them visible once the whole file has checked out
        // (any failure before that deletes what was staged). Memory: one document's KV at a time.
        let staged = store.beginBatchWrite()
        defer { staged.abandon() }
        var ratios = Set<String>()
        func write(_ doc: EncodedDocument) throws {
            try staged.add(doc)
            ratios.insert(String(doc.record.ratio))
        }
        var conflicts: [String] = []
        var seen = 0
        // Every record is checked against the store's model shape; a store that has none yet
        // (new, or made before shapes were recorded and empty) takes the file's, in the same batch.
        let storeShape = try store.modelShape()
        let (manifest, fileShape) = try SnapshotReader.readVerified(path: path, expect: storeShape) { doc in
            seen += 1
            progress(.verified(documents: seen, of: head.documents))
            let id = doc.record.id
            if case .unreadable = try store.stored(id) {  // a damaged record: the snapshot's copy repairs it
                report.repaired.append(id)
                try write(doc)
                return
            }
            if let old = try store.document(id) {
                if old.contentHash == doc.record.contentHash && old.ratio == doc.record.ratio && old.adapter == doc.record.adapter {
                    if try store.damage(of: old, shape: storeShape, snapshot: nil) == nil {
                        report.unchanged.append(id)
                        return
                    }
                    report.repaired.append(id)
                    try write(doc)
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
            try write(doc)
        }
        if !conflicts.isEmpty { throw SnapshotError.conflict(ids: conflicts) }
        if staged.count > 0 {
            let adapters = manifest.adapters.filter { ratios.contains($0.key) }
            for (ratio, fp) in adapters {
                if let existing = store.manifest.adapters[ratio], existing != fp {
                    throw SnapshotError.invalid("the store holds ratio \(ratio) KV made with adapter \(existing); the snapshot's is \(fp), and mixing them would break answers. Import into another --store. Nothing was imported")
                }
            }
            progress(.writing(documents: staged.count))
            try staged.commit(adapters: adapters, shape: storeShape == nil ? fileShape : nil)
        }
        report.bytes = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        report.seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        return report
    }
}
