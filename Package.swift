// swift-tools-version:6.0
import PackageDescription

// Layout (docs/STYLE.md): thin C modules, then Swift modules by concern; the
// executables stay thin (parse flags, build the service, run it).
// Linux only (Debian 12 with Swift 6): the code calls glibc's mallopt,
// sync_file_range and O_DIRECT directly, so no Apple platform is declared.
let package = Package(
    name: "ScenePS",
    products: [
        .executable(name: "ps-server", targets: ["ps-server"]),
        .executable(name: "worker", targets: ["worker"]),
        .executable(name: "psctl", targets: ["psctl"]),
        .executable(name: "coordinator", targets: ["coordinator"]),
        .executable(name: "ps-bench", targets: ["ps-bench"]),
        .executable(name: "coordinator-bench", targets: ["coordinator-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        // Metrics (docs/OBSERVING.md): the Prometheus registry and text format; swift-metrics is its API for libraries.
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.4.1"),
    ],
    targets: [
        // C: system libraries and the committed protobuf-c output.
        .systemLibrary(name: "CZeroMQ", path: "Sources/CZeroMQ"),
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS"),
        .systemLibrary(name: "CMalloc", path: "Sources/CMalloc"),
        .target(
            name: "ScenePSWire",
            path: "Sources/ScenePSWire",
            cSettings: [.unsafeFlags(["-Wno-everything"])],
            linkerSettings: [.linkedLibrary("protobuf-c")]
        ),

        // Swift modules by concern.
        .target(name: "ScenePSCore", dependencies: [
            "CMalloc",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Yams", package: "Yams"),
        ]),
        .target(name: "ScenePSProtocol", dependencies: ["ScenePSCore", "ScenePSWire"]),
        .target(name: "ScenePSTransport", dependencies: [
            "ScenePSCore", "CZeroMQ",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "ScenePSServer", dependencies: [
            "ScenePSCore", "ScenePSProtocol", "ScenePSTransport", "CMalloc", "ScenePSMetrics",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),
        .target(name: "ScenePSClient", dependencies: [
            "ScenePSCore", "ScenePSProtocol", "ScenePSTransport", "ScenePSMetrics",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),
        // The HTTP endpoint every long-running process serves its metrics on (docs/OBSERVING.md).
        .target(name: "ScenePSMetrics", dependencies: [
            "ScenePSCore",
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "ScenePSData", dependencies: ["ScenePSCore"]),
        .target(name: "ScenePSModel", dependencies: ["ScenePSCore", "CBLAS"]),
        // Optimised in debug builds too: `swift test` runs the real 6-layer
        // model, and unoptimised SIMD loops make that minutes instead of seconds.
        .target(name: "ScenePSText", dependencies: ["ScenePSCore", "CBLAS"],
                swiftSettings: [.unsafeFlags(["-O"], .when(configuration: .debug))]),
        .target(name: "ScenePSWorker", dependencies: [
            "ScenePSCore", "ScenePSClient", "ScenePSProtocol", "ScenePSTransport", "ScenePSData", "ScenePSModel", "CBLAS", "ScenePSMetrics",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),
        // The control plane: membership, data leases, epochs (docs/COORDINATOR.md).
        .target(name: "ScenePSCoordinator", dependencies: [
            "ScenePSCore", "ScenePSProtocol", "ScenePSTransport", "ScenePSData", "ScenePSWorker", "ScenePSClient", "CZeroMQ", "ScenePSMetrics",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),

        // Executables.
        .executableTarget(name: "ps-server", dependencies: [
            "ScenePSCore", "ScenePSServer", "ScenePSMetrics",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "worker", dependencies: [
            "ScenePSCore", "ScenePSWorker", "ScenePSClient", "ScenePSTransport", "ScenePSMetrics",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "coordinator", dependencies: [
            "ScenePSCore", "ScenePSCoordinator", "ScenePSTransport", "ScenePSMetrics",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "psctl", dependencies: [
            "ScenePSCore", "ScenePSData", "ScenePSClient", "ScenePSWorker", "ScenePSText", "ScenePSCoordinator",
            "ScenePSServer", "ScenePSTransport",   // verify-checkpoint reads shard files with the server's own reader
            "ScenePSMetrics", .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "ps-bench", dependencies: [
            "ScenePSCore", "ScenePSClient", "ScenePSServer",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ], path: "tools/ps-bench"),
        .executableTarget(name: "coordinator-bench", dependencies: [
            "ScenePSCore", "ScenePSCoordinator", "ScenePSProtocol",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ], path: "tools/coordinator-bench"),

        // Tests.
        // Sample messages shared by the protocol and server test targets.
        .target(name: "ScenePSTestSupport", dependencies: ["ScenePSProtocol"], path: "Tests/ScenePSTestSupport"),
        .testTarget(name: "ScenePSCoreTests", dependencies: ["ScenePSCore"]),
        .testTarget(name: "ScenePSProtocolTests", dependencies: ["ScenePSProtocol", "ScenePSWire", "ScenePSTestSupport"],
                    exclude: ["Fixtures"]),
        .testTarget(name: "ScenePSServerTests", dependencies: [
            "ScenePSServer", "ScenePSClient", "ScenePSProtocol", "ScenePSTransport", "ScenePSWire", "CZeroMQ", "ScenePSTestSupport",
        ], exclude: ["Fixtures"]),
        .testTarget(name: "ScenePSDataTests", dependencies: ["ScenePSData"]),
        // The fixture test feeds the reference batch through the worker's real BatchAssembler.
        .testTarget(name: "ScenePSModelTests", dependencies: ["ScenePSModel", "ScenePSWorker", "ScenePSData", "ScenePSCore"],
                    exclude: ["Fixtures"]),
        .testTarget(name: "ScenePSWorkerTests", dependencies: ["ScenePSWorker", "ScenePSData", "ScenePSModel", "ScenePSCore"]),
        .testTarget(name: "ScenePSTextTests", dependencies: ["ScenePSText", "ScenePSCore", "ScenePSData"],
                    exclude: ["Fixtures"]),
        // The rollback test evaluates epochs against in-process servers, on data prepared in the test.
        .testTarget(name: "ScenePSCoordinatorTests", dependencies: ["ScenePSCoordinator", "ScenePSClient", "ScenePSProtocol", "ScenePSCore",
                                                                  "ScenePSServer", "ScenePSWorker", "ScenePSData"]),
        // The checkpoint tests push to real server processes through the client library.
        // The recommend test scores the test rows with the worker's Evaluator on a checkpoint loaded in-process.
        .testTarget(name: "ScenePSIntegrationTests", dependencies: ["ScenePSCore", "ScenePSData", "ScenePSClient", "ScenePSProtocol", "ScenePSTransport",
                                                                  "ScenePSServer", "ScenePSWorker",
                                                                  .product(name: "Logging", package: "swift-log")]),
    ]
)
