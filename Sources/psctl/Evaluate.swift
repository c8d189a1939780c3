import ArgumentParser
import Foundation
import Logging
import ScenePSCore
import ScenePSData
import ScenePSWorker

/// Scores the validation and test splits with the model the servers hold.
struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Score the model the servers hold on the validation and test splits.",
        discussion: """
            Computes per-scene and overall AUC, GAUC and logloss of the test split (and the oracle AUC when \
            the data set has a truth file, and the AUC on cold-start items), and the validation AUC, and \
            prints them; --out FILE also writes them as JSON (summary.json's fields). During a job the \
            coordinator does this after every epoch by itself (RUN_DIR/epochs/, RUN_DIR/summary.json).
            """)

    @Option(help: "Cluster config file (YAML).") var config: String
    @Option(help: "Prepared data set directory.") var data: String
    @Option(help: "Comma-separated server endpoints, in shard order.") var servers: String
    @Option(help: "Write the metrics as JSON to this file.") var out: String?

    func run() throws {
        try PSCtlErrors.reporting {
            let cfg = try ClusterConfig.load(path: config)
            let endpoints = servers.split(separator: ",").map(String.init)
            var logger = Logger(label: "psctl.evaluate")
            logger.logLevel = .warning
            let store = try PSClientStore(endpoints: endpoints, sender: "psctl-evaluate-\(getpid())", config: cfg,
                                          role: "psctl", scene: "", logger: logger)
            let evaluator = try Evaluator(config: cfg, dataDir: data, store: store, logger: logger)
            let valid = try evaluator.predict(.valid)
            let test = try evaluator.predict(.test)
            let summary = RunSummary(epoch: 0, test: test, valid: valid, sceneNames: evaluator.sceneNames,
                                     training: TrainingTotals(examples: 0, seconds: 0, workers: [:],
                                                              startedAt: Date().timeIntervalSince1970),
                                     servers: endpoints.count, config: cfg, data: evaluator.manifest)
            if let out { try JSONFile.write(summary, to: out) }
            print(summary.table())
        }
    }
}

/// Stops every server (they exit 0 after answering).
struct Shutdown: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Ask every server to shut down gracefully.")
    @Option(help: "Comma-separated server endpoints.") var servers: String
    @Option(help: "Reason, logged by the servers.") var reason: String = "psctl shutdown"

    func run() throws {
        try PSCtlErrors.reporting {
            var logger = Logger(label: "psctl.shutdown")
            logger.logLevel = .warning
            try PSClientStore.shutdown(endpoints: servers.split(separator: ",").map(String.init), reason: reason, logger: logger)
        }
    }
}
