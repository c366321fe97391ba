import Foundation
import RedisTestSupport
import XCTest
import KVStore
@testable import ClusterStore
@testable import RedisCluster

/// The Redis Cluster store against the RocksDB store with the same documents, and under a
/// master killed in the middle of an ingest. Each test starts its own 3+3 cluster on loopback.
final class RedisStoreTests: XCTestCase {
    struct Rng {
        var s: UInt64
        mutating func next() -> UInt64 { s &+= 0x9E37_79B9_7F4A_7C15; var z = s; z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9; return z ^ (z >> 31) }
        mutating func float() -> Float { Float(next() % 2001) / 1000 - 1 }
    }
    static let words = ["river", "lighthouse", "harbour", "storm", "keeper", "granite", "tide", "lamp", "engineer", "tower"]

    /// A document with `windows` windows of `layers` layers of 12 anchors x 64 columns.
    func document(_ id: String, windows: Int, layers: Int = 4, seed: UInt64) -> EncodedDocument {
        var rng = Rng(s: seed)
        var wins: [WindowRecord] = [], kv: [[[UInt8]]] = []
        for w in 0..<windows {
            let text = (0..<12).map { _ in Self.words[Int(rng.next() % 10)] }.joined(separator: " ") + " \(id)"
            var terms: [String: Int] = [:]
            for t in text.split(separator: " ") { terms[String(t), default: 0] += 1 }
            wins.append(WindowRecord(tokens: (0..<40).map { _ in Int32(rng.next() % 49152) }, text: text, start: w * 40, terms: terms))
            kv.append((0..<layers).map { _ in
                TensorCodec.encode(TensorRecord(positions: (0..<12).map { Int32(w * 40 + 2 + 3 * $0) },
                                                keys: (0..<(12 * 64)).map { _ in rng.float() }, values: (0..<(12 * 64)).map { _ in rng.float() }, cols: 64),
                                   dtype: .f16)
            })
        }
        let record = DocumentRecord(id: id, title: "Title of \(id)", source: "test", contentHash: "hash-\(id)-\(seed)", ratio: 5, adapter: "adapter-r5",
                                    windows: windows, tokens: windows * 40, anchors: windows * 12, ingestedAt: KVStore.timestamp())
        return EncodedDocument(record: record, windows: wins, kv: kv)
    }

    func open(_ cluster: LocalRedisCluster, options: RedisStore.Options = RedisStore.Options(),
              client: RedisClusterClient? = nil) async throws -> RedisStore {
        try await RedisStore.open(client: client ?? RedisClusterClient(seeds: cluster.seeds), knowledgeBase: "test-kb", modelFingerprint: "model-fp",
                                  modelName: "synthetic", create: true, shape: ModelShape(layers: 4, kvDim: 64), options: options)
    }

    func temporaryFolder() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("akv-redis-store-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir.path
    }

    /// Same documents into RocksDB and the cluster: the same records, windows, KV bytes,
    /// postings and counters come back; a replaced version and a deleted document leave no trace.
    func testRoundTripMatchesRocksDB() async throws {
        let cluster = try await LocalRedisCluster()
        var options = RedisStore.Options()
        options.maxValueBytes = 5_000  // a few layers to a value: windows split into layer groups
        let redis = try await open(cluster, options: options)
        let rocks = try KVStore(path: try temporaryFolder(), modelFingerprint: "model-fp", modelName: "synthetic", create: true,
                                shape: ModelShape(layers: 4, kvDim: 64))
        let docs = (0..<12).map { document("doc {\($0)} ü", windows: 1 + $0 % 3, seed: UInt64($0)) }
        let results = try await redis.put(docs, adapters: ["5": "adapter-r5"])
        XCTAssertTrue(results.allSatisfy(\.acknowledged), "every write reached a replica: \(results.map(\.replicas))")
        _ = try rocks.putEncoded(docs, adapters: ["5": "adapter-r5"])

        try await assertSame(redis, rocks)

        // A new version of one document, and a deletion.
        let replaced = document("doc {3} ü", windows: 2, seed: 99)
        _ = try await redis.put([replaced], adapters: ["5": "adapter-r5"])
        _ = try rocks.putEncoded([replaced], adapters: ["5": "adapter-r5"])
        let deletedHere = try await redis.delete("doc {7} ü")
        XCTAssertTrue(deletedHere)
        XCTAssertTrue(try rocks.delete("doc {7} ü"))
        let again = try await redis.delete("doc {7} ü")
        XCTAssertFalse(again)
        try await assertSame(redis, rocks)

        // Another adapter for a ratio the knowledge base holds is refused, and so is another model.
        do {
            _ = try await redis.put([document("other", windows: 1, seed: 5)], adapters: ["5": "another-adapter"])
            XCTFail("a second adapter for ratio 5 was accepted")
        } catch StoreError.adapterConflict {}
        do {
            _ = try await RedisStore.open(client: redis.client, knowledgeBase: "test-kb", modelFingerprint: "other-model", modelName: nil, create: true)
            XCTFail("opened with another model")
        } catch StoreError.modelMismatch {}
        do {
            _ = try await RedisStore.open(client: redis.client, knowledgeBase: "absent-kb", modelFingerprint: nil, modelName: nil, create: false)
            XCTFail("opened a knowledge base that is not there")
        } catch StoreError.notAStore {}
        await redis.client.close()
    }

