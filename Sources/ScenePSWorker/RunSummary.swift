import Foundation
import ScenePSCore
import ScenePSData

/// What training did up to an epoch, for `summary.json` (the coordinator
/// counts it from the leases workers report).
public struct TrainingTotals: Sendable {
    public var examples: Int
    /// Training time: every epoch from its first lease to its last chunk done.
    public var seconds: Double
    /// Workers per scene when the epoch ended.
    public var workers: [String: Int]
    /// When the job started (Unix seconds).
    public var startedAt: Double
    public init(examples: Int, seconds: Double, workers: [String: Int], startedAt: Double) {
        self.examples = examples
        self.seconds = seconds
        self.workers = workers
        self.startedAt = startedAt
    }
}

/// RUN_DIR/summary.json. Its fields are an interface users and scripts build
/// on: add fields, never rename or remove them.
public struct RunSummary: Codable, Sendable {
    /// Test metrics per scene and overall (ScenePSData's `MetricsReport`:
    /// auc, gauc, logloss, examples, oracle_auc, cold).
    public var scenes: [String: SceneMetrics]
    public var overall: SceneMetrics
    public var examplesPerSec: Double
    public var wallSeconds: Double
    public var servers: Int
    public var workers: [String: Int]
    public var trainExamples: Int
    public var model: String
    public var ablation: String
    /// The epoch these test metrics belong to, and its validation AUC (null without a validation split).
    public var epoch: Int
    public var validAUC: Double?
    /// Standard error of `validAUC` (grouped jackknife over users, `Evaluation.aucStandardError`): two
    /// epochs' validation AUCs closer than about twice this are not told apart by the validation set
    /// (docs/MODEL-SELECTION.md). Null without a validation split.
    public var validAUCSE: Double?
    public var validScenes: [String: Double]?
    /// Set in summary.json: the epoch chosen by validation AUC, and how many were trained.
    public var bestEpoch: Int?
    public var epochsTrained: Int?
    /// Bad rows skipped in preparation (`--skip-bad-rows`): file → reason → count; nil when none.
    public var skippedRows: [String: [String: Int]]?
    /// The catalogue given to preparation, if any.
    public var catalogue: CatalogueSummary?
    /// Set in summary.json: every epoch's rate, validation AUC and what the schedule decided.
    public var schedule: [LearningRateSchedule.EpochRecord]?
    /// Set in summary.json: per epoch, chunks leased, done and re-leased (leases taken back from dead workers).
    public var leases: [LeaseCounts]?
    /// Set in summary.json: every change of a scene's pool (psctl scale).
    public var scaling: [ScalingRecord]?
    /// Set in summary.json: process name → times it was restarted.
    public var restarts: [String: Int]?
    /// Set in summary.json: every server restored from a checkpoint after one died: process, policy
    /// (partial: the dead one only; global: every server, one entry each), checkpoint, time, seconds of its
    /// pushes undone, and the pushes undone when known (the recovery debt; docs/CHECKPOINTS.md).
    public var recoveries: [[String: String]]?
    /// Set in summary.json: the checkpoints taken so far (name, time, epoch, push stall, size).
    public var checkpoints: [CheckpointSummary]?
    /// Set in summary.json: the workers' seconds per step stage, summed over every worker of the job up to
    /// its last report (`StepTimes`: batch, pull_send, gather, compute, scatter, push_send, other).
    public var workerSeconds: [String: Double]?
    /// Set in summary.json: the workers' seconds waiting, by reason (pull, push, align, lease).
    public var waits: [String: Double]?
    /// Set in summary.json: the workers' stage seconds over stage and wait seconds (1 = never waited).
    public var busyFraction: Double?
    /// Set in summary.json: what the step pipeline did, summed over the workers: `steps`, `stale_steps`
    /// (steps whose rows may miss one of the worker's own pushes: pulled before the previous push was
    /// acknowledged, or prefetched before the current one was sent) and `stale_pushes` (those pushes).
    public var pipeline: [String: Double]?

    /// Fills `worker_seconds`, `waits`, `busy_fraction` and `pipeline` from summed `StepTimes` reports.
    public mutating func setWorkerTimes(_ times: [String: Double]) {
        guard !times.isEmpty else { return }
        var stages: [String: Double] = [:], waits: [String: Double] = [:], counts: [String: Double] = [:]
        for (k, v) in times {
            if k.hasPrefix("wait.") { waits[String(k.dropFirst(5))] = v }
            else if k.hasPrefix("count.") { counts[String(k.dropFirst(6))] = v }
            else { stages[k] = v }
        }
        let busy = stages.values.reduce(0, +), waited = waits.values.reduce(0, +)
        workerSeconds = stages
        self.waits = waits
        busyFraction = busy + waited > 0 ? busy / (busy + waited) : nil
        pipeline = counts
    }

    public struct CheckpointSummary: Codable, Sendable, Equatable {
        public var name: String
        public var time: Double
        public var epoch: Int
        public var pushStallMs: Double
        public var bytes: UInt64
        public var tags: [String]
        public init(name: String, time: Double, epoch: Int, pushStallMs: Double, bytes: UInt64, tags: [String]) {
            self.name = name
            self.time = time
            self.epoch = epoch
            self.pushStallMs = pushStallMs
            self.bytes = bytes
            self.tags = tags
        }
        enum CodingKeys: String, CodingKey { case name, time, epoch, bytes, tags, pushStallMs = "push_stall_ms" }
    }

