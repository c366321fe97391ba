import Foundation
import KVStore
import KnowledgeBase
import Snapshots

// The results of the use cases: Codable values that `anchorkv --json` and the HTTP service
// encode the same way (snake_case keys, `Results.encoder`).

public enum Results {
    /// snake_case keys, sorted, for stable output.
    public static var encoder: JSONEncoder {
        let e = JSONEncoder()
        e.keyEncodingStrategy = .convertToSnakeCase
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }

    public static func json(_ value: some Encodable) -> String {
        (try? String(decoding: encoder.encode(value), as: UTF8.self)) ?? "{}"
    }
}

/// A stored document as users see it.
public struct DocumentInfo: Codable, Sendable, Equatable {
    public var id: String
    public var title: String
    public var source: String
    public var ratio: Int
    /// The adapter fingerprint its KV was made with ("none": training-free anchors).
    public var adapter: String
    public var windows: Int
    public var tokens: Int
    public var anchors: Int
    public var kvBytes: Int
    public var bytesPerToken: Double
    public var contentSha256: String
    public var ingestedAt: String
    /// With `document(_:windows: true)`: each window's text.
    public var windowTexts: [String]?

    init(_ d: DocumentRecord, windowTexts: [String]? = nil) {
        id = d.id; title = d.title; source = d.source; ratio = d.ratio; adapter = d.adapter ?? "none"
        windows = d.windows; tokens = d.tokens; anchors = d.anchors; kvBytes = d.kvBytes
        bytesPerToken = d.tokens > 0 ? Double(d.kvBytes) / Double(d.tokens) : 0
        contentSha256 = d.contentHash; ingestedAt = d.ingestedAt
        self.windowTexts = windowTexts
    }
}

/// One page of the document list, in id order.
public struct DocumentPage: Codable, Sendable {
    public var documents: [DocumentInfo]
    public var total: Int
    public var limit: Int
    public var offset: Int
}

/// One document's outcome in an ingest.
public struct IngestItem: Encodable, Sendable {
    public enum Status: String, Codable, Sendable {
        case added, replaced, unchanged, repaired, failed
        /// Not started: the run was stopped (cancelled, timed out, shutting down) before it.
        case notAttempted = "not_attempted"
    }
    public var id: String
    public var origin: String
    public var status: Status
    public var document: DocumentInfo?
    public var seconds: Double = 0
    /// For `repaired`: what was wrong with the stored copy.
    public var damage: String?
    public var error: CoreError?

    enum CodingKeys: String, CodingKey { case id, status, windows, tokens, anchors, kvBytes, bytesPerToken, seconds, damage, error }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(status, forKey: .status)
        if let d = document {
            try c.encode(d.windows, forKey: .windows); try c.encode(d.tokens, forKey: .tokens); try c.encode(d.anchors, forKey: .anchors)
            try c.encode(d.kvBytes, forKey: .kvBytes); try c.encode(d.bytesPerToken, forKey: .bytesPerToken); try c.encode(seconds, forKey: .seconds)
        }
        try c.encodeIfPresent(damage, forKey: .damage)
        try c.encodeIfPresent(error, forKey: .error)
    }
}

/// An input that was not read as a document, and why.
public struct SkippedInfo: Codable, Sendable {
    public var origin: String
    public var reason: String
}

/// An ingest run: each document's outcome and the totals of what was encoded.
public struct IngestReport: Encodable, Sendable {
    public var items: [IngestItem]
    public var ratio: Int
    public var adapter: String
    public var seconds: Double
    /// Set by the CLI: inputs that were not documents, and the store written.
    public var skipped: [SkippedInfo]?
    public var store: String?

    public func count(_ s: IngestItem.Status) -> Int { items.filter { $0.status == s }.count }
    /// Documents encoded by this run (added, replaced, repaired).
    var encoded: [IngestItem] { items.filter { [.added, .replaced, .repaired].contains($0.status) } }
    public var tokens: Int { encoded.reduce(0) { $0 + ($1.document?.tokens ?? 0) } }
    public var windows: Int { encoded.reduce(0) { $0 + ($1.document?.windows ?? 0) } }
    public var kvBytes: Int { encoded.reduce(0) { $0 + ($1.document?.kvBytes ?? 0) } }
    public var encodeSeconds: Double { encoded.reduce(0) { $0 + $1.seconds } }

    public struct Summary: Codable, Sendable {
        public var added, replaced, unchanged, repaired, failed, notAttempted: Int
        public var windows, tokens, kvBytes: Int
        public var bytesPerToken, seconds, tokensPerSecond: Double
    }

    public var summary: Summary {
        Summary(added: count(.added), replaced: count(.replaced), unchanged: count(.unchanged), repaired: count(.repaired),
                failed: count(.failed), notAttempted: count(.notAttempted), windows: windows, tokens: tokens, kvBytes: kvBytes,
                bytesPerToken: tokens > 0 ? Double(kvBytes) / Double(tokens) : 0, seconds: encodeSeconds,
                tokensPerSecond: encodeSeconds > 0 ? Double(tokens) / encodeSeconds : 0)
    }

    enum CodingKeys: String, CodingKey { case documents, summary, ratio, adapter, skipped, store, seconds }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(items, forKey: .documents); try c.encode(summary, forKey: .summary)
        try c.encode(ratio, forKey: .ratio); try c.encode(adapter, forKey: .adapter); try c.encode(seconds, forKey: .seconds)
        try c.encodeIfPresent(skipped, forKey: .skipped); try c.encodeIfPresent(store, forKey: .store)
    }
}

