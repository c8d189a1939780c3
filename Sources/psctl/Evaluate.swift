import ArgumentParser
import Foundation
import Logging
import ScenePSCore
import ScenePSData
import ScenePSWorker

/// Scores the test (or validation) split with the model on the servers and
/// writes RUN_DIR/summary.json.
struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate the model held by the servers after an epoch; write RUN_DIR/summary.json.",
        discussion: """
            Scores the validation and test splits with the model as the servers hold it, computes \
            per-scene and overall AUC, GAUC and logloss (and the oracle AUC when the data set has a \
            truth file, and the AUC on cold-start items), and writes RUN_DIR/epochs/epoch-N.json. \
            Then it picks the epoch with the best validation AUC so far (early stopping) and writes its \
            test metrics to RUN_DIR/summary.json, with throughput from the workers' reports. \
            The last line is `decision: continue` or `decision: stop` (patience used up, or last epoch).
            """)

    @Option(help: "Cluster config file (YAML).") var config: String
    @Option(help: "Prepared data set directory.") var data: String
    @Option(help: "Comma-separated server endpoints, in shard order.") var servers: String
    @Option(help: "Run directory: worker reports are read from RUN_DIR/workers, results written there.") var runDir: String
    @Option(help: "The epoch just trained (1-based).") var epoch: Int = 1

    func validate() throws {
        guard epoch >= 1 else { throw ValidationError("--epoch must be at least 1") }
    }

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
            let reports = try WorkerReports.load(runDir: runDir)
            let summary = RunSummary(epoch: epoch, test: test, valid: valid, sceneNames: evaluator.sceneNames,
                                     reports: reports, servers: endpoints.count, config: cfg,
                                     data: evaluator.manifest)
            let epochsDir = (runDir as NSString).appendingPathComponent("epochs")
            try FileManager.default.createDirectory(atPath: epochsDir, withIntermediateDirectories: true)
            try JSONFile.write(summary, to: (epochsDir as NSString).appendingPathComponent("epoch-\(epoch).json"))
            print(summary.table())

            // Early stopping: the reported model is the epoch with the best validation AUC.
            var epochs: [RunSummary] = []
            for e in 1...epoch {
                let p = (epochsDir as NSString).appendingPathComponent("epoch-\(e).json")
                if FileManager.default.fileExists(atPath: p) { epochs.append(try JSONFile.read(RunSummary.self, from: p)) }
            }
            let best = epochs.max { a, b in
                let va = a.validAUC ?? -.infinity, vb = b.validAUC ?? -.infinity
                return va != vb ? va < vb : a.epoch < b.epoch   // without validation: the latest epoch
            }!
            var final = best
            final.bestEpoch = best.epoch
            final.epochsTrained = epoch
            final.trainExamples = summary.trainExamples
            final.examplesPerSec = summary.examplesPerSec
            final.wallSeconds = summary.wallSeconds
            let path = (runDir as NSString).appendingPathComponent("summary.json")
            try JSONFile.write(final, to: path)
            let stop = epoch >= cfg.training.epochs || (best.validAUC != nil && epoch - best.epoch >= cfg.training.patience)
            if stop {
                print("\nresult: epoch \(best.epoch) of \(epoch), chosen by validation AUC; test metrics (\(path)):")
                print(final.table())
            } else {
                print("best epoch so far: \(best.epoch)" + (best.validAUC.map { String(format: " (validation AUC %.4f)", $0) } ?? ""))
            }
            print("decision: \(stop ? "stop" : "continue")")
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
