import Foundation
import ScenePSCore

/// Ranking and calibration metrics. Pure functions over arrays, O(n log n).
public enum Evaluation {
    /// Probabilities are clamped to [eps, 1 − eps] in `logloss`.
    public static let loglossEpsilon = 1e-7

    /// Area under the ROC curve with tied scores given their average rank
    /// (the Mann–Whitney statistic, as the reference `auc()`). NaN when the
    /// labels hold one class only (or there are none).
    public static func auc(labels: [Float], scores: [Double]) -> Double {
        precondition(labels.count == scores.count, "auc: \(labels.count) labels, \(scores.count) scores")
        let idx = Array(0..<labels.count)
        return auc(labels: labels, scores: scores, subset: idx[...])
    }

    /// AUC over the rows `subset` (any order; reordered internally).
    static func auc(labels: [Float], scores: [Double], subset: ArraySlice<Int>) -> Double {
        var order = Array(subset)
        let n = order.count
        var positives = 0.0
        for r in order where labels[r] == 1 { positives += 1 }
        let negatives = Double(n) - positives
        guard positives > 0 && negatives > 0 else { return .nan }
        scores.withUnsafeBufferPointer { s in
            order.sort { s[$0] < s[$1] }
        }
        // Sum of the (average) ranks of the positives, ranks from 1.
        var rankSum = 0.0
        var i = 0
        while i < n {
            var j = i
            let v = scores[order[i]]
            while j + 1 < n && scores[order[j + 1]] == v { j += 1 }
            let avg = Double(i + j + 2) / 2
            var pos = 0.0
            for k in i...j where labels[order[k]] == 1 { pos += 1 }
            rankSum += avg * pos
            i = j + 1
        }
        return (rankSum - positives * (positives + 1) / 2) / (positives * negatives)
    }

    /// Standard error of `auc(labels:scores:)` by the grouped (delete-a-group)
    /// jackknife, users dealt to `groups` groups by their key: rows of one user
    /// fall together, so a validation set of few users with many rows each (a
    /// ratings log's) gets the wide error it has, not the one of as many
    /// independent rows. NaN when fewer than two groups leave both classes.
    public static func aucStandardError(labels: [Float], scores: [Double], users: [UInt64], groups: Int = 20) -> Double {
        precondition(labels.count == scores.count && labels.count == users.count && groups >= 2,
                     "aucStandardError: \(labels.count) labels, \(scores.count) scores, \(users.count) users, \(groups) groups")
        var members = [[Int]](repeating: [], count: groups)
        for r in 0..<users.count { members[Int(KeyHash.mix64(users[r]) % UInt64(groups))].append(r) }
        var estimates: [Double] = []
        for g in 0..<groups where !members[g].isEmpty {
            var keep: [Int] = []
            keep.reserveCapacity(labels.count - members[g].count)
            for h in 0..<groups where h != g { keep.append(contentsOf: members[h]) }
            let a = auc(labels: labels, scores: scores, subset: keep[...])
            if a.isFinite { estimates.append(a) }
        }
        let n = Double(estimates.count)
        guard n >= 2 else { return .nan }
        let mean = estimates.reduce(0, +) / n
        return ((n - 1) / n * estimates.reduce(0) { $0 + ($1 - mean) * ($1 - mean) }).squareRoot()
    }

    /// Group AUC: the AUC of each user's rows, weighted by the user's number
    /// of rows (impressions); users whose rows hold one class are skipped.
    /// NaN when no user has both classes.
    public static func gauc(labels: [Float], scores: [Double], users: [UInt64]) -> Double {
        precondition(labels.count == scores.count && labels.count == users.count,
                     "gauc: \(labels.count) labels, \(scores.count) scores, \(users.count) users")
        var order = Array(0..<labels.count)
        users.withUnsafeBufferPointer { u in order.sort { u[$0] < u[$1] || (u[$0] == u[$1] && $0 < $1) } }
        var weighted = 0.0, weight = 0.0
        var i = 0
        while i < order.count {
            var j = i
            while j + 1 < order.count && users[order[j + 1]] == users[order[i]] { j += 1 }
            let a = auc(labels: labels, scores: scores, subset: order[i...j])
            if !a.isNaN {
                weighted += a * Double(j - i + 1)
                weight += Double(j - i + 1)
            }
            i = j + 1
        }
        return weight > 0 ? weighted / weight : .nan
    }

    /// Mean binary cross-entropy with p clamped to [1e-7, 1 − 1e-7]. NaN when empty.
    public static func logloss(labels: [Float], probabilities: [Double]) -> Double {
        precondition(labels.count == probabilities.count, "logloss: \(labels.count) labels, \(probabilities.count) probabilities")
        guard !labels.isEmpty else { return .nan }
        var sum = 0.0
        for k in 0..<labels.count {
            let p = min(max(probabilities[k], loglossEpsilon), 1 - loglossEpsilon)
            sum -= labels[k] == 1 ? log(p) : log(1 - p)
        }
        return sum / Double(labels.count)
    }
}

