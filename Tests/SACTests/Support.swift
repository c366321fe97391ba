import Foundation
@_exported import TestSupport

/// Goldens from tools/reference/make_sac_goldens.py (see tools/reference/README.md).
let Goldens = GoldenFolder(Bundle.module.url(forResource: "Goldens", withExtension: nil)!)

func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("anchorkv-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}
