import AnchorKVCore
import Foundation
import Glibc
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import KVStore
import NIOCore
import XCTest
@testable import HTTPService

/// POST /v1/snapshots/import has its own lane: a size limit (by Content-Length and by the bytes
/// streamed), a number of uploads at once and a timeout. Uploads are driven through the handler
/// with bodies that arrive in pieces or stall, which the test client cannot send.
final class UploadLimitTests: XCTestCase {
    /// A fixture whose uploads go to a folder of their own, so leftovers can be counted.
    func fixture(_ configure: @escaping (inout ServiceConfig) -> Void) throws -> (Fixture, String) {
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("akv-uploads-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: tmp) }
        return (try Fixture { $0.tmpDir = tmp; configure(&$0) }, tmp)
    }

    func files(_ dir: String) throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: dir).sorted() }

    /// Every key and value of every column family: equal = unchanged store.
    func storeDigest(_ store: KVStore) throws -> [UInt8] {
        var all: [UInt8] = []
        for f in KVStore.families {
            try store.db.scan(f, prefix: []) { k, v in all += Array(f.utf8) + [UInt8](k) + [UInt8](v); return true }
        }
        return all
    }

    /// Runs the import handler on a body stream; the error is what a client would be answered.
    static func upload(_ f: Fixture, _ body: AsyncStream<ByteBuffer>, contentLength: Int? = nil, query: String = "") async -> (HTTPResponse.Status?, APIError?) {
        var head = HTTPRequest(method: .post, scheme: "http", authority: "localhost", path: "/v1/snapshots/import" + query)
        if let n = contentLength { head.headerFields[.contentLength] = String(n) }
        let request = Request(head: head, body: RequestBody(asyncSequence: body))
        do { return (try await Handlers(service: f.service).importSnapshot(request).status, nil) } catch { return (nil, APIError.from(error)) }
    }

    /// A body that sends `chunks` and then ends, or stalls (never ends) unless finished through the continuation.
    func stream(_ chunks: [Int], end: Bool) -> (AsyncStream<ByteBuffer>, AsyncStream<ByteBuffer>.Continuation) {
        let (s, c) = AsyncStream<ByteBuffer>.makeStream()
        for n in chunks { c.yield(ByteBuffer(repeating: 0x41, count: n)) }
        if end { c.finish() }
        return (s, c)
    }

    func testUploadsOverTheSizeLimitAre413ByHeaderAndByByteCount() async throws {
        // A long idle timeout: a refusal that waited for the (stalled) body would end in 408, not 413.
        let (f, tmp) = try fixture { $0.maxSnapshotBytes = 1000; $0.uploadIdleTimeout = 30 }
        let before = try storeDigest(f.kb.rocks)
        // Content-Length over the limit: refused before reading (the body stalls and never ends).
        let (stalled, c1) = stream([], end: false)
        let (r1, e1) = await UploadLimitTests.upload(f, stalled, contentLength: 1001)
        XCTAssertNil(r1)
        XCTAssertEqual(e1?.status, .contentTooLarge)
        XCTAssertEqual(e1?.code, "payload_too_large")
        c1.finish()
        // No Content-Length: refused once the streamed count passes the limit, without waiting for the end.
        let (over, c2) = stream([600, 600], end: false)
        let t0 = ContinuousClock.now
        let (r2, e2) = await UploadLimitTests.upload(f, over)
        XCTAssertNil(r2)
        XCTAssertEqual(e2?.status, .contentTooLarge, e2?.description ?? "")
        XCTAssertTrue(e2?.message.contains("serve.max_snapshot_bytes") ?? false, e2?.message ?? "")
        XCTAssertLessThan((ContinuousClock.now - t0).seconds, 10)
        c2.finish()
        // A Content-Length that lies (under the limit) is refused by the count too.
        let (lying, _) = stream([1001], end: true)
        let (_, e3) = await UploadLimitTests.upload(f, lying, contentLength: 10)
        XCTAssertEqual(e3?.status, .contentTooLarge)
        // At the limit is taken (and refused as a snapshot: 400, not 413).
        let (exact, _) = stream([500, 500], end: true)
        let (_, e4) = await UploadLimitTests.upload(f, exact)
        XCTAssertEqual(e4?.status, .badRequest, e4?.description ?? "")
        XCTAssertEqual(e4?.code, "invalid_snapshot")
        XCTAssertEqual(try files(tmp), [], "refused uploads leave no file")
        XCTAssertEqual(try storeDigest(f.kb.rocks), before, "the store is unchanged")
    }

    func testUploadsPastTheConcurrencyLimitAre503BeforeAnythingIsWritten() async throws {
        let (f, tmp) = try fixture { $0.maxConcurrentUploads = 1; $0.uploadIdleTimeout = 30 }
        let snapshot = try await f.app.test(.router) { client in
            let r = try await client.execute(uri: "/v1/snapshots", method: .post)
            XCTAssertEqual(r.status, .ok)
            return r.body
        }
        let before = try storeDigest(f.kb.rocks)
        // One upload in progress: its first bytes are on disk, the rest has not come.
        let opened = stream([100], end: false)
        let first: AsyncStream<ByteBuffer> = opened.0, c1 = opened.1
        let fixture: Fixture = f
        let pending = Task { [fixture, first] in await UploadLimitTests.upload(fixture, first) }
        for _ in 0..<200 where try files(tmp).isEmpty || (try? FileManager.default.attributesOfItem(atPath: tmp + "/" + files(tmp)[0])[.size] as? Int) != 100 {
            try await Task.sleep(for: .milliseconds(25))
        }
        XCTAssertEqual(try files(tmp).count, 1)
        let (second, _) = stream([100], end: true)
        let (r2, e2) = await UploadLimitTests.upload(f, second)
        XCTAssertNil(r2)
        XCTAssertEqual(e2?.status, .serviceUnavailable)
        XCTAssertEqual(e2?.code, "busy")
        XCTAssertTrue(e2?.message.contains("serve.max_concurrent_uploads") ?? false, e2?.message ?? "")
        XCTAssertEqual(e2?.headers[.retryAfter], "1")
        XCTAssertEqual(try files(tmp).count, 1, "the refused upload wrote nothing")
        // The first ends (not a snapshot: 400); its file is removed and its slot freed.
        c1.finish()
        let (r1, e1) = await pending.value
        XCTAssertNil(r1)
        XCTAssertEqual(e1?.code, "invalid_snapshot")
        XCTAssertEqual(try files(tmp), [])
        XCTAssertEqual(try storeDigest(f.kb.rocks), before)
        // Slots come back after a synchronous import and after an import job.
        for query in ["", "?on_conflict=skip&async=true", ""] {
            let (good, gc) = stream([], end: false)
            gc.yield(snapshot); gc.finish()
            let (r, e) = await UploadLimitTests.upload(f, good, query: query)
            XCTAssertNil(e, e?.description ?? "")
            XCTAssertEqual(r, query.isEmpty ? .ok : .accepted)
            for _ in 0..<400 where f.service.jobs.active > 0 || f.service.uploadSlots.usage.busy > 0 {
                try await Task.sleep(for: .milliseconds(25))
            }
            XCTAssertEqual(f.service.uploadSlots.usage.busy, 0, "the slot is back after the import\(query.isEmpty ? "" : " job")")
        }
        XCTAssertEqual(try files(tmp), [])
    }

    func testStalledAndSlowUploadsAre408AndLeaveNoFile() async throws {
        // Idle: 100 bytes, then nothing.
        let (f, tmp) = try fixture { $0.uploadIdleTimeout = 0.5; $0.uploadTimeout = 60 }
        let before = try storeDigest(f.kb.rocks)
        let (stalled, c1) = stream([100], end: false)
        let t0 = ContinuousClock.now
        let (r1, e1) = await UploadLimitTests.upload(f, stalled)
        let idleTook = (ContinuousClock.now - t0).seconds
        XCTAssertNil(r1)
        XCTAssertEqual(e1?.status, .requestTimeout, e1?.description ?? "")
        XCTAssertEqual(e1?.code, "upload_timeout")
        XCTAssertTrue(e1?.message.contains("serve.upload_idle_timeout_s") ?? false, e1?.message ?? "")
        XCTAssertGreaterThanOrEqual(idleTook, 0.5)
        XCTAssertLessThan(idleTook, 10)
        c1.finish()
        XCTAssertEqual(try files(tmp), [])
        // Total: a byte every 50 ms (never idle) for longer than upload_timeout_s.
        let (g, gtmp) = try fixture { $0.uploadIdleTimeout = 5; $0.uploadTimeout = 1 }
        let (slow, c2) = stream([], end: false)
        let feeder = Task {
            while !Task.isCancelled {
                c2.yield(ByteBuffer(repeating: 0x41, count: 1))
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
        let t1 = ContinuousClock.now
        let (r2, e2) = await UploadLimitTests.upload(g, slow)
        let totalTook = (ContinuousClock.now - t1).seconds
        feeder.cancel()
        c2.finish()
        XCTAssertNil(r2)
        XCTAssertEqual(e2?.status, .requestTimeout, e2?.description ?? "")
        XCTAssertTrue(e2?.message.contains("serve.upload_timeout_s") ?? false, e2?.message ?? "")
        XCTAssertGreaterThanOrEqual(totalTook, 1)
        XCTAssertLessThan(totalTook, 10)
        XCTAssertEqual(try files(gtmp), [])
        XCTAssertEqual(try storeDigest(f.kb.rocks), before)
        // The timed-out uploads gave their slots back: the default two are free.
        XCTAssertEqual(g.service.uploadSlots.usage.busy, 0)
        XCTAssertEqual(f.service.uploadSlots.usage.busy, 0)
    }

    func testUploadSettingsAreReadAndChecked() throws {
        var c = ServiceConfig()
        try c.apply(json: ["max_concurrent_uploads": 3, "upload_timeout_s": 120, "upload_idle_timeout_s": 15], root: URL(fileURLWithPath: "/"))
        XCTAssertEqual(c.maxConcurrentUploads, 3)
        XCTAssertEqual(c.uploadTimeout, 120)
        XCTAssertEqual(c.uploadIdleTimeout, 15)
        for bad: (inout ServiceConfig) -> Void in [{ $0.maxConcurrentUploads = 0 }, { $0.uploadTimeout = 0 }, { $0.uploadIdleTimeout = -1 }] {
            var b = ServiceConfig()
            bad(&b)
            XCTAssertThrowsError(try b.validate())
        }
    }

    /// Over a real socket: the server's own request body (NIO's) stops at the limit or the timeout
    /// while the client is still sending, and the answer goes out.
    func testLiveServerRefusesStalledAndOversizeUploadsMidBody() async throws {
        let (f, tmp) = try fixture { $0.maxSnapshotBytes = 4096; $0.uploadIdleTimeout = 0.5 }
        try await f.app.test(.live) { client in
            let port = try XCTUnwrap(client.port)
            // Content-Length promises 4000 bytes (under the limit); 10 come, then nothing.
            let stalled = try RawHTTP(port: port)
            try stalled.send("POST /v1/snapshots/import HTTP/1.1\r\nHost: x\r\nContent-Length: 4000\r\n\r\n0123456789")
            let t0 = ContinuousClock.now
            let answer = try stalled.readHead()
            XCTAssertTrue(answer.hasPrefix("HTTP/1.1 408"), answer)
            XCTAssertTrue(answer.contains("upload_timeout"), answer)
            XCTAssertLessThan((ContinuousClock.now - t0).seconds, 10)
            stalled.close()
            // Chunked, no Content-Length: refused once more than 4096 bytes came, the rest unsent.
            let chunked = try RawHTTP(port: port)
            try chunked.send("POST /v1/snapshots/import HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in 0..<3 { try chunked.send("800\r\n" + String(repeating: "A", count: 2048) + "\r\n") }
            let over = try chunked.readHead()
            XCTAssertTrue(over.hasPrefix("HTTP/1.1 413"), over)
            XCTAssertTrue(over.contains("payload_too_large"), over)
            chunked.close()
            let left = { try FileManager.default.contentsOfDirectory(atPath: tmp) }
            for _ in 0..<100 where (try? left())?.isEmpty == false { try await Task.sleep(for: .milliseconds(20)) }
            XCTAssertEqual(try left(), [], "the partial files are removed")
            XCTAssertEqual(f.service.uploadSlots.usage.busy, 0)
        }
    }
}

/// A blocking loopback TCP connection for requests the test clients cannot make (partial bodies).
final class RawHTTP {
    let fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        var timeout = timeval(tv_sec: 15, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else { Glibc.close(fd); throw POSIXError(.ECONNREFUSED) }
    }

    func send(_ text: String) throws {
        let bytes = Array(text.utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw POSIXError(.EPIPE) }
            sent += n
        }
    }

    /// Reads until the connection closes, the read times out, or a whole JSON body arrived.
    func readHead() throws -> String {
        var data = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            data += buffer[0..<n]
            let text = String(decoding: data, as: UTF8.self)
            if text.contains("\r\n\r\n"), text.hasSuffix("}") { break }
        }
        return String(decoding: data, as: UTF8.self)
    }

    func close() { Glibc.close(fd) }
}
