import Digest
import Foundation
import KnowledgeBase
import SAC
import XCTest
@testable import KVStore
@testable import Snapshots

/// Rewrites a snapshot as an attacker would: frames edited, then every frame CRC32C, the
/// manifest's counts, the trailer's counts and its sha256 recomputed, so that only the reader's
/// semantic checks can stop the file.
enum SnapshotForge {
    struct Frame {
        var tag: UInt8
        var payload: [UInt8]

        var json: [String: Any] {
            get { try! JSONSerialization.jsonObject(with: Data(payload)) as! [String: Any] }
            set { payload = [UInt8](try! JSONSerialization.data(withJSONObject: newValue, options: [.sortedKeys])) }
        }
        /// KV frames: the window and layer fields, and the tensor record.
        var window: Int {
            get { Int(SnapshotFormat.read32(payload[...], 0)) }
            set { payload.replaceSubrange(0..<4, with: withUnsafeBytes(of: UInt32(newValue).littleEndian) { Array($0) }) }
        }
        var layer: Int { Int(SnapshotFormat.read16(payload[...], 4)) }
        var record: [UInt8] {
            get { Array(payload.dropFirst(6)) }
            set { payload = Array(payload.prefix(6)) + newValue }
        }
        /// Document frames: the record's and the windows' JSON.
        var document: [String: Any] {
            get { json["record"] as! [String: Any] }
            set { var j = json; j["record"] = newValue; json = j }
        }
        var windows: [[String: Any]] {
            get { json["windows"] as! [[String: Any]] }
            set { var j = json; j["windows"] = newValue; json = j }
        }
    }

    /// Every frame but the trailer, in file order (the manifest first).
    static func frames(_ path: String) throws -> [Frame] {
        let b = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        var out: [Frame] = []
        var at = SnapshotFormat.headerSize
        while at < b.count {
            let tag = b[at], n = Int(SnapshotFormat.read32(b[...], at + 1))
            if tag == SnapshotFormat.Tag.trailer.rawValue { break }
            out.append(Frame(tag: tag, payload: Array(b[(at + 5)..<(at + 5 + n)])))
            at += 5 + n + 4
        }
        return out
    }

    static func write(_ frames: [Frame], to path: String) throws {
        var frames = frames
        let docs = frames.filter { $0.tag == 2 }
        var m = frames[0].json
        m["documents"] = docs.count
        m["windows"] = docs.reduce(0) { $0 + $1.windows.count }
        m["kvRecords"] = frames.filter { $0.tag == 3 }.count
        frames[0].json = m
        var out = SnapshotFormat.header()
        func frame(_ tag: UInt8, _ payload: [UInt8]) {
            var head: [UInt8] = [tag]
            SnapshotFormat.append32(UInt32(payload.count), to: &head)
            let crc = payload.withUnsafeBytes { CRC32C.checksum($0, seed: head.withUnsafeBytes { CRC32C.checksum($0) }) }
            out += head + payload
            SnapshotFormat.append32(crc, to: &out)
        }
        for f in frames { frame(f.tag, f.payload) }
        let trailer: [String: Any] = ["documents": m["documents"]!, "windows": m["windows"]!, "kvRecords": m["kvRecords"]!,
                                      "sha256": SHA256.hex(Data(out))]
        frame(127, [UInt8](try JSONSerialization.data(withJSONObject: trailer)))
        try Data(out).write(to: URL(fileURLWithPath: path))
    }

    /// A tensor record re-encoded with `edit` applied to its decoded form (its own CRC made anew).
    static func reencoded(_ record: [UInt8], _ edit: (inout TensorRecord) -> Void) throws -> [UInt8] {
        var r = try record.withUnsafeBytes { try TensorCodec.decode($0) }
        edit(&r)
        return TensorCodec.encode(r, dtype: .f16, compression: .none)
    }

    /// A record with header fields (u32 at byte 8 rows, 12 cols, 16 raw size) replaced and its CRC recomputed.
    static func forgedHeader(_ record: [UInt8], _ fields: [Int: UInt32]) -> [UInt8] {
        var b = record
        for (at, v) in fields { withUnsafeBytes(of: v.littleEndian) { for i in 0..<4 { b[at + i] = $0[i] } } }
        let crc = CRC32C.checksum(b[28...].withUnsafeBytes { $0 }, seed: b[0..<24].withUnsafeBytes { CRC32C.checksum($0) })
        withUnsafeBytes(of: crc.littleEndian) { for i in 0..<4 { b[24 + i] = $0[i] } }
        return b
    }
}

