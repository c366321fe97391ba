import AnchorKVCore
import Foundation
import Hummingbird
import NIOCore

/// A JSON value: request bodies are read through it (so every field gets a precise error), and
/// free-form results (jobs) are kept in it.
public enum JSONValue: Sendable, Equatable, Codable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral,
                       ExpressibleByFloatLiteral, ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(stringLiteral v: String) { self = .string(v) }
    public init(integerLiteral v: Int) { self = .int(v) }
    public init(floatLiteral v: Double) { self = .double(v) }
    public init(booleanLiteral v: Bool) { self = .bool(v) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) { self = .object(Dictionary(elements, uniquingKeysWith: { $1 })) }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int.self) { self = .int(i) }
        else if let d = try? c.decode(Double.self) { self = .double(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .int(let i): try c.encode(i)
        case .double(let d): try d.isFinite ? c.encode(d) : c.encodeNil()
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }

    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    public var string: String? { if case .string(let s) = self { return s } else { return nil } }
    public var int: Int? {
        switch self {
        case .int(let i): return i
        case .double(let d) where d.rounded() == d && abs(d) < 1e15: return Int(d)
        default: return nil
        }
    }
    public var double: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }
    public var array: [JSONValue]? { if case .array(let a) = self { return a } else { return nil } }
    public var object: [String: JSONValue]? { if case .object(let o) = self { return o } else { return nil } }

    static func optional(_ s: String?) -> JSONValue { s.map { .string($0) } ?? .null }
    static func optional(_ d: Double?) -> JSONValue { d.map { .double($0) } ?? .null }

    /// Compact JSON text with sorted keys.
    /// A Codable result of the core as JSON (the encoding `anchorkv --json` prints).
    public init(encoding value: some Encodable) {
        self = (try? Results.encoder.encode(value)).flatMap { try? JSONDecoder().decode(JSONValue.self, from: $0) } ?? .null
    }

    public func encoded() -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? e.encode(self)) ?? Data("null".utf8)
    }

    /// Parses a request body; anything but a JSON object is a 400.
    static func parseObject(_ buffer: ByteBuffer, what: String = "the body") throws -> [String: JSONValue] {
        guard buffer.readableBytes > 0 else { throw APIError(.badRequest, "invalid_json", "\(what) is empty; send a JSON object") }
        let value: JSONValue
        do { value = try JSONDecoder().decode(JSONValue.self, from: Data(buffer.readableBytesView)) } catch {
            throw APIError(.badRequest, "invalid_json", "\(what) is not valid JSON")
        }
        guard case .object(let o) = value else { throw APIError(.badRequest, "invalid_json", "\(what) must be a JSON object") }
        return o
    }
}

/// Reads fields of a request object with one clear 400 per mistake, and refuses unknown fields
/// (a misspelt option would otherwise be ignored silently).
struct Fields {
    let object: [String: JSONValue]
    let path: String
    private(set) var used: Set<String> = []

    init(_ object: [String: JSONValue], path: String = "") {
        self.object = object
        self.path = path
    }

    private func name(_ k: String) -> String { path.isEmpty ? k : "\(path).\(k)" }

    private mutating func value(_ k: String) -> JSONValue? {
        used.insert(k)
        guard let v = object[k], v != .null else { return nil }
        return v
    }

    mutating func string(_ k: String, required: Bool = false, maxBytes: Int = .max) throws -> String? {
        guard let v = value(k) else {
            if required { throw APIError.badRequest("missing field '\(name(k))'") }
            return nil
        }
        guard let s = v.string else { throw APIError.badRequest("'\(name(k))' must be a string") }
        guard s.utf8.count <= maxBytes else { throw APIError.badRequest("'\(name(k))' is \(s.utf8.count) bytes; the limit is \(maxBytes)") }
        return s
    }

    mutating func int(_ k: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let v = value(k) else { return nil }
        guard let i = v.int else { throw APIError.badRequest("'\(name(k))' must be an integer") }
        guard range.contains(i) else { throw APIError.badRequest("'\(name(k))' must be in \(range.lowerBound)...\(range.upperBound), not \(i)") }
        return i
    }

    mutating func bool(_ k: String) throws -> Bool? {
        guard let v = value(k) else { return nil }
        guard case .bool(let b) = v else { throw APIError.badRequest("'\(name(k))' must be true or false") }
        return b
    }

    mutating func strings(_ k: String, maxCount: Int) throws -> [String]? {
        guard let v = value(k) else { return nil }
        if let s = v.string { return [s] }
        guard let a = v.array, a.allSatisfy({ $0.string != nil }) else { throw APIError.badRequest("'\(name(k))' must be an array of strings") }
        guard a.count <= maxCount else { throw APIError.badRequest("'\(name(k))' has \(a.count) entries; the limit is \(maxCount)") }
        return a.map { $0.string! }
    }

    mutating func double(_ k: String, in range: ClosedRange<Double>) throws -> Double? {
        guard let v = value(k) else { return nil }
        guard let d = v.double else { throw APIError.badRequest("'\(name(k))' must be a number") }
        guard range.contains(d) else { throw APIError.badRequest("'\(name(k))' must be in \(range.lowerBound)...\(range.upperBound), not \(d)") }
        return d
    }

    /// A nested object, read with its own Fields (its mistakes are named with the full path).
    mutating func object(_ k: String) throws -> Fields? {
        guard let v = value(k) else { return nil }
        guard let o = v.object else { throw APIError.badRequest("'\(name(k))' must be an object") }
        return Fields(o, path: name(k))
    }

    mutating func array(_ k: String) throws -> [JSONValue]? {
        guard let v = value(k) else { return nil }
        guard let a = v.array else { throw APIError.badRequest("'\(name(k))' must be an array") }
        return a
    }

    func rejectUnknown() throws {
        let unknown = Set(object.keys).subtracting(used).sorted()
        if !unknown.isEmpty {
            throw APIError.badRequest("unknown field\(unknown.count > 1 ? "s" : "") \(unknown.map { "'\(name($0))'" }.joined(separator: ", ")); see docs/http-api.md")
        }
    }
}

extension Response {
    /// A JSON response with the given status.
    static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        var h = headers
        h[.contentType] = "application/json; charset=utf-8"
        let data = value.encoded()
        return Response(status: status, headers: h, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}
