import Foundation
import KVStore
import RedisCluster
import LLM
import SAC
import Snapshots

/// The one error type of the application: what went wrong, in the terms a user acts on. The CLI
/// turns `kind` into an exit status and the HTTP service into a status code; engine errors are
/// mapped here by their case, never by their text.
public struct CoreError: Error, CustomStringConvertible, Sendable, Equatable, Encodable {
    public enum Kind: String, Sendable, CaseIterable {
        /// The request or a file the user gave is wrong (fix it and retry).
        case invalidInput = "invalid_input"
        /// A snapshot file is not a readable, intact snapshot.
        case invalidSnapshot = "invalid_snapshot"
        /// A configuration setting is unknown, mistyped or out of range.
        case invalidConfig = "invalid_config"
        case notFound = "not_found"
        /// The store holds something else under the same name (ids, an adapter for the ratio).
        case conflict
        /// Store, snapshot, adapter or KV file made for another model or adapter.
        case modelMismatch = "model_mismatch"
        /// Busy, shutting down or cancelled: retry later.
        case unavailable
        case timeout
        /// Stored data failed its checks.
        case corrupt = "corrupt_record"
        /// The store, the file system or the model failed.
        case internalError = "internal"
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) { self.kind = kind; self.message = message }

    enum CodingKeys: String, CodingKey { case code, message }
    /// As JSON: {"code": kind, "message": ...}.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(kind.rawValue, forKey: .code)
        try c.encode(message, forKey: .message)
    }

    public var description: String { message }

    /// The exit status of a CLI command that failed with this error (documented in --help).
    public var exitCode: Int32 {
        switch kind {
        case .invalidInput, .invalidSnapshot, .invalidConfig, .corrupt, .internalError: return 1
        case .notFound: return 2
        case .conflict, .modelMismatch: return 3
        case .unavailable, .timeout: return 4
        }
    }

    /// The exit status lines every command's --help shows.
    public static let exitStatusHelp = "Exit status: 0 success; 1 failure (bad input, corrupt data, internal error); 2 not found; 3 conflict or model/adapter mismatch; 4 busy, cancelled or timed out; 64 usage error."

    public static func invalidInput(_ m: String) -> CoreError { CoreError(.invalidInput, m) }
    public static func notFound(_ m: String) -> CoreError { CoreError(.notFound, m) }
    public static func invalidConfig(_ m: String) -> CoreError { CoreError(.invalidConfig, m) }
    public static func noDocument(_ id: String) -> CoreError { CoreError(.notFound, "no document '\(id)' in the store") }
    public static func noDocuments(_ ids: [String]) -> CoreError {
        CoreError(.notFound, "no document \(ids.map { "'\($0)'" }.joined(separator: ", ")) in the store")
    }

    /// Any error as the application reports it.
    public static func from(_ error: any Error) -> CoreError {
        switch error {
        case let e as CoreError: return e
        case let e as StoreError:
            switch e {
            case .invalidInput: return CoreError(.invalidInput, e.description)
            case .notAStore: return CoreError(.notFound, e.description)
            case .modelMismatch, .shapeMismatch: return CoreError(.modelMismatch, e.description)
            case .adapterConflict: return CoreError(.conflict, e.description)
            case .corrupt, .corruptRecord, .missingRecord: return CoreError(.corrupt, e.description)
            case .database, .unsupportedFormat, .fileSystem: return CoreError(.internalError, e.description)
            case .notReplicated: return CoreError(.unavailable, e.description)
            }
        case let e as RedisError:
            // The cluster could not be reached, or answered what it should not have.
            switch e {
            case .reply, .protocolError: return CoreError(.internalError, "Redis Cluster store: \(e)")
            case .authenticationFailed:
                return CoreError(.invalidConfig, "Redis Cluster store: \(e). Set the password in ANCHORKV_REDIS_PASSWORD or a file named by ANCHORKV_REDIS_PASSWORD_FILE")
            case .connectionClosed, .timedOut: return CoreError(.unavailable, "Redis Cluster store unavailable: \(e)")
            }
        case let e as SACError:
            switch e {
            case .invalidInput, .invalidKVFile, .invalidAdapter: return CoreError(.invalidInput, e.description)
            case .modelMismatch, .adapterMismatch: return CoreError(.modelMismatch, e.description)
            case .deadlinePassed: return CoreError(.timeout, e.description)
            }
        case let e as LLMError:
            switch e {
            case .invalidInput, .contextOverflow: return CoreError(.invalidInput, e.description)
            case .modelNotFound: return CoreError(.notFound, e.description)
            default: return CoreError(.internalError, e.description)
            }
        case let e as SnapshotError:
            switch e {
            case .notASnapshot, .unsupportedVersion, .truncated, .corrupt: return CoreError(.invalidSnapshot, e.description)
            case .modelMismatch: return CoreError(.modelMismatch, e.description)
            case .conflict, .invalid: return CoreError(.conflict, e.description)
            case .unreadable: return CoreError(.notFound, e.description)
            }
        case let e as ConfigError: return CoreError(.invalidConfig, e.message)
        case is CancellationError: return CoreError(.unavailable, "the work was cancelled")
        default: return CoreError(.internalError, "\(error)")
        }
    }

    /// Runs `body`, reporting whatever it throws as a CoreError.
    static func mapping<T>(_ body: () throws -> T) throws(CoreError) -> T {
        do { return try body() } catch { throw from(error) }
    }
}