/// Hostile but well-formed snapshots (every checksum right): each is refused with an error that
/// names the problem, by `snapshot inspect --verify` (SnapshotReader.read) and by `import`, and
/// the store is byte-for-byte unchanged afterwards.
final class HostileSnapshotTests: TemporaryFolderTestCase {
    typealias Frame = SnapshotForge.Frame
    var source: String!
    var dst: KVStore!
    var before: String!

    override func setUpWithError() throws {
        try super.setUpWithError()
        // 2 documents x 2 windows (510 tokens, ratio 15: 34 anchors) x 4 layers of kv_dim 192.
        let src = try SnapshotTestsSupport.syntheticStore(path: path("src"), docs: 2, windows: 2, rows: 34, layers: 4)
        source = path("src.akvs")
        _ = try SnapshotExporter.export(store: src, to: source)
        dst = try SnapshotTestsSupport.syntheticStore(path: path("dst"), docs: 1, windows: 1, rows: 34, layers: 4, idPrefix: "other")
        before = try SnapshotTestsSupport.contentDigest(dst)
    }

    /// Index of the KV frame of document `doc`, window `w`, layer `l` in the source's frames.
    func kvIndex(_ frames: [Frame], doc: Int, window w: Int, layer l: Int) -> Int {
        let docStart = frames.indices.filter { frames[$0].tag == 2 }[doc]
        return docStart + 1 + w * 4 + l
    }
    func docIndex(_ frames: [Frame], _ doc: Int) -> Int { frames.indices.filter { frames[$0].tag == 2 }[doc] }

    /// Forges the source with `edit`, then expects `phrase` from the reader alone (unless
    /// `aloneOK`: the file is consistent in itself) and from an import into `store`, which must
    /// be unchanged.
    func assertRefused(_ phrase: String, into store: KVStore? = nil, aloneOK: Bool = false,
                       file: StaticString = #filePath, line: UInt = #line, _ edit: (inout [Frame]) throws -> Void) throws {
        var frames = try SnapshotForge.frames(source)
        try edit(&frames)
        let bad = path("forged-\(UUID().uuidString).akvs")
        try SnapshotForge.write(frames, to: bad)
        if aloneOK {
            XCTAssertNoThrow(try SnapshotReader.read(path: bad), "consistent in itself", file: file, line: line)
        } else {
            XCTAssertThrowsError(try SnapshotReader.read(path: bad), file: file, line: line) { e in
                XCTAssertTrue("\(e)".contains(phrase), "inspect --verify: \(e)", file: file, line: line)
            }
        }
        let target = store ?? dst!
        let digest = try SnapshotTestsSupport.contentDigest(target)
        XCTAssertThrowsError(try SnapshotImporter.importSnapshot(from: bad, into: target, onConflict: .replace), file: file, line: line) { e in
            XCTAssertTrue(e is SnapshotError, "\(e)", file: file, line: line)
            XCTAssertTrue("\(e)".contains(phrase), "import: \(e)", file: file, line: line)
        }
        XCTAssertEqual(try SnapshotTestsSupport.contentDigest(target), digest, "the store is unchanged", file: file, line: line)
    }

    func testTheForgeAloneChangesNothingThatMatters() throws {
        // The control: rewritten with no edit, the file verifies and imports.
        let frames = try SnapshotForge.frames(source)
        XCTAssertEqual(frames.count, 1 + 2 * (1 + 2 * 4))
        try SnapshotForge.write(frames, to: path("same.akvs"))
        XCTAssertNoThrow(try SnapshotReader.read(path: path("same.akvs")))
        let r = try SnapshotImporter.importSnapshot(from: path("same.akvs"), into: dst)
        XCTAssertEqual(Set(r.added), ["doc-0", "doc-1"])
    }

    // MARK: KV frames and tensor records

    func testAKVFramePastTheLastWindowIsRefused() throws {
        // Crashed inspect --verify, import and the HTTP server (an index past the document's windows).
        try assertRefused("which has 2 windows") { f in
            var extra = f[self.kvIndex(f, doc: 0, window: 1, layer: 0)]
            extra.window = 2
            f.insert(extra, at: self.kvIndex(f, doc: 0, window: 1, layer: 3) + 1)
        }
    }

