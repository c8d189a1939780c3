import Foundation
import ScenePSCore
import XCTest
@testable import ScenePSData

final class EvaluationTests: XCTestCase {
    func testAUCHandComputedWithTies() {
        // Pairs (pos, neg): (0.9,0.1)=1 (0.9,0.5)=1 (0.5,0.1)=1 (0.5,0.5)=0.5 -> 3.5/4
        XCTAssertEqual(Evaluation.auc(labels: [1, 0, 1, 0], scores: [0.9, 0.1, 0.5, 0.5]), 0.875, accuracy: 1e-12)
        XCTAssertEqual(Evaluation.auc(labels: [1, 0], scores: [0.2, 0.3]), 0, accuracy: 1e-12)
        XCTAssertEqual(Evaluation.auc(labels: [1, 0, 1, 0], scores: [0.5, 0.5, 0.5, 0.5]), 0.5, accuracy: 1e-12)
        XCTAssertTrue(Evaluation.auc(labels: [1, 1], scores: [0.2, 0.3]).isNaN)
        XCTAssertTrue(Evaluation.auc(labels: [], scores: []).isNaN)
    }

    func testAUCMatchesPairCountingOnRandomData() {
        var rng = SplitMix64(seed: 21)
        for n in [2, 7, 39, 300] {
            let labels = (0..<n).map { k in Float(k < 2 ? k : Int(rng.next() % 2)) }
            let scores = (0..<n).map { _ in Double(rng.next() % 10) / 10 }   // many ties
            var wins = 0.0, pairs = 0.0
            for i in 0..<n where labels[i] == 1 {
                for j in 0..<n where labels[j] == 0 {
                    pairs += 1
                    wins += scores[i] > scores[j] ? 1 : scores[i] == scores[j] ? 0.5 : 0
                }
            }
            XCTAssertEqual(Evaluation.auc(labels: labels, scores: scores), wins / pairs, accuracy: 1e-12, "n \(n)")
        }
    }

    func testGAUCHandComputed() {
        // user A: AUC 0.875 over 4 rows; user B: AUC 0 over 2 rows; user C: one class, skipped.
        let users: [UInt64] = [1, 2, 1, 3, 1, 2, 1, 3, 3]
        let labels: [Float] = [1, 1, 0, 1, 1, 0, 0, 1, 1]
        let scores: [Double] = [0.9, 0.2, 0.1, 0.4, 0.5, 0.3, 0.5, 0.1, 0.7]
        XCTAssertEqual(Evaluation.gauc(labels: labels, scores: scores, users: users), (0.875 * 4 + 0 * 2) / 6, accuracy: 1e-12)
        XCTAssertTrue(Evaluation.gauc(labels: [1, 0], scores: [0.1, 0.2], users: [1, 2]).isNaN)
    }

    func testLoglossClamped() {
        XCTAssertEqual(Evaluation.logloss(labels: [1, 0], probabilities: [0.8, 0.4]), -(log(0.8) + log(0.6)) / 2, accuracy: 1e-12)
        XCTAssertEqual(Evaluation.logloss(labels: [1], probabilities: [0]), -log(1e-7), accuracy: 1e-9)
        XCTAssertEqual(Evaluation.logloss(labels: [0], probabilities: [1]), -log(1e-7), accuracy: 1e-6)
        XCTAssertTrue(Evaluation.logloss(labels: [], probabilities: []).isNaN)
    }

    func testReportPerSceneOverallOracleAndCold() throws {
        var input = MetricsInput()
        input.scene = [0, 0, 0, 0, 1, 1]
        input.label = [1, 0, 1, 0, 1, 1]
        input.probability = [0.9, 0.1, 0.5, 0.5, 0.6, 0.7]
        input.user = [1, 1, 1, 1, 2, 2]
        input.truth = [0.8, 0.2, 0.3, 0.4, 0.5, 0.5]
        input.cold = [true, true, false, false, true, false]
        let r = MetricsReport(input, sceneNames: ["home", "shop"])
        XCTAssertEqual(Set(r.scenes.keys), ["home", "shop"])
        let home = try XCTUnwrap(r.scenes["home"])
        XCTAssertEqual(home.examples, 4)
        XCTAssertEqual(home.auc!, 0.875, accuracy: 1e-12)
        XCTAssertEqual(home.gauc!, 0.875, accuracy: 1e-12)
        XCTAssertEqual(home.oracleAUC!, 0.75, accuracy: 1e-12)   // truth 0.8,0.3 vs 0.2,0.4: 3 of 4 pairs
        XCTAssertEqual(home.cold, ColdMetrics(auc: 1, examples: 2))
        let shop = try XCTUnwrap(r.scenes["shop"])
        XCTAssertNil(shop.auc, "one class")
        XCTAssertEqual(shop.cold.examples, 1)
        XCTAssertEqual(r.overall.examples, 6)
        // Overall: positives 0.9,0.5,0.6,0.7 vs negatives 0.1,0.5 -> (2 + 1.5 + 2 + 2) / 8
        XCTAssertEqual(r.overall.auc!, 7.5 / 8, accuracy: 1e-12)
        let json = try r.jsonString()
        XCTAssertTrue(json.contains("\"oracle_auc\""), json)
        XCTAssertTrue(json.contains("\"auc\" : null"), json)
        let back = try JSONDecoder().decode(MetricsReport.self, from: r.jsonData())
        XCTAssertEqual(back, r)

        // Without truth: no oracle_auc key.
        input.truth = [Float](repeating: .nan, count: 6)
        let noTruth = MetricsReport(input, sceneNames: ["home", "shop"])
        XCTAssertNil(noTruth.overall.oracleAUC)
        XCTAssertFalse(try noTruth.jsonString().contains("oracle_auc"))
    }