/// What the metrics of a test pass are computed from: one entry per
/// evaluated sample (all arrays the same length). `truth` is NaN where the
/// true probability is unknown; `cold` marks target items never seen in training.
public struct MetricsInput: Sendable {
    public var scene: [Int32]
    public var label: [Float]
    public var probability: [Double]
    public var user: [UInt64]
    public var truth: [Float]
    public var cold: [Bool]

    public init(scene: [Int32] = [], label: [Float] = [], probability: [Double] = [],
                user: [UInt64] = [], truth: [Float] = [], cold: [Bool] = []) {
        self.scene = scene; self.label = label; self.probability = probability
        self.user = user; self.truth = truth; self.cold = cold
    }

    public var count: Int { label.count }

    /// Appends the predictions `probabilities` for the samples of `batch`.
    public mutating func append(batch: SampleBatch, probabilities: [Double]) {
        precondition(probabilities.count == batch.count, "\(probabilities.count) probabilities for \(batch.count) samples")
        scene += batch.scene; label += batch.label; probability += probabilities
        user += batch.user; truth += batch.truth; cold += batch.cold
    }

    /// Merges another input (e.g. from another worker).
    public mutating func append(_ other: MetricsInput) {
        scene += other.scene; label += other.label; probability += other.probability
        user += other.user; truth += other.truth; cold += other.cold
    }
}

/// AUC and size of the cold-start subset.
public struct ColdMetrics: Codable, Sendable, Equatable {
    public var auc: Double?
    public var examples: Int
}

/// Metrics of one scene or of all of them. Non-finite values (e.g. AUC of a
/// one-class set) are nil and encoded as JSON null.
public struct SceneMetrics: Codable, Sendable, Equatable {
    public var auc: Double?
    public var gauc: Double?
    public var logloss: Double?
    public var examples: Int
    /// AUC of the true probabilities on the same rows (rows with known truth); nil without truth.
    public var oracleAUC: Double?
    public var cold: ColdMetrics

    enum CodingKeys: String, CodingKey {
        case auc, gauc, logloss, examples, cold
        case oracleAUC = "oracle_auc"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(auc, forKey: .auc)
        try c.encode(gauc, forKey: .gauc)
        try c.encode(logloss, forKey: .logloss)
        try c.encode(examples, forKey: .examples)
        try c.encodeIfPresent(oracleAUC, forKey: .oracleAUC)
        try c.encode(cold, forKey: .cold)
    }
}

/// Per-scene and overall metrics, ready for `summary.json`:
/// `{"scenes": {"home": {...}, ...}, "overall": {...}}`.
public struct MetricsReport: Codable, Sendable, Equatable {
    public var scenes: [String: SceneMetrics]
    public var overall: SceneMetrics

    /// Builds the report; `sceneNames[k]` names scene index k, and every
    /// named scene is reported (with no examples, its metrics are null).
    /// Samples whose scene index has no name are counted under "scene-<k>".
    public init(_ input: MetricsInput, sceneNames: [String]) {
        let n = input.count
        precondition(input.scene.count == n && input.probability.count == n && input.user.count == n
                     && input.truth.count == n && input.cold.count == n, "MetricsInput arrays differ in length")
        var byScene: [Int32: [Int]] = [:]
        for k in sceneNames.indices { byScene[Int32(k)] = [] }
        for k in 0..<n { byScene[input.scene[k], default: []].append(k) }
        var scenes: [String: SceneMetrics] = [:]
        for (s, rows) in byScene {
            let name = (s >= 0 && Int(s) < sceneNames.count) ? sceneNames[Int(s)] : "scene-\(s)"
            scenes[name] = Self.metrics(input, rows: rows)
        }
        self.scenes = scenes
        overall = Self.metrics(input, rows: Array(0..<n))
    }

    static func finite(_ x: Double) -> Double? { x.isFinite ? x : nil }

    static func metrics(_ input: MetricsInput, rows: [Int]) -> SceneMetrics {
        let labels = rows.map { input.label[$0] }
        let p = rows.map { input.probability[$0] }
        let users = rows.map { input.user[$0] }
        let withTruth = rows.filter { !input.truth[$0].isNaN }
        var oracle: Double?
        if !withTruth.isEmpty {
            oracle = finite(Evaluation.auc(labels: withTruth.map { input.label[$0] },
                                           scores: withTruth.map { Double(input.truth[$0]) }))
        }
        let coldRows = rows.filter { input.cold[$0] }
        let coldAUC = Evaluation.auc(labels: coldRows.map { input.label[$0] },
                                     scores: coldRows.map { input.probability[$0] })
        return SceneMetrics(auc: finite(Evaluation.auc(labels: labels, scores: p)),
                            gauc: finite(Evaluation.gauc(labels: labels, scores: p, users: users)),
                            logloss: finite(Evaluation.logloss(labels: labels, probabilities: p)),
                            examples: rows.count, oracleAUC: oracle,
                            cold: ColdMetrics(auc: finite(coldAUC), examples: coldRows.count))
    }

    /// Pretty JSON with sorted keys.
    public func jsonData() throws -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try enc.encode(self)
    }

    public func jsonString() throws -> String {
        String(decoding: try jsonData(), as: UTF8.self)
    }
}