    func testALayerCountOtherThanTheStoresIsRefused() throws {
        // A file with 3 layers per window agrees with itself, but the store's model has 4.
        try assertRefused("holds 3 layers of KV per window, but the store's model has 4", aloneOK: true) { f in
            var m = f[0].json
            m["layers"] = 3
            f[0].json = m
            f.removeAll { $0.tag == 3 && $0.layer == 3 }
        }
        try assertRefused("claims 0 layers") { f in
            var m = f[0].json
            m["layers"] = 0
            f[0].json = m
        }
    }

    func testRecordsOfAnotherKVDimThanTheModelsAreRefused() throws {
        let shaped = try KVStore(path: path("shaped"), modelFingerprint: "synthetic-model", modelName: "synthetic", create: true,
                                 shape: ModelShape(layers: 4, kvDim: 128))
        try assertRefused("the model and the window need 34x128", into: shaped, aloneOK: true) { _ in }
        // Without a store the first record sets kv_dim for the whole file.
        try assertRefused("the model and the window need 34x192") { f in
            let i = self.kvIndex(f, doc: 1, window: 0, layer: 2)
            f[i].record = try SnapshotForge.reencoded(f[i].record) { r in
                r.cols = 96
                r.keys = Array(r.keys.prefix(34 * 96)); r.values = Array(r.values.prefix(34 * 96))
            }
        }
    }

    func testMoreAnchorsThanTheRatioAndWindowGiveAreRefused() throws {
        try assertRefused("the model and the window need 34x192") { f in
            let i = self.kvIndex(f, doc: 1, window: 0, layer: 0)
            f[i].record = try SnapshotForge.reencoded(f[i].record) { r in
                r.positions.append(r.positions.last! + 1)
                r.keys += [Float](repeating: 0, count: 192); r.values += [Float](repeating: 0, count: 192)
            }
        }
    }

    func testAShapeThatWrapsTheSizeArithmeticIsRefused() throws {
        try assertRefused("too large for a record") { f in
            let i = self.kvIndex(f, doc: 0, window: 0, layer: 1)
            f[i].record = SnapshotForge.forgedHeader(f[i].record, [8: .max, 12: .max])
        }
    }

    func testAnLZ4RecordCannotClaimARawSizeItsShapeOrBytesDoNotGive() throws {
        // Made a 1.5 MB record cost 1.5 GB on every query: now refused at import.
        try assertRefused("cannot decompress to") { f in
            let i = self.kvIndex(f, doc: 0, window: 1, layer: 2)
            var r = try f[i].record.withUnsafeBytes { try TensorCodec.decode($0) }
            r.keys = r.keys.map { _ in 0 }; r.values = r.keys
            let lz4 = TensorCodec.encode(r, dtype: .f16, compression: .lz4)
            let raw = TensorCodec.payloadSize(rows: 34, cols: 192 * 3000, dtype: .f16)!
            f[i].record = SnapshotForge.forgedHeader(lz4, [12: UInt32(192 * 3000), 16: UInt32(raw)])
        }
        // Within what LZ4 could expand to, but the shape is not the window's: refused by the shape.
        try assertRefused("the model and the window need 34x192") { f in
            let i = self.kvIndex(f, doc: 0, window: 1, layer: 2)
            let lz4 = try f[i].record.withUnsafeBytes { TensorCodec.encode(try TensorCodec.decode($0), dtype: .f16, compression: .lz4) }
            let raw = TensorCodec.payloadSize(rows: 34, cols: 192 * 4, dtype: .f16)!
            XCTAssertLessThanOrEqual(raw, (lz4.count - 28) * 255)
            f[i].record = SnapshotForge.forgedHeader(lz4, [12: UInt32(192 * 4), 16: UInt32(raw)])
        }
    }

    func testAnchorPositionsOutsideTheirWindowAreRefused() throws {
        try assertRefused("anchor positions are not ascending inside the window") { f in
            let i = self.kvIndex(f, doc: 0, window: 1, layer: 0)
            f[i].record = try SnapshotForge.reencoded(f[i].record) { r in r.positions[5] = Int32.min }
        }
        try assertRefused("anchor positions are not ascending inside the window") { f in
            let i = self.kvIndex(f, doc: 0, window: 1, layer: 0)
            f[i].record = try SnapshotForge.reencoded(f[i].record) { r in r.positions = r.positions.map { $0 - 510 } }
        }
        try assertRefused("anchor positions differ from layer 0's") { f in
            let i = self.kvIndex(f, doc: 1, window: 0, layer: 3)
            f[i].record = try SnapshotForge.reencoded(f[i].record) { r in r.positions[0] += 1 }
        }
    }

    // MARK: document frames