    func assertSame(_ redis: RedisStore, _ rocks: KVStore, file: StaticString = #filePath, line: UInt = #line) async throws {
        let a = try await redis.documents(), b = try rocks.documents()
        XCTAssertEqual(a.map(\.id), b.map(\.id), file: file, line: line)
        for (x, y) in zip(a, b) {
            var x2 = x, y2 = y
            (x2.number, y2.number) = (0, 0)
            XCTAssertEqual(x2, y2, file: file, line: line)
            for w in 0..<x.windows {
                let wx = try await redis.window(x, w)
                XCTAssertEqual(wx, try rocks.window(y, w), file: file, line: line)
                let kx = try await redis.rawKV(x, window: w)
                XCTAssertEqual(kx, try (0..<4).map { try rocks.rawKV(y, window: w, layer: $0) }, file: file, line: line)
            }
        }
        let numbers = Dictionary(uniqueKeysWithValues: b.map { ($0.number, $0.id) })
        for term in Self.words + ["doc", "ü", "{3}"] {
            let px = try await redis.postings(term).map { "\($0.0.id) \($0.1.window) \($0.1.termFrequency) \($0.1.windowLength)" }.sorted()
            let py = try rocks.postings(term).map { "\(numbers[$0.document]!) \($0.window) \($0.termFrequency) \($0.windowLength)" }.sorted()
            XCTAssertEqual(px, py, "postings of \(term)", file: file, line: line)
        }
        let sx = try await redis.lexStats(), sy = try rocks.lexStats()
        XCTAssertEqual([sx.documents, sx.windows, sx.tokens, sx.anchors, sx.kvBytes, sx.totalLength],
                       [sy.documents, sy.windows, sy.tokens, sy.anchors, sy.kvBytes, sy.totalLength], file: file, line: line)
    }

    /// kill -9 of a master in the middle of an ingest: every acknowledged document is whole
    /// after the failover, and no document is visible half (each visible one reads back whole).
    func testMasterKilledDuringIngestLosesNoAcknowledgedDocument() async throws {
        let cluster = try await LocalRedisCluster(nodeTimeoutMs: 1000)
        var clientOptions = RedisClusterClient.Options()
        clientOptions.retryFor = .seconds(15)
        let client = RedisClusterClient(seeds: cluster.seeds, options: clientOptions)
        var options = RedisStore.Options()
        options.waitTimeout = .milliseconds(200)
        let store = try await open(cluster, options: options, client: client)
        let topology = try await client.currentTopology()
        let victim = cluster.index(of: topology.masters[1])!
        var acknowledged: [EncodedDocument] = [], degraded = 0, failed = 0
        for i in 0..<60 {
            if i == 15 { cluster.nodes[victim].stop(signal: SIGKILL) }
            let d = document("doc-\(i)", windows: 2, seed: UInt64(i))
            do {
                let r = try await store.put([d], adapters: ["5": "adapter-r5"])[0]
                if r.acknowledged { acknowledged.append(d) } else { degraded += 1 }
            } catch {
                failed += 1
            }
            if degraded + failed >= 5 { break }  // the shard without a replica: every write from here on is degraded
        }
        print("ingest through a failover: \(acknowledged.count) acknowledged, \(degraded) degraded, \(failed) failed")
        XCTAssertGreaterThanOrEqual(acknowledged.count, 15)
        XCTAssertGreaterThan(degraded + failed, 0, "after the failover one shard has no replica: its writes are not acknowledged")
        try await cluster.waitHealthy()
        let visible = try await store.documents()
        let visibleIDs = Set(visible.map(\.id))
        for d in acknowledged {
            XCTAssertTrue(visibleIDs.contains(d.record.id), "acknowledged \(d.record.id) lost")
        }
        for doc in visible {
            for w in 0..<doc.windows {
                let kv = try await store.rawKV(doc, window: w)
                XCTAssertEqual(kv.count, 4, "\(doc.id) window \(w)")
                _ = try await store.window(doc, w)
            }
            let found = try await store.postings(doc.id).map(\.0.id)
            XCTAssertTrue(found.contains(doc.id) || !acknowledged.contains { $0.record.id == doc.id }, "\(doc.id) not in the index")
        }
        await client.close()
    }

