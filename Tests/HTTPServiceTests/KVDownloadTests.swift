import Foundation
import Hummingbird
import HummingbirdTesting
import KVStore
import NIOCore
import SAC
import XCTest
@testable import AnchorKVCore
@testable import HTTPService

/// GET /v1/documents/{id}/kv (safetensors) is streamed a layer at a time: it must be the file
/// the KV encoder writes of the whole document, byte for byte, with its Content-Length up front.
final class KVDownloadTests: XCTestCase {
    func testStreamedDownloadIsTheEncodersFileByteForByte() async throws {
        let f = try Fixture()
        // Two windows (the four corpus texts together) and one short document.
        let long = try ["danube.md", "honeybees.md", "printing-press.md", "eddystone-lighthouse.md"].map(Fixture.text).joined(separator: "\n\n")
        try await f.app.test(.router) { client in
            let a = try await client.post("/v1/documents", ["id": "all/four", "text": long])
            XCTAssertEqual(a.status, .ok, String(buffer: a.body))
            let b = try await client.post("/v1/documents", Docs.bees)
            XCTAssertEqual(b.status, .ok, String(buffer: b.body))
            let record = try XCTUnwrap(try f.kb.rocks.document("all/four"))
            XCTAssertGreaterThan(record.windows, 1)
            XCTAssertGreaterThan(f.kb.model.config.layerCount, 10, "names layer10.k sort before layer2.k: the order is exercised")
            for (id, path) in [("all/four", "all%2Ffour"), ("bees", "bees")] {
                for dtype in KVFile.DType.allCases {
                    let r = try await client.get("/v1/documents/\(path)/kv?dtype=\(dtype.rawValue)")
                    XCTAssertEqual(r.status, .ok)
                    // What the route sent before it streamed: the whole context through KVFile.write.
                    let doc = try XCTUnwrap(try f.kb.rocks.document(id))
                    let ctx = try f.kb.context(of: (0..<doc.windows).map { (doc, $0) })
                    let layout = try f.core.kvFile(id, dtype: dtype.rawValue).layout
                    let file = f.dir.appendingPathComponent("\(UUID().uuidString).akv").path
                    try KVFile.write(ctx, to: file, dtype: dtype, extra: KVFileDownload.metadata(layout, record: doc, model: f.kb.model.name))
                    let expected = try Data(contentsOf: URL(fileURLWithPath: file))
                    let got = Data(r.body.readableBytesView)
                    XCTAssertEqual(got.count, expected.count, "\(id) \(dtype)")
                    XCTAssertTrue(got == expected, "\(id) \(dtype): the streamed bytes differ from KVFile.write's")
                    XCTAssertEqual(r.headers[.contentLength], String(expected.count), "Content-Length is known before the first byte")
                    let (back, md) = try KVFile.read(file)
                    XCTAssertEqual(back.anchorCount, ctx.anchorCount)
                    XCTAssertEqual(md["document_id"], id)
                }
            }
        }
    }

    func testLayoutWithoutTensorsMatchesTheContextAndTheHeaderIsWrites() throws {
        let f = try Fixture()
        _ = try f.kb.ingest(.init(id: "river", title: "The Danube", text: Docs.river["text"]!, origin: "test"))
        let d = try XCTUnwrap(try f.kb.rocks.document("river"))
        let snap = f.kb.rocks.db.snapshot()
        let full = try f.kb.context(of: (0..<d.windows).map { (d, $0) }, snapshot: snap)
        let layout = try f.kb.layout(of: d, snapshot: snap)
        XCTAssertEqual(layout.positions, full.positions)
        XCTAssertEqual(layout.windowAnchorCounts, full.windowAnchorCounts)
        XCTAssertEqual(layout.contextLength, full.contextLength)
        XCTAssertEqual(layout.layerCount, full.layerCount)
        XCTAssertTrue(layout.keys.allSatisfy(\.isEmpty), "the layout keeps no tensor")
        XCTAssertThrowsError(try layout.validate(), "a layout is not a context a decoder could use")
        for l in [0, full.layerCount - 1] {
            let layer = try f.kb.documentLayer(d, layer: l, snapshot: snap)
            XCTAssertEqual(layer.keys, full.keys[l])
            XCTAssertEqual(layer.values, full.values[l])
        }
        let h = try KVFile.header(layout, dtype: .f16)
        XCTAssertEqual(h.tensors.count, 2 * full.layerCount)
        XCTAssertEqual(h.tensors.reduce(0) { $0 + $1.byteCount } + h.bytes.count, h.fileBytes)
        let file = f.dir.appendingPathComponent("river.akv").path
        try KVFile.write(full, to: file, dtype: .f16)
        var streamed = h.bytes
        for t in h.tensors { streamed.append(KVFile.tensorBytes(t.isKey ? full.keys[t.layer] : full.values[t.layer], dtype: .f16)) }
        XCTAssertEqual(streamed, try Data(contentsOf: URL(fileURLWithPath: file)))
    }
}
