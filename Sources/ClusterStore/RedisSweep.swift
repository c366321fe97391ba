import Foundation
import KVStore
import RedisCluster

/// The cluster store's sweep: what interrupted writes leave behind, found and removed without
/// stopping writers.
///
/// A crash (of the writer or of a master) between the parts of a write can leave a version's
/// keys that no manifest names, postings of a version that is gone, a catalogue entry of a
/// document that was never committed, and counters off by that document. Readers never see
/// any of it (visibility is the manifest alone); it only takes memory. The rules that keep a
/// sweep safe beside writers follow from the order a write takes (keys, then its catalogue
/// entry, then postings, then the commit):
/// - a version's keys go only when none was touched for the grace (a write may still be on
///   its way to its commit), and by a script that first checks, on the document's slot, that
///   the manifest does not name that version;
/// - a posting goes only when its version has no keys (postings are written after the keys,
///   and version numbers are never reused, so such a version can never become visible);
/// - a catalogue entry goes only when its document has no manifest and no keys, and is put
///   back when a write of the document slipped in while it was removed.
/// The counters are recounted from the visible documents; a commit while recounting can leave
/// them off by that document again (they feed statistics and BM25, never visibility).
extension RedisStore {
    struct VersionID: Hashable { var tag: String, number: UInt64 }

    /// Deletes the keys given unless the manifest (KEYS[1]) names version ARGV[1]; the number of
    /// keys deleted, or -1 when the version is visible.
    static let sweepScript = """
        local cur = redis.call('GET', KEYS[1])
        if cur and tostring(cjson.decode(cur).record.number) == ARGV[1] then return -1 end
        local n = 0
        for i = 2, #KEYS do n = n + redis.call('DEL', KEYS[i]) end
        return n
        """

    public func sweep(olderThan grace: Duration, dryRun: Bool) async throws -> SweepReport {
        var report = SweepReport()
        report.dryRun = dryRun
        let graceSeconds = Double(grace.components.seconds) + Double(grace.components.attoseconds) / 1e18

        // Every document and index key of this knowledge base, from every master.
        let prefix = Array("{akv:\(knowledgeBase):".utf8)
        var versions: [String: [UInt64: [[UInt8]]]] = [:]
        var indexKeys: [[UInt8]] = []
        for node in try await client.currentTopology().masters {
            var cursor = "0"
            repeat {
                let reply = try await client.run(["SCAN", cursor, "MATCH", String(decoding: prefix, as: UTF8.self) + "*", "COUNT", "1000"], on: node)
                guard case .array(let parts?) = reply, parts.count == 2, case .bulkString(let c?) = parts[0], case .array(let found?) = parts[1] else {
                    throw RedisError.protocolError("SCAN answered \(reply)")
                }
                cursor = String(decoding: c, as: UTF8.self)
                for case .bulkString(let k?) in found {
                    switch Self.classify(k, prefix: prefix) {
                    case .version(let tag, let n): versions[tag, default: [:]][n, default: []].append(k)
                    case .index: indexKeys.append(k)
                    case .manifest, .other: break
                    }
                }
            } while cursor != "0"
        }
        let catalogue = try await catalogueEntries(readOnly: false)
        let named = try await manifests(tags: Array(Set(versions.keys).union(catalogue.map(\.tag))))

        // Versions no manifest names, idle for the grace.
        var gone = Set<VersionID>()
        for (tag, byNumber) in versions.sorted(by: { $0.key < $1.key }) {
            for (n, ks) in byNumber.sorted(by: { $0.key < $1.key }) where named[tag]?.record.number != n {
                let slot = keys.docSlot(tag)
                let idle = try await client.pipeline(ks.map { [Array("OBJECT".utf8), Array("IDLETIME".utf8), $0] }, slot: slot)
                let seconds = idle.compactMap { r -> Int? in if case .integer(let s) = r { return Int(s) } else { return nil } }
                guard let youngest = seconds.min() else { continue }  // gone meanwhile
                guard Double(youngest) >= graceSeconds else { report.versionsKept += 1; continue }
                if dryRun {
                    report.versionsRemoved += 1
                    report.keysRemoved += ks.count
                    gone.insert(VersionID(tag: tag, number: n))
                    continue
                }
                let script = [Array("EVAL".utf8), Array(Self.sweepScript.utf8), Array(String(1 + ks.count).utf8), keys.docManifest(tag)] + ks + [Array(String(n).utf8)]
                guard case .integer(let removed) = try await client.run(script, slot: slot) else { throw RedisError.protocolError("the sweep script answered no number") }
                if removed >= 0 {
                    report.versionsRemoved += 1
                    report.keysRemoved += Int(removed)
                    gone.insert(VersionID(tag: tag, number: n))
                }
            }
        }

        // Postings of versions that have no keys.
        var present: [VersionID: Bool] = [:]
        for k in indexKeys {
            let slot = HashSlot.slot(of: k)
            guard case .array(let items?) = try await client.run([Array("HGETALL".utf8), k], slot: slot) else { continue }
            var stale: [[UInt8]] = []
            for i in stride(from: 0, to: items.count - 1, by: 2) {
                guard case .bulkString(let f?) = items[i], let v = Self.postingVersion(f), named[v.tag]?.record.number != v.number else { continue }
                var exists = false
                if !gone.contains(v) {
                    if let known = present[v] { exists = known } else {
                        exists = try await client.run([Array("EXISTS".utf8), keys.window(v.tag, v.number, 0)], slot: keys.docSlot(v.tag)) == .integer(1)
                        present[v] = exists
                    }
                }
                if !exists { stale.append(f) }
            }
            guard !stale.isEmpty else { continue }
            report.postingsRemoved += stale.count
            if !dryRun { _ = try await client.run([Array("HDEL".utf8), k] + stale, slot: slot) }
        }

        // Catalogue entries of documents with no manifest and no keys.
        for (id, tag) in catalogue where named[tag] == nil {
            let left = (versions[tag] ?? [:]).keys.filter { !gone.contains(VersionID(tag: tag, number: $0)) }
            guard left.isEmpty else { continue }
            report.catalogueEntriesRemoved += 1
            if dryRun { continue }
            _ = try await client.run([Array("HDEL".utf8), keys.catalogue, Array(id.utf8)], slot: keys.kbSlot)
            // A write of it that came meanwhile wrote its keys before its entry: put the entry back.
            var restore = try await manifest(tag: tag) != nil
            if !restore { restore = try await hasKeys(tag: tag) }
            if restore {
                _ = try await client.run([Array("HSET".utf8), keys.catalogue, Array(id.utf8), Array(tag.utf8)], slot: keys.kbSlot)
                report.catalogueEntriesRemoved -= 1
            }
        }

        // The counters, recounted from the visible documents.
        report.countersBefore = try await lexStats()
        var counted = KVStore.LexStats()
        counted.counted = true
        for d in try await documents() {
            counted.documents += 1
            counted.windows += d.windows
            counted.tokens += d.tokens
            counted.anchors += d.anchors
            counted.kvBytes += d.kvBytes
            for w in 0..<d.windows { counted.totalLength += try await window(d, w).termCount }
        }
        report.countersAfter = counted
        var stored = report.countersBefore
        stored.counted = true
        if stored != counted {
            report.countersFixed = true
            if !dryRun {
                let fields: [(String, Int)] = [("documents", counted.documents), ("windows", counted.windows), ("tokens", counted.tokens),
                                               ("anchors", counted.anchors), ("kvBytes", counted.kvBytes), ("totalLength", counted.totalLength)]
                let hset = [Array("HSET".utf8), keys.stats] + fields.flatMap { [Array($0.0.utf8), Array(String($0.1).utf8)] }
                _ = try await client.transaction([[Array("DEL".utf8), keys.stats], hset], slot: keys.kbSlot)
            }
        }
        return report
    }