    /// What interrupted writes leave (a new document staged and never committed, a new version
    /// of a visible document staged and never committed, counters off) is found by a sweep:
    /// a dry run and a sweep within the grace change nothing; past the grace the leftovers go,
    /// the visible documents stay whole, and a second sweep finds nothing.
    func testSweepRemovesWhatInterruptedWritesLeft() async throws {
        let cluster = try await LocalRedisCluster()
        let client = RedisClusterClient(seeds: cluster.seeds)
        let store = try await open(cluster, client: client)
        let docs = (0..<3).map { document("kept-\($0)", windows: 2, seed: UInt64($0)) }
        _ = try await store.put(docs, adapters: ["5": "adapter-r5"])
        let visible = try await store.documents()
        let countersWhole = try await store.lexStats()
        let stagedNew = try await store.stage(document("never-committed", windows: 2, seed: 50))
        let stagedVersion = try await store.stage(document("kept-1", windows: 3, seed: 51))
        _ = try await client.pipeline([["HINCRBY", "{akv:test-kb}:stats", "documents", "2"], ["HINCRBY", "{akv:test-kb}:stats", "tokens", "-7"]],
                                      slot: store.keys.kbSlot)
        let leftoverKeys = stagedNew.versionKeys.count + stagedVersion.versionKeys.count
        let leftoverPostings = stagedNew.postings.values.map(\.count).reduce(0, +) + stagedVersion.postings.values.map(\.count).reduce(0, +)

        /// Document keys and posting fields of the knowledge base, counted on the masters.
        func census() async throws -> (keys: Int, postings: Int) {
            var keys = 0, postings = 0
            for node in try await client.currentTopology().masters {
                var cursor = "0"
                repeat {
                    guard case .array(let parts?) = try await client.run(["SCAN", cursor, "MATCH", "{akv:test-kb:*", "COUNT", "1000"], on: node),
                          case .bulkString(let c?) = parts[0], case .array(let found?) = parts[1] else { throw RedisError.protocolError("SCAN") }
                    cursor = String(decoding: c, as: UTF8.self)
                    for case .bulkString(let k?) in found {
                        // Index keys by their fields (a hash whose last field goes is gone), the others one by one.
                        if String(decoding: k, as: UTF8.self).contains(":ix") {
                            if case .integer(let n) = try await client.run([Array("HLEN".utf8), k], slot: HashSlot.slot(of: k)) { postings += Int(n) }
                        } else {
                            keys += 1
                        }
                    }
                } while cursor != "0"
            }
            return (keys, postings)
        }
        let before = try await census()

        let dry = try await store.sweep(olderThan: .zero, dryRun: true)
        XCTAssertEqual(dry.versionsRemoved, 2)
        XCTAssertEqual(dry.keysRemoved, leftoverKeys)
        XCTAssertEqual(dry.postingsRemoved, leftoverPostings)
        XCTAssertEqual(dry.catalogueEntriesRemoved, 1, "never-committed")
        XCTAssertTrue(dry.countersFixed)
        XCTAssertEqual(dry.countersAfter.documents, 3)
        let young = try await store.sweep(olderThan: .seconds(3600), dryRun: false)
        XCTAssertEqual(young.versionsKept, 2, "written within the grace: a commit may still come")
        XCTAssertEqual(young.versionsRemoved + young.postingsRemoved + young.catalogueEntriesRemoved, 0)
        let afterYoung = try await census()
        XCTAssertEqual(afterYoung.keys, before.keys)
        XCTAssertEqual(afterYoung.postings, before.postings)
        var fixed = try await store.lexStats()
        XCTAssertEqual(fixed, countersWhole, "the counters were recounted")

        _ = try await client.pipeline([["HINCRBY", "{akv:test-kb}:stats", "windows", "3"]], slot: store.keys.kbSlot)
        try await Task.sleep(for: .milliseconds(1100))  // OBJECT IDLETIME counts whole seconds
        let swept = try await store.sweep(olderThan: .seconds(1), dryRun: false)
        XCTAssertEqual(swept.versionsRemoved, 2)
        XCTAssertEqual(swept.keysRemoved, leftoverKeys)
        XCTAssertEqual(swept.postingsRemoved, leftoverPostings)
        XCTAssertEqual(swept.catalogueEntriesRemoved, 1)
        XCTAssertTrue(swept.countersFixed)
        let after = try await census()
        XCTAssertEqual(after.keys, before.keys - leftoverKeys)
        XCTAssertEqual(after.postings, before.postings - leftoverPostings)
        fixed = try await store.lexStats()
        XCTAssertEqual(fixed, countersWhole)
        let catalogue = try await store.catalogueEntries(readOnly: false).map(\.id).sorted()
        XCTAssertEqual(catalogue, visible.map(\.id))
        let listed = try await store.documents()
        XCTAssertEqual(listed, visible)
        for d in visible {
            for w in 0..<d.windows { _ = try await store.rawKV(d, window: w) }
        }
        let hits = try await store.postings("kept-1")
        XCTAssertEqual(hits.map(\.0.number), [visible[1].number, visible[1].number], "the visible version's two windows")

        // The staged version can no longer be committed: its keys are gone.
        do {
            _ = try await store.commit(stagedVersion)
            XCTFail("a swept version was committed")
        } catch StoreError.corrupt {}
        let again = try await store.sweep(olderThan: .zero, dryRun: false)
        XCTAssertEqual(again.versionsRemoved + again.postingsRemoved + again.catalogueEntriesRemoved + again.versionsKept, 0)
        XCTAssertFalse(again.countersFixed)
        await client.close()
    }

