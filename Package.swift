// swift-tools-version:6.0
import PackageDescription

// Hot numeric loops live in C (CKernels) and are always built optimized, so debug builds
// and `swift test` run the real model at usable speed.
let kernelFlags: [CSetting] = [.unsafeFlags(["-O3", "-mavx2", "-mfma", "-mf16c", "-ffp-contract=fast"])]
// -Ounchecked (no overflow or bounds traps) only where the numeric hot loops are: the tensor ops
// and the forward pass. Everything that parses files or requests, or stores data, keeps Swift's
// checks in release builds too (measured cost in docs/benchmarks.md, "Checked release builds").
let swiftNumeric: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))]
let swiftChecked: [SwiftSetting] = [.unsafeFlags(["-wmo"], .when(configuration: .release))]

let package = Package(
    name: "AnchorKV",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "anchorkv", targets: ["anchorkv"]),
        .executable(name: "anchorkv-bench", targets: ["anchorkv-bench"]),
        .executable(name: "anchorkv-fuzz", targets: ["anchorkv-fuzz"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
        // Already in the graph through Hummingbird; named so the service can import them.
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.0.0"),
    ],
    targets: [
        // System libraries (pkg-config names fixed by the platform notes).
        .systemLibrary(name: "CRocksDB", pkgConfig: "rocksdb", providers: [.apt(["librocksdb-dev"])]),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CLZ4", pkgConfig: "liblz4", providers: [.apt(["liblz4-dev"])]),

        // Numeric kernels in C: dequantization, quantized dot products, fp16/bf16, norms, RoPE.
        .target(name: "CKernels", cSettings: kernelFlags),
        // SHA-256 and CRC32C in C (hardware CRC on x86-64).
        .target(name: "CChecksum", cSettings: [.unsafeFlags(["-O3"])]),
        // Swift faces of the checksums: content hashes, fingerprints, record checksums.
        .target(name: "Digest", dependencies: ["CChecksum"], swiftSettings: swiftChecked),
        // Dense tensor ops over BLAS and CKernels; knows nothing of models or files.
        .target(name: "Tensor", dependencies: ["COpenBLAS", "CKernels"], swiftSettings: swiftNumeric),
        // GGUF and safetensors readers; knows nothing of model architectures.
        .target(name: "ModelFormats", dependencies: ["CKernels"], swiftSettings: swiftChecked),
        // Byte-level BPE tokenizer; knows nothing of models.
        .target(name: "Tokenizer", swiftSettings: swiftChecked),
        // Llama-family model: config, weights, forward pass, KV cache, LoRA hooks, sampling.
        .target(name: "LLM", dependencies: ["Tensor", "ModelFormats", "Tokenizer", "Digest"], swiftSettings: swiftNumeric),
        // Semantic-Anchor Compression: anchor selection, adapters, encoder, decoder, KV files.
        .target(name: "SAC", dependencies: ["LLM", "ModelFormats", "Digest"], swiftSettings: swiftChecked),
        // RocksDB store: key schema, tensor codec (fp16/bf16/int8, LZ4), checksums, atomic writes.
        .target(name: "KVStore", dependencies: ["CRocksDB", "CLZ4", "CKernels", "Digest"], swiftSettings: swiftChecked),
        // Redis Cluster protocol pieces (RESP codec, key slots); knows nothing of AnchorKV's data.
        .target(name: "RedisCluster",
                dependencies: [.product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio")],
                swiftSettings: swiftChecked),
        // A knowledge base in a Redis Cluster: key schema, atomic document commits, WAIT-checked writes.
        .target(name: "ClusterStore", dependencies: ["KVStore", "RedisCluster", "Digest"], swiftSettings: swiftChecked),
        // Ingest / query orchestration over the store and the SAC engine; lexical retrieval.
        .target(name: "KnowledgeBase", dependencies: ["KVStore", "SAC", "LLM", "Digest"], swiftSettings: swiftChecked),
        // Answer-quality metrics and the evaluation runner (SAC, full context, closed book).
        .target(name: "Evaluation", dependencies: ["SAC", "LLM"], swiftSettings: swiftChecked),
        // Snapshot files: streamed export from a RocksDB snapshot, verified atomic import.
        .target(name: "Snapshots", dependencies: ["KVStore", "Digest"], swiftSettings: swiftChecked),
        // The application: opens a knowledge base from the layered configuration (one adapter
        // catalogue) and holds every use case; Codable results and one error type for its faces.
        .target(name: "AnchorKVCore", dependencies: ["KnowledgeBase", "Snapshots", "KVStore", "ClusterStore", "RedisCluster", "SAC", "LLM", "Tokenizer", "Digest"],
                swiftSettings: swiftChecked),
        // The HTTP face of the core (Hummingbird 2): routes, auth, limits, jobs, Prometheus metrics.
        .target(name: "HTTPService",
                dependencies: ["AnchorKVCore",
                               .product(name: "Hummingbird", package: "hummingbird"),
                               .product(name: "Prometheus", package: "swift-prometheus"),
                               .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                               .product(name: "Logging", package: "swift-log"),
                               .product(name: "NIOCore", package: "swift-nio")]),
        // The command-line face of the core: what users run.
        .executableTarget(
            name: "anchorkv",
            dependencies: ["AnchorKVCore", "HTTPService",
                           .product(name: "Hummingbird", package: "hummingbird"),
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: swiftChecked),
        // Benchmarks and the answer-quality evaluation (developer tools, against the engine directly).
        .executableTarget(
            name: "anchorkv-bench",
            dependencies: ["AnchorKVCore", "LLM", "SAC", "KVStore", "KnowledgeBase", "Snapshots", "Evaluation",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: swiftChecked),
        // Fuzz targets: every file and request reader an attacker reaches, one entry each.
        .target(name: "FuzzTargets", dependencies: ["HTTPService", "AnchorKVCore", "KVStore", "LLM", "ModelFormats", "RedisCluster", "SAC", "Snapshots", "Tokenizer"],
                swiftSettings: swiftChecked),
        // libFuzzer's driver, weakly linked: only the fuzzing build (tools/fuzz/run.sh) links libFuzzer.
        .target(name: "CFuzzDriver"),
        // The fuzzers' executable: libFuzzer in the fuzzing build, corpus replay in every build.
        .executableTarget(name: "anchorkv-fuzz", dependencies: ["FuzzTargets", "CFuzzDriver"], swiftSettings: swiftChecked),

        .testTarget(name: "TensorTests", dependencies: ["Tensor"]),
        .testTarget(name: "ModelFormatsTests", dependencies: ["ModelFormats", "TestSupport"], resources: [.copy("Goldens")]),
        .testTarget(name: "TokenizerTests", dependencies: ["Tokenizer"], resources: [.copy("Goldens")]),
        // Helpers shared by the test targets (default model, golden readers, error statistics).
        .target(name: "TestSupport", dependencies: ["LLM", "Digest"], path: "Tests/TestSupport"),
        .testTarget(name: "LLMTests", dependencies: ["LLM", "ModelFormats", "Tensor", "TestSupport"], resources: [.copy("Goldens")]),
        .testTarget(name: "SACTests", dependencies: ["SAC", "LLM", "Digest", "Tensor", "TestSupport"], resources: [.copy("Goldens")]),
        .testTarget(name: "DigestTests", dependencies: ["Digest"]),
        .testTarget(name: "KVStoreTests", dependencies: ["KVStore", "Digest"]),
        .testTarget(name: "AnchorKVCoreTests", dependencies: ["AnchorKVCore", "KVStore", "SAC", "Snapshots", "TestSupport", "RedisTestSupport", "RedisCluster"]),
        .testTarget(name: "KnowledgeBaseTests", dependencies: ["KnowledgeBase", "KVStore", "SAC", "LLM", "TestSupport"]),
        .testTarget(name: "SnapshotTests", dependencies: ["Snapshots", "KnowledgeBase", "KVStore", "SAC", "LLM", "TestSupport"]),
        .testTarget(name: "EvaluationTests", dependencies: ["Evaluation", "SAC", "LLM", "TestSupport"]),
        .testTarget(name: "HTTPServiceTests", dependencies: ["HTTPService", "AnchorKVCore", "KnowledgeBase", "KVStore", "LLM", "SAC", "Snapshots", "TestSupport", "RedisTestSupport",
                                                             .product(name: "Hummingbird", package: "hummingbird"),
                                                             .product(name: "HummingbirdTesting", package: "hummingbird"),
                                                             .product(name: "Logging", package: "swift-log"),
                                                             .product(name: "NIOCore", package: "swift-nio")]),
        .testTarget(name: "FuzzTargetsTests", dependencies: ["FuzzTargets"]),
        // Redis servers and clusters of a test's own, on loopback ports.
        .target(name: "RedisTestSupport", dependencies: ["RedisCluster"], path: "Tests/RedisTestSupport"),
        .testTarget(name: "RedisClusterTests", dependencies: ["RedisCluster", "ClusterStore", "KVStore", "RedisTestSupport", .product(name: "NIOCore", package: "swift-nio")]),
        .testTarget(name: "SystemLibrariesTests", dependencies: ["CRocksDB", "CLZ4", "COpenBLAS"]),
    ]
)