    enum SweptKey: Equatable { case manifest(tag: String), version(tag: String, number: UInt64), index, other }

    /// What a key of this knowledge base is, from its name (`RedisKeys`).
    static func classify(_ key: [UInt8], prefix: [UInt8]) -> SweptKey {
        guard key.starts(with: prefix) else { return .other }
        let rest = key[prefix.count...]
        guard let close = rest.firstIndex(of: UInt8(ascii: "}")) else { return .other }
        let tag = String(decoding: rest[..<close], as: UTF8.self)
        if tag.hasPrefix("ix") { return .index }
        guard tag.count == 16, tag.allSatisfy(\.isHexDigit) else { return .other }
        let parts = rest[(close + 1)...].split(separator: UInt8(ascii: ":"), omittingEmptySubsequences: false)
        guard parts.count >= 2, parts[0].isEmpty else { return .other }
        if parts.count == 2, parts[1].elementsEqual("m".utf8) { return .manifest(tag: tag) }
        guard parts.count >= 4, let n = UInt64(String(decoding: parts[1], as: UTF8.self)) else { return .other }
        return .version(tag: tag, number: n)
    }

    /// The version a posting field ("TAG:N:W") names.
    static func postingVersion(_ field: [UInt8]) -> VersionID? {
        let parts = field.split(separator: UInt8(ascii: ":"))
        guard parts.count == 3, let n = UInt64(String(decoding: parts[1], as: UTF8.self)) else { return nil }
        return VersionID(tag: String(decoding: parts[0], as: UTF8.self), number: n)
    }

    /// Whether any key of the document exists (its slot's keys, asked of the slot's master).
    private func hasKeys(tag: String) async throws -> Bool {
        let limit = 100_000
        let raw = try await client.run(["CLUSTER", "GETKEYSINSLOT", String(keys.docSlot(tag)), String(limit)].map { Array($0.utf8) }, slot: keys.docSlot(tag))
        guard case .array(let found?) = raw else { throw RedisError.protocolError("CLUSTER GETKEYSINSLOT answered \(raw)") }
        if found.count >= limit { return true }
        let prefix = Array(keys.docPrefix(tag).utf8)
        return found.contains { if case .bulkString(let k?) = $0 { return k.starts(with: prefix) } else { return false } }
    }
}