    /// Reads go on while a master is killed: those of its slots go to its replica at once (they
    /// do not wait for the failover), none fails, and the longest read is well under the node
    /// timeout. With replica reads off, they wait through the failover and then succeed.
    func testReadsRecoverWithinTheNodeTimeoutOfAFailover() async throws {
        let (longest, fallbacks) = try await readThroughAFailover(replicaFallback: true)
        XCTAssertLessThan(longest, .milliseconds(nodeTimeoutForReads), "reads recovered within the node timeout")
        XCTAssertGreaterThan(fallbacks, 0, "reads of the killed master's slots went to its replica")
    }

    func testReadsWaitThroughAFailoverWithoutReplicaReads() async throws {
        let (longest, fallbacks) = try await readThroughAFailover(replicaFallback: false)
        XCTAssertLessThan(longest, .milliseconds(nodeTimeoutForReads * 6), "reads recovered within a few node timeouts")
        XCTAssertEqual(fallbacks, 0)
    }

    private let nodeTimeoutForReads = 1000

    private func readThroughAFailover(replicaFallback: Bool) async throws -> (longest: Duration, fallbacks: Int) {
        let nodeTimeout = nodeTimeoutForReads
        let cluster = try await LocalRedisCluster(nodeTimeoutMs: nodeTimeout)
        var clientOptions = RedisClusterClient.Options()
        clientOptions.retryFor = .seconds(15)
        clientOptions.readFromReplicasWhenMasterIsDown = replicaFallback
        let client = RedisClusterClient(seeds: cluster.seeds, options: clientOptions)
        let store = try await open(cluster, client: client)
        let docs = (0..<12).map { document("read-\($0)", windows: 1, seed: UInt64($0)) }
        _ = try await store.put(docs, adapters: ["5": "adapter-r5"])
        let records = try await store.documents()
        XCTAssertEqual(records.count, 12)
        let victim = cluster.index(of: try await client.currentTopology().masters[0])!
        var longest = Duration.zero
        let start = ContinuousClock.now
        var killed = false
        while ContinuousClock.now - start < .seconds(8) {
            if !killed, ContinuousClock.now - start > .milliseconds(500) {
                cluster.nodes[victim].stop(signal: SIGKILL)
                killed = true
            }
            for r in records {
                let t = ContinuousClock.now
                let kv = try await store.rawKV(r, window: 0)
                XCTAssertEqual(kv.count, 4)
                longest = max(longest, ContinuousClock.now - t)
            }
        }
        let fallbacks = await client.counters.replicaFallbacks
        print("reads through a failover (node timeout \(nodeTimeout) ms, replica reads \(replicaFallback ? "on" : "off")): longest read \(longest), \(fallbacks) sent to a replica")
        await client.close()
        return (longest, fallbacks)
    }

