import Foundation
import ScenePSCore
import ScenePSData

/// The workers' reports of one run (RUN_DIR/workers/*.json).
public enum WorkerReports {
    public static func load(runDir: String) throws -> [WorkerReport] {
        let dir = (runDir as NSString).appendingPathComponent("workers")
        let files = (FileManager.default.subpaths(atPath: dir) ?? []).filter { $0.hasSuffix(".json") }.sorted()
        return try files.map { try JSONFile.read(WorkerReport.self, from: (dir as NSString).appendingPathComponent($0)) }
    }

    /// Examples and training seconds summed over epochs; an epoch lasts from
    /// its first worker's start to its last worker's end.
    public static func throughput(_ reports: [WorkerReport]) -> (examples: Int, seconds: Double) {
        var examples = 0, seconds = 0.0
        for (_, rs) in Dictionary(grouping: reports, by: \.epoch) {
            examples += rs.reduce(0) { $0 + $1.examples }
            seconds += (rs.map(\.finishedAt).max() ?? 0) - (rs.map(\.startedAt).min() ?? 0)
        }
        return (examples, seconds)
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
        case validAUC = "valid_auc", validScenes = "valid_scenes_auc", bestEpoch = "best_epoch", epochsTrained = "epochs_trained"
        case skippedRows = "skipped_rows", catalogue, schedule
    }

    /// The summary of one epoch: test metrics, validation AUC, throughput so far.
    public init(epoch: Int, test: MetricsInput, valid: MetricsInput?, sceneNames: [String],
                reports: [WorkerReport], servers: Int, config: ClusterConfig, data: DatasetManifest? = nil) {
        let t = MetricsReport(test, sceneNames: sceneNames)
        (scenes, overall) = (t.scenes, t.overall)
        self.epoch = epoch
        if let valid, valid.count > 0 {
            let v = MetricsReport(valid, sceneNames: sceneNames)
            validAUC = v.overall.auc
            validScenes = v.scenes.compactMapValues(\.auc)
        }
        let (examples, seconds) = WorkerReports.throughput(reports)
        trainExamples = examples
        examplesPerSec = seconds > 0 ? Double(examples) / seconds : 0
        let start = reports.map(\.startedAt).min() ?? Date().timeIntervalSince1970
        wallSeconds = Date().timeIntervalSince1970 - start
        self.servers = servers
        var w: [String: Int] = [:]
        for r in reports where r.epoch == epoch { w[r.scene, default: 0] += 1 }
        workers = w
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