public struct Citation: Codable, Sendable {
    public var document: String
    public var title: String
    public var window: Int
    /// BM25 score (null when the window was named, not searched).
    public var score: Double?
    public var snippet: String

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(document, forKey: .document); try c.encode(title, forKey: .title); try c.encode(window, forKey: .window)
        try c.encode(score, forKey: .score); try c.encode(snippet, forKey: .snippet)
    }
}

public struct QueryTimings: Codable, Sendable {
    public var retrieveS: Double
    public var loadS: Double
    public var firstTokenS: Double
    public var decodeS: Double
    public var totalS: Double
}

/// What a question is answered with, and where the answer came from.
public struct Answer: Codable, Sendable {
    public var answer: String
    public var answerTokens: Int
    public var citations: [Citation]
    public var timings: QueryTimings
    public var contextTokens: Int
    public var anchors: Int
    /// The ratio of the KV the answer was decoded from.
    public var ratio: Int
    /// It ended at a stop token (else at the token limit, or stopped).
    public var stoppedByToken: Bool
    /// Tokens the decoder prefilled after the anchors ([LM] and the question segment).
    public var questionTokens: Int
}

/// What the store holds, computed once for every face.
public struct StoreStats: Codable, Sendable {
    public var store: String
    public var model: String
    public var modelFingerprint: String
    public var adapters: [String: String]
    public var dtype: String
    public var documents: Int
    public var windows: Int
    public var tokens: Int
    public var anchors: Int
    public var kvBytes: Int
    public var bytesPerToken: Double
    /// The full (uncompressed) fp16 KV of the same tokens, for comparison.
    public var fullFp16KvBytes: Int
    public var logicalBytes: [String: Int]
    /// The store folder's files on disk (a cluster: its data set's memory).
    public var diskBytes: Int
    /// A cluster store: document writes since open that reached too few replicas, and the
    /// documents waiting in the outbox to be written again (0 for a folder).
    public var writesNotReplicated = 0
    public var outboxDocuments = 0
}

public struct CompactionFailure: Codable, Sendable {
    public var id: String
    public var error: String
}

/// A compaction run (possibly stopped between chunks).
public struct CompactionResult: Encodable, Sendable {
    public var toRatio: Int
    public var adapter: String
    public var compacted: [String] = []
    public var alreadyDone: [String] = []
    public var failed: [CompactionFailure] = []
    /// Documents not reached because the run was stopped.
    public var notAttempted = 0
    public var windows = 0
    public var tokens = 0
    public var kvBytesBefore = 0
    public var kvBytesAfter = 0
    public var diskBytesBefore = 0
    public var diskBytesAfter = 0
    public var seconds = 0.0
    public var windowsPerS: Double { seconds > 0 ? Double(windows) / seconds : 0 }

    enum CodingKeys: String, CodingKey {
        case toRatio, adapter, compacted, alreadyDone, failed, notAttempted, windows, tokens, kvBytesBefore, kvBytesAfter,
             diskBytesBefore, diskBytesAfter, seconds, windowsPerS
    }
    public init(toRatio: Int, adapter: String) { self.toRatio = toRatio; self.adapter = adapter }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(toRatio, forKey: .toRatio); try c.encode(adapter, forKey: .adapter); try c.encode(compacted, forKey: .compacted)
        try c.encode(alreadyDone, forKey: .alreadyDone); try c.encode(failed, forKey: .failed); try c.encode(notAttempted, forKey: .notAttempted)
        try c.encode(windows, forKey: .windows); try c.encode(tokens, forKey: .tokens)
        try c.encode(kvBytesBefore, forKey: .kvBytesBefore); try c.encode(kvBytesAfter, forKey: .kvBytesAfter)
        try c.encode(diskBytesBefore, forKey: .diskBytesBefore); try c.encode(diskBytesAfter, forKey: .diskBytesAfter)
        try c.encode(seconds, forKey: .seconds); try c.encode(windowsPerS, forKey: .windowsPerS)
    }
}

/// A snapshot file's manifest as users see it.
public struct SnapshotInfo: Codable, Sendable {
    public var format: String
    public var formatVersion: Int
    public var createdAt: String
    public var model: String
    public var modelFingerprint: String
    public var adapters: [String: String]
    public var ratios: [Int]
    public var documents: Int
    public var windows: Int
    public var kvRecords: Int
    public var kvBytes: Int
    public var tokens: Int
    public var layers: Int
    public var sourceStore: String?
    /// `inspect`: the file and its size; `verified` when every checksum and count was checked.
    public var file: String?
    public var bytes: Int?
    public var verified: Bool?

    init(_ m: SnapshotManifest) {
        format = m.format; formatVersion = m.formatVersion; createdAt = m.createdAt; model = m.modelName
        modelFingerprint = m.modelFingerprint; adapters = m.adapters; ratios = m.ratios; documents = m.documents
        windows = m.windows; kvRecords = m.kvRecords; kvBytes = m.kvBytes; tokens = m.tokens; layers = m.layers
        sourceStore = m.sourceStore
    }
}

public struct ExportResult: Codable, Sendable {
    public var snapshot: SnapshotInfo
    public var file: String
    public var bytes: Int
    public var seconds: Double
    public var mbPerS: Double
}

public struct ImportResult: Codable, Sendable {
    public var snapshot: SnapshotInfo
    public var store: String
    public var file: String
    public var added: [String]
    public var replaced: [String]
    public var unchanged: [String]
    public var repaired: [String]
    public var skipped: [String]
    public var bytes: Int
    public var seconds: Double
    public var mbPerS: Double
    /// Imported ratios whose adapter the config does not have: queries on them fail until it is configured.
    public var undecodable: [String: String]
}

/// How to treat snapshot documents whose id the store holds with other content.
public typealias ConflictPolicy = Snapshots.ConflictPolicy
/// A document to ingest: id, title, text and where it came from.
public typealias IngestDocument = SourceDocument
