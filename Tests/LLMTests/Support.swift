import Foundation
import XCTest
@_exported import TestSupport
@testable import LLM

/// Goldens from tools/reference (float64 numpy reference; see tools/reference/README.md).
let Goldens = GoldenFolder(Bundle.module.url(forResource: "Goldens", withExtension: nil)!)