    /// Writes that reach no replica (the replicas are stopped with SIGSTOP) are refused as not
    /// replicated and kept in the outbox; once the replicas are back, the next open writes them
    /// again and the outbox empties; a document deleted meanwhile is not brought back.
    func testWritesShortOfReplicasWaitInTheOutbox() async throws {
        let cluster = try await LocalRedisCluster()
        let seeds = cluster.seeds
        let outbox = try temporaryFolder()
        let replicas = (cluster.masters..<cluster.nodes.count).map { cluster.nodes[$0].pid }
        var options = RedisStore.Options()
        options.waitTimeout = .milliseconds(100)
        let storeOptions = options
        let docs = (0..<3).map { document("outbox-\($0)", windows: 1, seed: UInt64($0)) }
        try await onThread {
            let open = { try RedisDocumentStore.open(seeds: seeds, name: "outbox-kb", password: nil, modelFingerprint: "model-fp", modelName: "synthetic",
                                                     create: true, shape: ModelShape(layers: 4, kvDim: 64), location: "test", outboxPath: outbox, options: storeOptions) }
            let store = try open()
            for pid in replicas { kill(pid, SIGSTOP) }
            defer { for pid in replicas { kill(pid, SIGCONT) } }
            XCTAssertThrowsError(try store.putEncoded(docs, adapters: ["5": "adapter-r5"])) { e in
                guard case StoreError.notReplicated(let ids, let n, _, let kept) = e else { return XCTFail("\(e)") }
                XCTAssertEqual(Set(ids), Set(docs.map(\.record.id)))
                XCTAssertEqual(n, 0)
                XCTAssertEqual(kept, outbox)
            }
            XCTAssertEqual(try store.outbox?.documents().map(\.id).sorted(), docs.map(\.record.id).sorted())
            XCTAssertTrue(try store.delete("outbox-2"))
            XCTAssertEqual(store.degradedWrites.load(ordering: .relaxed), 3)
            for pid in replicas { kill(pid, SIGCONT) }
            let again = try open()  // the outbox is written again at open, now acknowledged
            XCTAssertEqual(try again.outbox?.documents().map(\.id) ?? [], [])
            XCTAssertEqual(try again.documents(snapshot: nil).map(\.id), ["outbox-0", "outbox-1"])
            for w in 0..<1 { XCTAssertEqual(try again.rawKV(try XCTUnwrap(try again.document("outbox-0")), window: w, layer: 3, snapshot: nil), docs[0].kv[w][3]) }
        }
    }

    /// A cluster that may evict keys is refused at open.
    func testEvictingClusterIsRefused() async throws {
        let cluster = try await LocalRedisCluster(masters: 3, replicasPerMaster: 0)
        let c = try await cluster.nodes[0].connect()
        try await c.run(["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"])
        do {
            _ = try await open(cluster)
            XCTFail("opened a cluster that evicts")
        } catch let e as StoreError {
            XCTAssertTrue("\(e)".contains("noeviction"), "\(e)")
        }
        await c.close()
    }
}
