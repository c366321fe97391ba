import Foundation
@_exported import TestSupport

/// Goldens from tools/reference/make_sac_goldens.py (see tools/reference/README.md).
enum Goldens {
    static let dir = Bundle.module.url(forResource: "Goldens", withExtension: nil)!
    static func path(_ name: String) -> String { dir.appendingPathComponent(name).path }
    static func json(_ name: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent(name))) as! [String: Any]
    }
}

func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("anchorkv-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}
