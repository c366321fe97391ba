import AnchorKVCore
import Foundation
import HummingbirdTesting
import KnowledgeBase
import XCTest
@testable import HTTPService

/// Parallel queries and ingest, limits, timeouts, jobs and shutdown.
final class ConcurrencyTests: XCTestCase {
    /// Queries running at the same time as each other and as an ingest give exactly the answers
    /// they give one at a time: the shared model and store hold no per-request state.
    func testParallelQueriesDuringIngestMatchSerialAnswers() async throws {
        let f = try Fixture { $0.maxConcurrentQueries = 4 }
        // Each names its document: the ingest that lands meanwhile changes BM25's statistics (and
        // could change which windows a free search picks), not what a named document holds.
        let asked = [("Who decoded the waggle dance?", "bees"), ("Where does the Danube rise?", "river"), ("Who built a printing press in Mainz?", "press"),
                     ("How long is the Danube?", "river"), ("What do honey bees live in?", "bees"), ("What did Gutenberg print?", "press")]
        let questions = asked.map(\.0)
        let documentOf = Dictionary(uniqueKeysWithValues: asked)
        let serial = try await f.app.test(.router) { client in
            _ = try await client.post("/v1/documents", ["documents": [Docs.bees, Docs.river, Docs.press]])
            var serial: [String: String] = [:]
            for q in questions {
                serial[q] = try object(try await client.post("/v1/query", ["question": q, "documents": [documentOf[q]!], "max_tokens": 10]))["answer"] as? String
            }
            let lighthouse = try Fixture.text("eddystone-lighthouse.md")
            let parallel = try await withThrowingTaskGroup(of: (String, String?).self) { group in
                group.addTask {
                    let r = try await client.post("/v1/documents", ["id": "lighthouse", "text": lighthouse])
                    XCTAssertEqual(r.status, .ok, String(buffer: r.body))
                    return ("ingest", nil)
                }
                for round in 0..<2 {
                    for q in questions {
                        group.addTask {
                            let r = try await client.post("/v1/query", ["question": q, "documents": [documentOf[q]!], "max_tokens": 10])
                            XCTAssertEqual(r.status, .ok, "round \(round): \(String(buffer: r.body))")
                            return (q, try object(r)["answer"] as? String)
                        }
                    }
                }
                var out: [(String, String?)] = []
                for try await x in group { out.append(x) }
                return out
            }
            XCTAssertEqual(parallel.count, 2 * questions.count + 1)
            for (q, answer) in parallel where q != "ingest" {
                XCTAssertEqual(answer, serial[q], "parallel answer to '\(q)'")
            }
            XCTAssertNotNil(try f.kb.store.document("lighthouse"))
            XCTAssertGreaterThan(try XCTUnwrap(f.service.batcher).stepStats.largestBatch, 1, "queries shared decode steps")
            return serial
        }
        // With batching off each query decodes alone: the same answers.
        let alone = try Fixture { $0.batching = false }
        XCTAssertNil(alone.service.batcher)
        try await alone.app.test(.router) { client in
            _ = try await client.post("/v1/documents", ["documents": [Docs.bees, Docs.river, Docs.press]])
            for q in questions {
                let a = try object(try await client.post("/v1/query", ["question": q, "documents": [documentOf[q]!], "max_tokens": 10]))["answer"] as? String
                XCTAssertEqual(a, serial[q], "batching off: '\(q)'")
            }
        }
    }