    func editDocument(_ f: inout [Frame], _ doc: Int = 1, record: ((inout [String: Any]) -> Void)? = nil,
                      window: Int = 0, _ win: ((inout [String: Any]) -> Void)? = nil) {
        let i = docIndex(f, doc)
        if let record { var r = f[i].document; record(&r); f[i].document = r }
        if let win { var ws = f[i].windows; win(&ws[window]); f[i].windows = ws }
    }

    func testIndexTermsMustBeTermsTheAnalyzerCouldHaveMade() throws {
        for (term, tf, phrase) in [("river\u{0}x", 1, "index term"), ("tab\tbed", 1, "index term"), ("", 1, "index term"),
                                   (String(repeating: "a", count: 65), 1, "index term"),
                                   ("rivers", 0, "frequency 0"), ("rivers", -3, "frequency -3"), ("rivers", 1 << 40, "frequency")] {
            try assertRefused(phrase) { f in self.editDocument(&f, window: 1) { w in
                var terms = w["terms"] as! [String: Any]
                terms[term] = tf
                w["terms"] = terms
            } }
        }
    }

    func testIDsMustBeNonEmptyShortAndFreeOfControlCharacters() throws {
        for id in ["", "bad\u{1}id", "line\nbreak", String(repeating: "x", count: 513)] {
            try assertRefused("document id") { f in self.editDocument(&f, record: { $0["id"] = id }) }
        }
        try assertRefused("document 'doc-0' appears twice") { f in self.editDocument(&f, record: { $0["id"] = "doc-0" }) }
    }

    func testRatiosOutsideWhatTheStoreCanKeyAreRefused() throws {
        for ratio in [0, -5, 70000] {
            try assertRefused("has ratio \(ratio), outside") { f in self.editDocument(&f, record: { $0["ratio"] = ratio }) }
        }
    }

    func testWindowsMustBeLaidOutAsIngestLaysThemOut() throws {
        try assertRefused("tokens in its windows, its record says") { f in
            self.editDocument(&f, record: { $0["tokens"] = ($0["tokens"] as! Int) + 1 })
        }
        try assertRefused("one after another") { f in self.editDocument(&f, window: 1) { $0["start"] = 7 } }
        try assertRefused("one after another") { f in
            self.editDocument(&f, window: 0) { w in w["tokens"] = Array((w["tokens"] as! [Int]).prefix(500)) }
        }
        try assertRefused("negative token id") { f in
            self.editDocument(&f, window: 1) { w in var t = w["tokens"] as! [Int]; t[3] = -1; w["tokens"] = t }
        }
    }

    // MARK: shapes recorded in the store

    func testTheStoresAnchorCountIsTheEncoders() {
        for ratio in [1, 2, 3, 4, 5, 7, 15, 16, 40, 509, 510, 511, 1000] {
            for length in [1, 2, 3, 7, 8, 100, 509, 510] {
                let n = KVStore.anchorCount(windowLength: length, ratio: ratio)
                XCTAssertEqual(n, UniformAnchors.count(windowLength: length, ratio: ratio), "L \(length) r \(ratio)")
                XCTAssertEqual(n, UniformAnchors().anchors(windowLength: length, ratio: ratio).count, "L \(length) r \(ratio)")
            }
        }
    }

    func testImportIntoANewStoreRecordsTheFilesShapeAndAModelOfAnotherShapeIsRefused() throws {
        let p = path("fresh")
        do {
            let fresh = try KVStore(path: p, modelFingerprint: "synthetic-model", modelName: "synthetic", create: true)
            XCTAssertNil(fresh.manifest.shape)
            XCTAssertNil(try fresh.modelShape())
            _ = try SnapshotImporter.importSnapshot(from: source, into: fresh)
            XCTAssertEqual(fresh.manifest.shape, ModelShape(layers: 4, kvDim: 192), "recorded in the import's batch")
        }
        do {
            let reopened = try KVStore(path: p, modelFingerprint: nil, modelName: nil, create: false)
            XCTAssertEqual(reopened.manifest.shape, ModelShape(layers: 4, kvDim: 192))
        }
        // Opened with a model of another shape (what KnowledgeBase.openStore passes): refused.
        XCTAssertThrowsError(try KVStore(path: p, modelFingerprint: "synthetic-model", modelName: "synthetic", create: false,
                                         shape: ModelShape(layers: 30, kvDim: 192))) { e in
            XCTAssertEqual(e as? StoreError, .shapeMismatch(path: p, store: ModelShape(layers: 4, kvDim: 192), model: ModelShape(layers: 30, kvDim: 192)))
            XCTAssertTrue("\(e)".contains("holds KV of 4 layers of kv_dim 192"), "\(e)")
        }
    }

