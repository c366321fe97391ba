@testable import AnchorKVCore
import Foundation
import HTTPService
import Hummingbird
import HummingbirdTesting
import KVStore
import KnowledgeBase
import LLM
import Logging
import NIOCore
import TestSupport
import XCTest

/// A service over a fresh store in a temporary folder, with the real default model (shared) and
/// training-free anchors at ratio 5 (no adapter file needed), or with `adapters` the committed
/// SAC adapters (config/adapters) configured as the product configures them.
final class Fixture: @unchecked Sendable {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../tools/demo/corpus").standardized
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..").standardized

    let dir: URL
    let core: KnowledgeService
    let service: AnchorService
    /// The engine underneath, for checks against what the service answered.
    var kb: KnowledgeBase { core.kb }

    init(adapters: Bool = false, _ configure: (inout ServiceConfig) -> Void = { _ in }) throws {
        let model = try DefaultModel.load()
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("akv-http-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var config = AppConfig(root: Self.repository)
        config.storePath = dir.appendingPathComponent("store").path
        if adapters {
            for r in [5, 15] { config.sacAdapters[r] = Self.repository.appendingPathComponent("config/adapters/smollm2-135m-sac-r\(r).safetensors").path }
        }
        config.serve.port = 0
        configure(&config.serve)
        core = try KnowledgeService.open(config: config, .init(create: true, adapter: AdapterChoice(ratio: 5, noAdapter: !adapters)), model: model)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        service = try AnchorService(core: core, config: config.serve, logger: logger)
    }

    deinit { try? FileManager.default.removeItem(at: dir) }

    var app: some ApplicationProtocol {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return AnchorKVServer.application(service: service, logger: logger)
    }

    static func text(_ name: String) throws -> String {
        try String(contentsOf: corpus.appendingPathComponent(name), encoding: .utf8)
    }
}

/// Short documents (fast to encode) with distinct words for retrieval.
enum Docs {
    static let bees = ["id": "bees", "title": "Honey bees",
                       "text": "Honey bees live in colonies with one queen. Karl von Frisch decoded the waggle dance, which tells other bees where flowers are."]
    static let river = ["id": "river", "title": "The Danube",
                        "text": "The Danube rises in the Black Forest and flows east for 2850 kilometres through ten countries into the Black Sea."]
    static let press = ["id": "press", "title": "Printing press",
                        "text": "Johannes Gutenberg built a printing press with movable metal type in Mainz around 1450 and printed the Gutenberg Bible."]
}

func body(_ object: Any) -> ByteBuffer {
    ByteBuffer(bytes: try! JSONSerialization.data(withJSONObject: object))
}

func body(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }

func object(_ r: TestResponse, file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
    let any = try JSONSerialization.jsonObject(with: Data(r.body.readableBytesView))
    return try XCTUnwrap(any as? [String: Any], "not a JSON object: \(String(buffer: r.body))", file: file, line: line)
}

/// The `error` object of a JSON error response, checked for status and code.
@discardableResult
func expectError(_ r: TestResponse, _ status: HTTPResponse.Status, _ code: String, file: StaticString = #filePath, line: UInt = #line) throws -> String {
    XCTAssertEqual(r.status, status, String(buffer: r.body), file: file, line: line)
    XCTAssertEqual(r.headers[.contentType], "application/json; charset=utf-8", file: file, line: line)
    let e = try XCTUnwrap(try object(r)["error"] as? [String: Any], file: file, line: line)
    XCTAssertEqual(e["code"] as? String, code, file: file, line: line)
    XCTAssertEqual(e["status"] as? Int, Int(status.code), file: file, line: line)
    let message = try XCTUnwrap(e["message"] as? String, file: file, line: line)
    XCTAssertFalse(message.isEmpty, file: file, line: line)
    return message
}

extension TestClientProtocol {
    func post(_ uri: String, _ json: Any, headers: HTTPFields = [:]) async throws -> TestResponse {
        try await execute(uri: uri, method: .post, headers: headers, body: body(json))
    }
    func get(_ uri: String, headers: HTTPFields = [:]) async throws -> TestResponse {
        try await execute(uri: uri, method: .get, headers: headers)
    }
}