    func testMetricsInputFromBatch() throws {
        var batch = SampleBatch(lLong: 2, capacity: 2)
        batch.count = 2
        batch.user = [5, 6]; batch.item = [1, 2]; batch.category = [1, 1]; batch.scene = [1, 0]
        batch.label = [1, 0]; batch.row = [0, 1]; batch.truth = [.nan, 0.5]; batch.cold = [false, true]
        batch.histLen = [0, 0]; batch.histItem = [0, 0, 0, 0]; batch.histCategory = [0, 0, 0, 0]; batch.histScene = [0, 0, 0, 0]
        var input = MetricsInput()
        input.append(batch: batch, probabilities: [0.7, 0.2])
        XCTAssertEqual(input.count, 2)
        XCTAssertEqual(input.scene, [1, 0])
        XCTAssertEqual(input.user, [5, 6])
        XCTAssertEqual(input.cold, [false, true])
    }

    /// Hanley & McNeil's standard error of an AUC over independent rows.
    func hanleyMcNeil(_ a: Double, positives: Double, negatives: Double) -> Double {
        let q1 = a / (2 - a), q2 = 2 * a * a / (1 + a)
        return ((a * (1 - a) + (positives - 1) * (q1 - a * a) + (negatives - 1) * (q2 - a * a)) / (positives * negatives)).squareRoot()
    }

    func testAUCStandardErrorSeesUsersNotRows() {
        var rng = SplitMix64(seed: 3)
        // Independent rows (one user each): the jackknife agrees with Hanley-McNeil.
        var labels: [Float] = [], scores: [Double] = [], users: [UInt64] = []
        for r in 0..<4_000 {
            let y: Float = rng.nextUnit() < 0.5 ? 1 : 0
            labels.append(y); scores.append(rng.nextUnit() + 0.3 * Double(y)); users.append(UInt64(r))
        }
        let a = Evaluation.auc(labels: labels, scores: scores)
        let pos = Double(labels.filter { $0 == 1 }.count), neg = Double(labels.count) - pos
        let hm = hanleyMcNeil(a, positives: pos, negatives: neg)
        let se = Evaluation.aucStandardError(labels: labels, scores: scores, users: users)
        XCTAssertEqual(se / hm, 1, accuracy: 0.5, "independent rows: jackknife \(se), Hanley-McNeil \(hm)")

        // The same number of rows from 40 users whose rows share a score offset and a positive rate:
        // the rows are not independent, and the error is several times the rows' one.
        labels = []; scores = []; users = []
        for u in 0..<40 {
            let rate = rng.nextUnit(), offset = 0.5 * (rng.nextUnit() - 0.5)
            for _ in 0..<100 {
                let y: Float = rng.nextUnit() < rate ? 1 : 0
                labels.append(y); scores.append(rng.nextUnit() + 0.3 * Double(y) + offset); users.append(UInt64(1_000 + u))
            }
        }
        let a2 = Evaluation.auc(labels: labels, scores: scores)
        let p2 = Double(labels.filter { $0 == 1 }.count)
        let hm2 = hanleyMcNeil(a2, positives: p2, negatives: Double(labels.count) - p2)
        let se2 = Evaluation.aucStandardError(labels: labels, scores: scores, users: users)
        XCTAssertGreaterThan(se2, 2 * hm2, "clustered rows: jackknife \(se2), Hanley-McNeil \(hm2)")

        // Perfect separation: no spread; one user only: no estimate.
        XCTAssertEqual(Evaluation.aucStandardError(labels: [0, 1, 0, 1, 0, 1], scores: [0.1, 0.9, 0.2, 0.8, 0.3, 0.7],
                                                   users: [1, 2, 3, 4, 5, 6], groups: 3), 0, accuracy: 1e-12)
        XCTAssertTrue(Evaluation.aucStandardError(labels: [0, 1, 0, 1], scores: [0.1, 0.9, 0.4, 0.3], users: [7, 7, 7, 7]).isNaN)
    }
}
