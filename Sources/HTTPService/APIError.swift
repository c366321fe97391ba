import AnchorKVCore
import Foundation
import Hummingbird
import NIOCore

/// An error answered as JSON: `{"error": {"status": 400, "code": "invalid_input", "message": "..."}}`.
public struct APIError: Error, HTTPResponseError, CustomStringConvertible, Sendable {
    public var status: HTTPResponse.Status
    public var code: String
    public var message: String
    public var headers: HTTPFields = [:]

    public init(_ status: HTTPResponse.Status, _ code: String, _ message: String, headers: HTTPFields = [:]) {
        self.status = status; self.code = code; self.message = message; self.headers = headers
    }

    public var description: String { "\(status.code) \(code): \(message)" }

    static func badRequest(_ m: String) -> APIError { APIError(.badRequest, "invalid_input", m) }
    static func notFound(_ m: String) -> APIError { APIError(.notFound, "not_found", m) }
    static func busy(_ m: String) -> APIError { APIError(.serviceUnavailable, "busy", m, headers: [.retryAfter: "1"]) }
    static func timeout(_ m: String) -> APIError { APIError(.gatewayTimeout, "timeout", m) }
    static let shuttingDown = APIError(.serviceUnavailable, "shutting_down", "the service is shutting down; retry against another instance or after restart",
                                       headers: [.retryAfter: "5"])

    var json: JSONValue { ["status": .int(Int(status.code)), "code": .string(code), "message": .string(message)] }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        .json(["error": json], status: status, headers: headers)
    }

    /// Maps any error to what a client is told: bad input is 4xx, the store's own trouble 5xx.
    public static func from(_ error: any Error) -> APIError {
        switch error {
        case let e as APIError:
            return e
        case let e as HTTPError:
            let code: String
            switch e.status.code {
            case 404: code = "not_found"
            case 405: code = "method_not_allowed"
            case 413: code = "payload_too_large"
            case 400..<500: code = "invalid_input"
            default: code = "internal"
            }
            return APIError(e.status, code, e.body ?? e.status.reasonPhrase, headers: e.headers)
        case is NIOTooManyBytesError:
            return APIError(.contentTooLarge, "payload_too_large", "the request body is larger than the limit")
        case let e as DecodingError:
            return APIError(.badRequest, "invalid_json", describe(e))
        case let e as CoreError:
            return from(core: e)
        case is CancellationError:
            return APIError(.serviceUnavailable, "cancelled", "the request was cancelled (the service is shutting down)")
        default:
            return from(core: CoreError.from(error))
        }
    }

    /// The application's errors by kind: bad input is 4xx, the store's own trouble 5xx.
    static func from(core e: CoreError) -> APIError {
        switch e.kind {
        case .invalidInput, .invalidConfig: return APIError(.badRequest, e.kind.rawValue, e.message)
        case .invalidSnapshot: return APIError(.badRequest, "invalid_snapshot", e.message)
        case .notFound: return APIError(.notFound, "not_found", e.message)
        case .conflict: return APIError(.conflict, "conflict", e.message)
        case .modelMismatch: return APIError(.conflict, "model_mismatch", e.message)
        case .unavailable: return APIError(.serviceUnavailable, "unavailable", e.message, headers: [.retryAfter: "1"])
        case .timeout: return APIError(.gatewayTimeout, "timeout", e.message)
        case .corrupt: return APIError(.internalServerError, "corrupt_record", e.message)
        case .internalError: return APIError(.internalServerError, "internal", e.message)
        }
    }

    static func describe(_ e: DecodingError) -> String {
        func path(_ p: [any CodingKey]) -> String { p.isEmpty ? "the body" : "'" + p.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".") + "'" }
        switch e {
        case .dataCorrupted(let c):
            return c.codingPath.isEmpty ? "the body is not valid JSON" : "\(path(c.codingPath)): \(c.debugDescription)"
        case .keyNotFound(let k, let c): return "missing field '\(k.stringValue)' in \(path(c.codingPath))"
        case .typeMismatch(let t, let c): return "\(path(c.codingPath)) must be \(jsonType(t))"
        case .valueNotFound(let t, let c): return "\(path(c.codingPath)) must be \(jsonType(t)), not null"
        @unknown default: return "the body does not match the expected JSON"
        }
    }

    static func jsonType(_ t: Any.Type) -> String {
        switch t {
        case is String.Type: return "a string"
        case is Int.Type, is Double.Type: return "a number"
        case is Bool.Type: return "true or false"
        default: return String(describing: t).hasPrefix("Array") ? "an array" : "an object"
        }
    }
}

/// Turns every error thrown below it into a JSON error response (and logs server-side ones).
struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            var e = APIError.from(error)
            if e.status == .notFound, e.message == HTTPResponse.Status.notFound.reasonPhrase {
                e.message = "no endpoint \(request.method) \(request.uri.path); see docs/http-api.md"
            }
            if e.status.code >= 500 { context.logger.error("\(request.method) \(request.uri.path): \(e)") }
            return try e.response(from: request, context: context)
        }
    }
}