    func testSemaphoreQueuesTimesOutAndRefuses() async throws {
        let sem = AsyncSemaphore(permits: 1, maxWaiters: 1)
        let far = ContinuousClock.now + .seconds(60)
        try await sem.acquire(deadline: far)
        XCTAssertEqual(sem.usage.busy, 1)
        // The queue holds one waiter: it times out at its deadline.
        do {
            try await sem.acquire(deadline: .now + .milliseconds(50))
            XCTFail("acquired a taken permit")
        } catch AsyncSemaphore.Failure.timedOut {}
        // A waiter gets the permit when it is released; a second waiter finds the queue full.
        let waiter = Task { try await sem.acquire(deadline: far) }
        while sem.usage.queued == 0 { try await Task.sleep(for: .milliseconds(5)) }
        do {
            try await sem.acquire(deadline: far)
            XCTFail("the queue was full")
        } catch AsyncSemaphore.Failure.queueFull {}
        sem.release()
        try await waiter.value
        XCTAssertEqual(sem.usage.busy, 1)
        // A cancelled waiter leaves the queue.
        let cancelled = Task { try await sem.acquire(deadline: far) }
        while sem.usage.queued == 0 { try await Task.sleep(for: .milliseconds(5)) }
        cancelled.cancel()
        do { try await cancelled.value; XCTFail("not cancelled") } catch is CancellationError {}
        XCTAssertEqual(sem.usage.queued, 0)
        sem.release()
        XCTAssertEqual(sem.usage.busy, 0)
    }

    func testQueriesPastTheTimeoutGet504AndAFullQueueGets503() async throws {
        let f = try Fixture { $0.requestTimeout = 0.05 }
        try await f.app.test(.router) { client in
            _ = try await client.post("/v1/documents", Docs.bees)
            try expectError(try await client.post("/v1/query", ["question": "What tells bees where flowers are?", "max_tokens": 64]),
                            .gatewayTimeout, "timeout")
        }
        let g = try Fixture { $0.maxConcurrentQueries = 1; $0.maxQueuedRequests = 0 }
        try await g.app.test(.router) { client in
            _ = try await client.post("/v1/documents", Docs.bees)
            try await g.service.querySlots.acquire(deadline: .now + .seconds(5))  // every slot taken
            let r = try await client.post("/v1/query", ["question": "What tells bees where flowers are?"])
            try expectError(r, .serviceUnavailable, "busy")
            XCTAssertEqual(r.headers[.retryAfter], "1")
            g.service.querySlots.release()
            let r1 = try await client.post("/v1/query", ["question": "Who decoded the waggle dance?", "max_tokens": 2])
            XCTAssertEqual(r1.status, .ok)
        }
    }

    func testJobRegistryRunsReportsCancelsAndShutsDown() async throws {
        let jobs = JobRegistry(keep: 2)
        let first = try jobs.start(kind: "count", parameters: ["to": 3]) { h in
            for i in 1...3 { h.report(done: i, total: 3, message: "step \(i)") }
            return ["counted": 3]
        }
        XCTAssertEqual(first.state, .queued)
        var s = first
        while !(jobs.status(first.id)?.state.finished ?? true) { try await Task.sleep(for: .milliseconds(5)) }
        s = try XCTUnwrap(jobs.status(first.id))
        XCTAssertEqual(s.state, .succeeded)
        XCTAssertEqual(s.result, ["counted": 3])
        XCTAssertEqual(s.done, 3)
        XCTAssertEqual(s.fraction, 1)
        XCTAssertNotNil(s.finishedAt)

        // One job of an exclusive kind at a time; a stopped job ends cancelled at a safe point.
        let started = AsyncStream<Void>.makeStream()
        let long = try jobs.start(kind: "compact") { h in
            started.continuation.yield()
            var units = 0
            while !h.shouldStop { units += 1; h.report(done: units, total: nil, message: "working"); try await Task.sleep(for: .milliseconds(2)) }
            return ["units": .int(units)]
        }
        var it = started.stream.makeAsyncIterator()
        _ = await it.next()
        XCTAssertThrowsError(try jobs.start(kind: "compact") { _ in .null }) { XCTAssertTrue(($0 as? JobRegistry.Refused)?.conflict == true) }
        XCTAssertNoThrow(try jobs.start(kind: "other") { _ in .null })
        XCTAssertTrue(jobs.cancel(long.id))
        while !(jobs.status(long.id)?.state.finished ?? true) { try await Task.sleep(for: .milliseconds(5)) }
        XCTAssertEqual(jobs.status(long.id)?.state, .cancelled)

        let failing = try jobs.start(kind: "fail") { _ in throw APIError.badRequest("no such thing") }
        while !(jobs.status(failing.id)?.state.finished ?? true) { try await Task.sleep(for: .milliseconds(5)) }
        XCTAssertEqual(jobs.status(failing.id)?.state, .failed)
        XCTAssertEqual(jobs.status(failing.id)?.error?["code"], "invalid_input")
        XCTAssertNil(jobs.status(first.id), "only the last 2 finished jobs are kept")

        let running = try jobs.start(kind: "compact") { h in
            while !h.shouldStop { try await Task.sleep(for: .milliseconds(2)) }
            return "stopped"
        }
        await jobs.shutdown()
        XCTAssertEqual(jobs.status(running.id)?.state, .cancelled, "shutdown stops running jobs and waits for them")
        XCTAssertThrowsError(try jobs.start(kind: "late") { _ in .null })
    }

