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
    public struct Cold: Codable, Sendable {
        public var auc: Double
        public var examples: Int

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(auc.isNaN ? nil : auc, forKey: .auc)   // JSON has no NaN: undefined AUC is null
            try c.encode(examples, forKey: .examples)
        }
        public init(auc: Double, examples: Int) { self.auc = auc; self.examples = examples }
        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            auc = try c.decodeIfPresent(Double.self, forKey: .auc) ?? .nan
            examples = try c.decode(Int.self, forKey: .examples)
        }
        enum CodingKeys: String, CodingKey { case auc, examples }
    }

    public struct Metrics: Codable, Sendable {
        public var auc: Double
        public var gauc: Double
        public var logloss: Double
        public var examples: Int
        public var oracleAUC: Double?
        public var cold: Cold?

        enum CodingKeys: String, CodingKey {
            case auc, gauc, logloss, examples, cold
            case oracleAUC = "oracle_auc"
        }

        public init(auc: Double, gauc: Double, logloss: Double, examples: Int) {
            self.auc = auc; self.gauc = gauc; self.logloss = logloss; self.examples = examples
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            auc = try c.decodeIfPresent(Double.self, forKey: .auc) ?? .nan
            gauc = try c.decodeIfPresent(Double.self, forKey: .gauc) ?? .nan
            logloss = try c.decodeIfPresent(Double.self, forKey: .logloss) ?? .nan
            examples = try c.decode(Int.self, forKey: .examples)
            oracleAUC = try c.decodeIfPresent(Double.self, forKey: .oracleAUC)
            cold = try c.decodeIfPresent(Cold.self, forKey: .cold)
        }

        /// Undefined metrics (one class only, no rows) are written as null.
        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            func v(_ x: Double) -> Double? { x.isNaN ? nil : x }
            try c.encode(v(auc), forKey: .auc)
            try c.encode(v(gauc), forKey: .gauc)
            try c.encode(v(logloss), forKey: .logloss)
            try c.encode(examples, forKey: .examples)
            try c.encodeIfPresent(oracleAUC.flatMap(v), forKey: .oracleAUC)
            try c.encodeIfPresent(cold, forKey: .cold)
        }
    }

    public var scenes: [String: Metrics]
    public var overall: Metrics
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

    enum CodingKeys: String, CodingKey {
        case scenes, overall, servers, workers, model, ablation, epoch
        case examplesPerSec = "examples_per_sec", wallSeconds = "wall_seconds", trainExamples = "train_examples"
        case validAUC = "valid_auc", validScenes = "valid_scenes_auc", bestEpoch = "best_epoch", epochsTrained = "epochs_trained"
    }

    /// Per-scene and overall metrics of a set of predictions.
    public static func metrics(_ p: Evaluator.Predictions, sceneNames: [String]) -> (scenes: [String: Metrics], overall: Metrics) {
        func metrics(_ idx: [Int]) -> Metrics {
            let labels = idx.map { p.label[$0] }
            let probs = idx.map { p.probability[$0] }
            var m = Metrics(auc: Evaluation.auc(labels: labels, scores: probs),
                            gauc: Evaluation.gauc(labels: labels, scores: probs, users: idx.map { p.user[$0] }),
                            logloss: Evaluation.logloss(labels: labels, probabilities: probs),
                            examples: idx.count)
            if !idx.isEmpty, idx.allSatisfy({ !p.truth[$0].isNaN }) {
                m.oracleAUC = Evaluation.auc(labels: labels, scores: idx.map { Double(p.truth[$0]) })
            }
            let cold = idx.filter { p.cold[$0] }
            m.cold = Cold(auc: Evaluation.auc(labels: cold.map { p.label[$0] }, scores: cold.map { p.probability[$0] }),
                          examples: cold.count)
            return m
        }
        var byScene = [[Int]](repeating: [], count: sceneNames.count)
        for i in p.scene.indices { byScene[Int(p.scene[i])].append(i) }
        var scenes: [String: Metrics] = [:]
        for (s, name) in sceneNames.enumerated() { scenes[name] = metrics(byScene[s]) }
        return (scenes, metrics(Array(p.scene.indices)))
    }

    /// The summary of one epoch: test metrics, validation AUC, throughput so far.
    public init(epoch: Int, test: Evaluator.Predictions, valid: Evaluator.Predictions?, sceneNames: [String],
                reports: [WorkerReport], servers: Int, config: ClusterConfig) {
        (scenes, overall) = Self.metrics(test, sceneNames: sceneNames)
        self.epoch = epoch
        if let valid, !valid.label.isEmpty {
            let v = Self.metrics(valid, sceneNames: sceneNames)
            validAUC = v.overall.auc.isNaN ? nil : v.overall.auc
            validScenes = v.scenes.compactMapValues { $0.auc.isNaN ? nil : $0.auc }
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
    }

    /// A table for people: one row per scene, then overall.
    public func table() -> String {
        func f(_ x: Double?) -> String { x.map { $0.isNaN ? "   -  " : String(format: "%.4f", $0) } ?? "   -  " }
        var lines = ["scene            examples    auc     gauc    logloss  oracle   cold-auc"]
        let rows = scenes.keys.sorted().map { ($0, scenes[$0]!) } + [("overall", overall)]
        for (name, m) in rows {
            lines.append(String(format: "%-15@ %9d  ", name as NSString, m.examples)
                         + [f(m.auc), f(m.gauc), f(m.logloss), f(m.oracleAUC), f(m.cold?.auc)].joined(separator: "  "))
        }
        lines.append(String(format: "epoch %d%@: trained on %d examples at %.0f examples/s with %d servers and %d workers",
                            epoch, validAUC.map { String(format: " (validation AUC %.4f)", $0) as NSString } ?? "" as NSString,
                            trainExamples, examplesPerSec, servers, workers.values.reduce(0, +)))
        return lines.joined(separator: "\n")
    }
}