    func testExportRefusesADocumentWithAnotherLayerCount() throws {
        // Export took the layer count from the first document: after one such document every
        // later backup silently kept only that many layers of every document.
        let store = try SnapshotTestsSupport.syntheticStore(path: path("mixed"), docs: 1, windows: 1, rows: 34, layers: 4)
        let zeros = [Float](repeating: 0, count: 34 * 192)
        let kv = (0..<3).map { _ in TensorRecord(positions: (0..<34).map { Int32(8 + 15 * $0) }, keys: zeros, values: zeros, cols: 192) }
        let record = DocumentRecord(id: "three", title: "three layers", source: "test", contentHash: "h3", ratio: 15, adapter: "adapter-r15",
                                    windows: 1, tokens: 510, anchors: 34, ingestedAt: KVStore.timestamp())
        try store.put(DocumentWrite(record: record, windows: [WindowRecord(tokens: [Int32](repeating: 5, count: 510), text: "three layers", start: 0,
                                                                             terms: ["three": 1, "layers": 1])], kv: [kv]))
        XCTAssertThrowsError(try SnapshotExporter.export(store: store, to: path("mixed.akvs"))) { e in
            XCTAssertTrue("\(e)".contains("document 'three' holds 3 layers of KV, the store's model has 4"), "\(e)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("mixed.akvs")))
        XCTAssertEqual(try SnapshotExporter.export(store: store, documents: ["doc-0"], to: path("doc0.akvs")).manifest.layers, 4)
    }

    func testAStoreWithoutARecordedShapeReadsItFromItsDocuments() throws {
        XCTAssertNil(dst.manifest.shape)
        XCTAssertEqual(try dst.modelShape(), ModelShape(layers: 4, kvDim: 192))
    }
}

/// Export: repeated ids, and replacing an existing file.
final class ExportFileTests: TemporaryFolderTestCase {
    func testRepeatedIdsAreExportedOnceAndTheFileImports() throws {
        let src = try SnapshotTestsSupport.syntheticStore(path: path("src"), docs: 3, windows: 1, rows: 34, layers: 2)
        let once = try SnapshotExporter.export(store: src, documents: ["doc-2", "doc-0"], to: path("once.akvs"))
        let many = try SnapshotExporter.export(store: src, documents: ["doc-2", "doc-0", "doc-2", "doc-2", "doc-0"], to: path("many.akvs"))
        XCTAssertEqual(many.manifest.documents, 2)
        XCTAssertEqual(many.bytes, once.bytes)
        let dst = try KVStore(path: path("dst"), modelFingerprint: "synthetic-model", modelName: "synthetic", create: true)
        let r = try SnapshotImporter.importSnapshot(from: path("many.akvs"), into: dst)
        XCTAssertEqual(Set(r.added), ["doc-0", "doc-2"])
    }

    func testExportReplacesAnExistingFileInOneStep() throws {
        let src = try SnapshotTestsSupport.syntheticStore(path: path("src"), docs: 2, windows: 1, rows: 34, layers: 2)
        let file = path("kb.akvs")
        try Data("an older backup".utf8).write(to: URL(fileURLWithPath: file))
        let r = try SnapshotExporter.export(store: src, to: file)
        XCTAssertEqual(try SnapshotReader.read(path: file).documents, 2)
        XCTAssertEqual((try FileManager.default.attributesOfItem(atPath: file)[.size] as? Int), r.bytes)
        XCTAssertFalse(FileManager.default.fileExists(atPath: file + ".partial"))
        // When the new file cannot take the name, what is there stays: the old export deleted
        // whatever held the name before renaming (here a folder with a file in it).
        let folder = path("taken")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: folder + "/inside.txt"))
        XCTAssertThrowsError(try SnapshotExporter.export(store: src, to: folder)) { e in
            XCTAssertTrue("\(e)".contains("cannot rename"), "\(e)")
        }
        XCTAssertEqual(try String(contentsOfFile: folder + "/inside.txt", encoding: .utf8), "keep me")
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder + ".partial"))
    }

    func testFolderSync() throws {
        XCTAssertNoThrow(try DurableFile.syncFolder(of: path("anything")))
        XCTAssertThrowsError(try DurableFile.syncFolder(of: path("no-such-folder/file"))) { e in
            guard case StoreError.fileSystem = e else { return XCTFail("\(e)") }
        }
    }
}
