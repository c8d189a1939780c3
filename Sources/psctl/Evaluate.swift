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
            Then the learning-rate schedule (RUN_DIR/schedule.json) decides: keep the rate, decay it, go \
            back to the best epoch's model on the servers, or stop; and the test metrics of the epoch with \
            the best validation AUC go to RUN_DIR/summary.json, with throughput from the workers' reports. \
            The last line is `decision: continue` or `decision: stop`.
            """)

    @Option(help: "Cluster config file (YAML).") var config: String
    @Option(help: "Prepared data set directory.") var data: String
    @Option(help: "Comma-separated server endpoints, in shard order.") var servers: String
    @Option(help: "Run directory: worker reports are read from RUN_DIR/workers, results written there.") var runDir: String
    @Option(help: "The epoch just trained (1-based).") var epoch: Int = 1

    /// One line on what the schedule decided after its last epoch.
    static func describe(_ s: LearningRateSchedule, decay: Double) -> String {
        guard let r = s.epochs.last else { return "schedule: nothing recorded" }
        let auc = r.validAUC.map { String(format: "validation AUC %.4f", $0) } ?? "no validation split"
        let next = String(format: "x%g", LearningRateSchedule.scale(level: s.level, decay: decay))
        let what: String
        switch r.action {
        case .keep: what = "improved: epoch \(r.epoch + 1) at the same rate"
        case .wait: what = "no gain over epoch \(s.bestEpoch ?? 0) (patience left): epoch \(r.epoch + 1) at the same rate"
        case .decay: what = "a small gain (a plateau): epoch \(r.epoch + 1) at rate \(next)"
        case .rollbackDecay: what = "no gain: back to epoch \(r.restoredEpoch ?? 0)'s model, epoch \(r.epoch + 1) at rate \(next)"
        case .stop: what = "stop" + (r.restoredEpoch.map { ": back to epoch \($0)'s model" } ?? "")
        }
        return "schedule: epoch \(r.epoch) at rate " + String(format: "x%g", r.lrScale) + ", \(auc); \(what)"
    }

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

            // The schedule decides the next epoch's rate and when to stop; the
            // servers keep the best epoch's model (README "How a run goes").
            var schedule = try LearningRateSchedule.load(runDir: runDir)
            guard epoch == schedule.nextEpoch, !schedule.stopped else {
                throw ScenePSError.invalidArgument(schedule.stopped
                    ? "\(runDir)/\(LearningRateSchedule.fileName): the run already stopped after epoch \(schedule.epochs.count)"
                    : "\(runDir)/\(LearningRateSchedule.fileName) has \(schedule.epochs.count) epoch(s) recorded: --epoch must be \(schedule.nextEpoch), got \(epoch)")
            }
            let decision = schedule.record(epoch: epoch, validAUC: summary.validAUC, settings: .init(cfg.training))
            if decision.saveBest { try store.snapshot(.save, name: LearningRateSchedule.bestSnapshot) }
            if decision.restoreBest { try store.snapshot(.restore, name: LearningRateSchedule.bestSnapshot) }
            try schedule.save(runDir: runDir)
            print(Self.describe(schedule, decay: cfg.training.lrDecay))

            let bestEpoch = schedule.bestEpoch ?? epoch
            var final = bestEpoch == epoch ? summary
                : try JSONFile.read(RunSummary.self, from: (epochsDir as NSString).appendingPathComponent("epoch-\(bestEpoch).json"))
            final.bestEpoch = bestEpoch
            final.epochsTrained = epoch
            final.trainExamples = summary.trainExamples
            final.examplesPerSec = summary.examplesPerSec
            final.wallSeconds = summary.wallSeconds
            final.schedule = schedule.epochs
            let path = (runDir as NSString).appendingPathComponent("summary.json")
            try JSONFile.write(final, to: path)
            let stop = decision.stop
            if stop {
                print("\nresult: epoch \(bestEpoch) of \(epoch), chosen by validation AUC; test metrics (\(path)):")
                print(final.table())
            } else {
                print("best epoch so far: \(bestEpoch)" + (final.validAUC.map { String(format: " (validation AUC %.4f)", $0) } ?? ""))
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