    func testAsyncIngestIsAJobWithProgress() async throws {
        let f = try Fixture()
        try await f.app.test(.router) { client in
            let r = try await client.post("/v1/documents", ["documents": [Docs.bees, Docs.river], "async": true])
            XCTAssertEqual(r.status, .accepted, String(buffer: r.body))
            let job = try XCTUnwrap(try object(r)["job"] as? [String: Any])
            let id = try XCTUnwrap(job["id"] as? String)
            XCTAssertEqual(r.headers[.location], "/v1/jobs/\(id)")
            var status: [String: Any] = [:]
            for _ in 0..<600 {
                status = try object(try await client.get("/v1/jobs/\(id)"))
                if ["succeeded", "failed", "cancelled"].contains(status["state"] as? String ?? "") { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            XCTAssertEqual(status["state"] as? String, "succeeded", "\(status)")
            XCTAssertEqual((status["progress"] as? [String: Any])?["fraction"] as? Double, 1)
            let summary = try XCTUnwrap((status["result"] as? [String: Any])?["summary"] as? [String: Any])
            XCTAssertEqual(summary["added"] as? Int, 2)
            let list = try object(try await client.get("/v1/jobs"))
            XCTAssertEqual((list["jobs"] as? [[String: Any]])?.first?["kind"] as? String, "ingest")
            XCTAssertEqual(try f.kb.store.documents().count, 2)
        }
    }

    /// Shutdown during a multi-document ingest: the document being encoded is finished and kept,
    /// the rest are reported as not attempted, and new work is refused.
    func testShutdownStopsIngestBetweenDocumentsAndRefusesNewWork() async throws {
        let f = try Fixture()
        let docs = [Docs.bees, Docs.river, Docs.press].map { SourceDocument(id: $0["id"]!, title: $0["title"]!, text: $0["text"]!, origin: "test") }
        let (started, signal) = AsyncStream<Int>.makeStream()
        let ingest = Task {
            try await f.service.ingest(docs, deadline: .now + .seconds(300), progress: { i, _ in signal.yield(i) })
        }
        var it = started.makeAsyncIterator()
        _ = await it.next()  // the first document is being encoded
        await f.service.beginShutdown()
        let items = try await ingest.value.items
        XCTAssertEqual(items.map(\.status.rawValue), ["added", "not_attempted", "not_attempted"])
        XCTAssertEqual(try f.kb.store.documents().map(\.id), ["bees"], "what was acknowledged is stored, nothing else")
        try await f.app.test(.router) { client in
            let r2 = try await client.get("/health")
            XCTAssertEqual(r2.status, .serviceUnavailable)
            try expectError(try await client.post("/v1/documents", Docs.river), .serviceUnavailable, "shutting_down")
            try expectError(try await client.post("/v1/query", ["question": "bees"]), .serviceUnavailable, "shutting_down")
            let r3 = try await client.get("/v1/documents")
            XCTAssertEqual(r3.status, .ok, "reads still work while draining")
        }
    }
}
