import Foundation
import XCTest
@_exported import TestSupport
@testable import LLM

/// Goldens from tools/reference (float64 numpy reference; see tools/reference/README.md).
enum Goldens {
    static let dir = Bundle.module.url(forResource: "Goldens", withExtension: nil)!
    static func path(_ name: String) -> String { dir.appendingPathComponent(name).path }
    static func json(_ name: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent(name))) as! [String: Any]
    }
}

