import Foundation
import Logging
import ScenePSClient
import ScenePSCore
import ScenePSData
import ScenePSTransport
import ScenePSWorker

/// What the coordinator does when every chunk of an epoch is trained: score
/// the validation and test splits with the model the servers hold, let the
/// learning-rate schedule decide (keep, decay, go back to the best epoch,
/// stop), and write RUN_DIR/epochs/epoch-N.json and RUN_DIR/summary.json
/// (README "How a run goes").
public struct EpochEvaluation {
    public let config: ClusterConfig
    public let dataDir: String
    public let runDir: String
    public let servers: [String]
    public let logger: Logger
    /// The admin client keys the coordinator reaches the servers with (it saves and restores the best snapshot).
    public var curve: CurveClientKeys?

    public init(config: ClusterConfig, dataDir: String, runDir: String, servers: [String], logger: Logger) {
        self.config = config
        self.dataDir = dataDir
        self.runDir = runDir
        self.servers = servers
        self.logger = logger
    }

    public struct Outcome {
        public var schedule: LearningRateSchedule
        public var stop: Bool
        /// One line for the log: what the schedule decided.
        public var decision: String
        /// For people: the epoch's table, and at the end the chosen epoch's.
        public var text: String
    }

    /// `workerTimes`: the members' time reports summed (`Coordinator.workerTimes`).
    public func run(epoch: Int, journal: CoordinatorJournal, workers: [String: Int],
                    workerTimes: [String: Double] = [:]) throws -> Outcome {
        var quiet = logger
        quiet.logLevel = .warning
        let client = try PSClient.forModel(endpoints: servers, sender: "coordinator-evaluate-\(getpid())", config: config,
                                           role: "psctl", scene: "", curve: curve, logger: quiet)
        let evaluator = try Evaluator(config: config, dataDir: dataDir, client: client, logger: quiet)
        let valid = try evaluator.predict(.valid)
        let test = try evaluator.predict(.test)
        let finished = journal.epochs.filter { $0.finishedAt != nil }
        let totals = TrainingTotals(examples: finished.reduce(0) { $0 + $1.examples },
                                    seconds: finished.reduce(0) { $0 + ($1.finishedAt! - $1.startedAt) },
                                    workers: workers, startedAt: journal.startedAt)
        var summary = RunSummary(epoch: epoch, test: test, valid: valid, sceneNames: evaluator.sceneNames,
                                 training: totals, servers: servers.count, config: config, data: evaluator.manifest)
        let epochsDir = (runDir as NSString).appendingPathComponent("epochs")
        try FileManager.default.createDirectory(atPath: epochsDir, withIntermediateDirectories: true)
        try JSONFile.write(summary, to: (epochsDir as NSString).appendingPathComponent("epoch-\(epoch).json"))
        var text = [summary.table()]

        var schedule = journal.schedule
        guard epoch == schedule.nextEpoch, !schedule.stopped else {
            throw ScenePSError(.internalError, "the schedule has \(schedule.epochs.count) epoch(s) recorded, epoch \(epoch) cannot come next")
        }
        let decision = schedule.record(epoch: epoch, validAUC: summary.validAUC, settings: .init(config.training))
        if decision.saveBest { try client.snapshot(.save, name: LearningRateSchedule.bestSnapshot) }
        if decision.restoreBest {
            do { try client.snapshot(.restore, name: LearningRateSchedule.bestSnapshot) } catch {
                // After a resume from a checkpoint taken after the best epoch, its model is no longer in the
                // servers' memory: go on from the current one rather than stop.
                logger.warning("cannot go back to the best epoch's model: the servers do not hold it (resumed after it?); continuing from the current model",
                               metadata: ["epoch": "\(schedule.bestEpoch ?? 0)", "error": "\(error)"])
            }
        }
        let line = Self.describe(schedule, decay: config.training.lrDecay)
        text.append(line)

        let bestEpoch = schedule.bestEpoch ?? epoch
        var final = bestEpoch == epoch ? summary
            : try JSONFile.read(RunSummary.self, from: (epochsDir as NSString).appendingPathComponent("epoch-\(bestEpoch).json"))
        final.bestEpoch = bestEpoch
        final.epochsTrained = epoch
        final.trainExamples = summary.trainExamples
        final.examplesPerSec = summary.examplesPerSec
        final.wallSeconds = summary.wallSeconds
        final.workers = summary.workers
        // The best epoch may have been evaluated before a resume onto another server count: the job's
        // servers are the ones it ends with, like its workers.
        final.servers = summary.servers
        final.schedule = schedule.epochs
        final.leases = journal.epochs.map {
            .init(epoch: $0.epoch, chunks: $0.chunks, leased: $0.leased, done: $0.done, released: $0.released,
                  examples: $0.examples, retrained: $0.retrained, rewound: $0.rewound)
        }
        final.scaling = journal.scaling.map { .init(time: $0.time, scene: $0.scene, workers: $0.workers) }
        final.restarts = journal.restarts
        // Servers are restarted by the supervisor, which records them (they are not members).
        let supervisorFile = (runDir as NSString).appendingPathComponent("coordinator/supervisor.json")
        if let d = FileManager.default.contents(atPath: supervisorFile),
           let o = try? JSONSerialization.jsonObject(with: d) as? [String: Any] {
            for (name, n) in (o["restarts"] as? [String: Int]) ?? [:] where name.hasPrefix("server-") {
                final.restarts?[name] = n
            }
            final.recoveries = (o["recoveries"] as? [[String: String]]) ?? []
        }
        final.setWorkerTimes(workerTimes)
        final.checkpoints = journal.checkpoints.map {
            .init(name: $0.name, time: $0.time, epoch: $0.epoch, pushStallMs: $0.pushStallMs, bytes: $0.bytes, tags: $0.tags)
        }
        summary = final
        let path = (runDir as NSString).appendingPathComponent("summary.json")
        try JSONFile.write(final, to: path)
        if decision.stop {
            text.append("\nresult: epoch \(bestEpoch) of \(epoch), chosen by validation AUC; test metrics (\(path)):")
            text.append(final.table())
        } else {
            text.append("best epoch so far: \(bestEpoch)" + (final.validAUC.map { String(format: " (validation AUC %.4f", $0) } ?? "")
                        + (final.validAUC == nil ? "" : final.validAUCSE.map { String(format: " ± %.4f)", $0) } ?? ")"))
        }
        return Outcome(schedule: schedule, stop: decision.stop, decision: line, text: text.joined(separator: "\n"))
    }

    /// One line on what the schedule decided after its last epoch.
    public static func describe(_ s: LearningRateSchedule, decay: Double) -> String {
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
}