    public struct LeaseCounts: Codable, Sendable, Equatable {
        public var epoch: Int
        public var chunks: Int
        public var leased: Int
        public var done: Int
        public var released: Int
        public var examples: Int
        /// Examples a dead worker had trained of a chunk that was then leased again (so trained twice).
        public var retrained: Int
        /// Chunks done and then undone by a global rollback (trained again; their examples are in `retrained`).
        public var rewound: Int?
        enum CodingKeys: String, CodingKey { case epoch, chunks, leased, done, released, examples, retrained, rewound }
        public init(epoch: Int, chunks: Int, leased: Int, done: Int, released: Int, examples: Int, retrained: Int,
                    rewound: Int? = nil) {
            self.rewound = rewound
            self.epoch = epoch
            self.chunks = chunks
            self.leased = leased
            self.done = done
            self.released = released
            self.examples = examples
            self.retrained = retrained
        }
    }

    public struct ScalingRecord: Codable, Sendable, Equatable {
        /// Unix seconds.
        public var time: Double
        public var scene: String
        public var workers: Int
        public init(time: Double, scene: String, workers: Int) {
            self.time = time
            self.scene = scene
            self.workers = workers
        }
    }

    /// `summary.json`'s `catalogue`: what preparation found in the item catalogue.
    public struct CatalogueSummary: Codable, Sendable, Equatable {
        public var items: Int
        public var unseenItems: Int
        public var logItemsNotListed: Int
        public var repeatedListings: Int
        public var categoryDisagreements: Int

        public init(_ c: DatasetManifest.CatalogueInfo) {
            items = c.items
            unseenItems = c.unseenItems
            logItemsNotListed = c.logItemsNotListed
            repeatedListings = c.repeatedListings
            categoryDisagreements = c.categoryDisagreements
        }

        enum CodingKeys: String, CodingKey {
            case items
            case unseenItems = "unseen_items", logItemsNotListed = "log_items_not_listed"
            case repeatedListings = "repeated_listings", categoryDisagreements = "category_disagreements"
        }
    }

    enum CodingKeys: String, CodingKey {
        case scenes, overall, servers, workers, model, ablation, epoch
        case examplesPerSec = "examples_per_sec", wallSeconds = "wall_seconds", trainExamples = "train_examples"
        case validAUC = "valid_auc", validAUCSE = "valid_auc_se", validScenes = "valid_scenes_auc", bestEpoch = "best_epoch", epochsTrained = "epochs_trained"
        case skippedRows = "skipped_rows", catalogue, schedule, leases, scaling, restarts, checkpoints, recoveries
        case workerSeconds = "worker_seconds", waits, busyFraction = "busy_fraction", pipeline
    }

    /// The summary of one epoch: test metrics, validation AUC, throughput so far.
    public init(epoch: Int, test: MetricsInput, valid: MetricsInput?, sceneNames: [String],
                training: TrainingTotals, servers: Int, config: ClusterConfig, data: DatasetManifest? = nil) {
        let t = MetricsReport(test, sceneNames: sceneNames)
        (scenes, overall) = (t.scenes, t.overall)
        self.epoch = epoch
        if let valid, valid.count > 0 {
            let v = MetricsReport(valid, sceneNames: sceneNames)
            validAUC = v.overall.auc
            let se = Evaluation.aucStandardError(labels: valid.label, scores: valid.probability, users: valid.user)
            validAUCSE = se.isFinite ? se : nil
            validScenes = v.scenes.compactMapValues(\.auc)
        }
        trainExamples = training.examples
        examplesPerSec = training.seconds > 0 ? Double(training.examples) / training.seconds : 0
        wallSeconds = Date().timeIntervalSince1970 - training.startedAt
        self.servers = servers
        workers = training.workers
        model = config.model.kind.rawValue
        ablation = config.model.ablation.rawValue
        if let data {
            let skipped = BadRowLog.countsByFile(data.badRows ?? [])
            skippedRows = skipped.isEmpty ? nil : skipped
            catalogue = data.catalogue.map(CatalogueSummary.init)
        }
    }

    /// A table for people: one row per scene, then overall.
    public func table() -> String {
        func f(_ x: Double?) -> String { x.map { $0.isNaN ? "   -  " : String(format: "%.4f", $0) } ?? "   -  " }
        var lines = ["scene            examples    auc     gauc    logloss  oracle   cold-auc"]
        let rows = scenes.keys.sorted().map { ($0, scenes[$0]!) } + [("overall", overall)]
        for (name, m) in rows {
            let padded = name.count >= 15 ? name : name + String(repeating: " ", count: 15 - name.count)
            lines.append(padded + String(format: " %9d  ", m.examples)
                         + [f(m.auc), f(m.gauc), f(m.logloss), f(m.oracleAUC), f(m.cold.auc)].joined(separator: "  "))
        }
        lines.append(String(format: "epoch %d%@: trained on %d examples at %.0f examples/s with %d servers and %d workers",
                            epoch, validAUC.map { String(format: " (validation AUC %.4f)", $0) as NSString } ?? "" as NSString,
                            trainExamples, examplesPerSec, servers, workers.values.reduce(0, +)))
        return lines.joined(separator: "\n")
    }
}
