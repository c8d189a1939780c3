import Foundation
import ScenePSCore
import XCTest
@testable import ScenePSData

final class GeneratorTests: XCTestCase {
    func smallOptions(seed: UInt64) -> GeneratorOptions {
        var o = GeneratorOptions()
        o.rows = 40_000; o.users = 2_000; o.items = 4_000; o.seed = seed
        return o
    }

    func testStatisticsForFixedSeed() throws {
        let dir = try makeTempDirectory(self)
        let stats = try Generator(options: smallOptions(seed: 7)).run(outDirectory: dir)
        XCTAssertEqual(stats.rows, 40_000)
        XCTAssertEqual(stats.sceneRows.reduce(0, +), 40_000)
        XCTAssertTrue((0.10...0.35).contains(stats.positiveRate), "positive rate \(stats.positiveRate)")
        let shares = [0.40, 0.25, 0.25, 0.10]
        for (s, share) in shares.enumerated() {
            let got = Double(stats.sceneRows[s]) / 40_000
            XCTAssertEqual(got, share, accuracy: 0.015, "scene \(s) share")   // sampling: sd √(p(1−p)/40000) ≤ 0.0025; 0.015 is 6 sd
        }
        XCTAssertTrue((0.70...0.95).contains(stats.oracleAUC), "oracle AUC \(stats.oracleAUC)")

        // The files agree with the stats and with each other.
        let log = try String(contentsOfFile: dir + "/log.csv", encoding: .utf8).split(separator: "\n")
        let truth = try String(contentsOfFile: dir + "/truth.csv", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(log.count, 40_001)
        XCTAssertEqual(truth.count, 40_001)
        XCTAssertEqual(log.first, "user_id,item_id,category_id,scene,timestamp,label")
        XCTAssertEqual(truth.first, "row,p")
        var lastTs = Int64.min, positives = 0, ties = 0
        var labels: [Float] = [], p: [Double] = []
        for k in 1..<log.count {
            let f = log[k].split(separator: ",")
            XCTAssertEqual(f.count, 6)
            guard f.count == 6, let ts = Int64(f[4]) else { continue }
            XCTAssertGreaterThanOrEqual(ts, lastTs, "time order")
            if ts == lastTs { ties += 1 }
            lastTs = ts
            positives += f[5] == "1" ? 1 : 0
            let t = truth[k].split(separator: ",")
            XCTAssertEqual(t.first.map(String.init), "\(k - 1)")
            labels.append(f[5] == "1" ? 1 : 0)
            p.append(Double(t[1])!)
        }
        XCTAssertEqual(positives, stats.positives)
        XCTAssertGreaterThan(ties, 0, "some equal timestamps")
        // The truth file holds p to 6 decimals: rounding reorders only near-equal scores (ties); 1e-3 in AUC.
        XCTAssertEqual(Evaluation.auc(labels: labels, scores: p), stats.oracleAUC, accuracy: 1e-3)

        // Items: the whole catalogue, every item once with a title, the log's among them.
        let items = try String(contentsOfFile: dir + "/items.csv", encoding: .utf8).split(separator: "\n").dropFirst()
        let logItems = Set(log.dropFirst().map { $0.split(separator: ",")[1] })
        let catalogue = items.map { $0.split(separator: ",")[0] }
        XCTAssertEqual(Set(catalogue).count, catalogue.count)
        XCTAssertEqual(catalogue.count, stats.itemsWritten)
        XCTAssertTrue(logItems.isSubset(of: Set(catalogue)))
        XCTAssertGreaterThan(catalogue.count, logItems.count, "the long tail the log never mentions")
        XCTAssertTrue(items.allSatisfy { $0.split(separator: ",").count == 3 && $0.split(separator: " ").count >= 3 })

        // Preparation accepts its output, and the test split has cold items.
        let r = try Preparation.run({
            var o = PreparationOptions(logPath: dir + "/log.csv", outDirectory: dir + "/prep")
            o.itemsPath = dir + "/items.csv"; o.truthPath = dir + "/truth.csv"
            return o
        }())
        XCTAssertEqual(r.manifest.scenes.map(\.name), ["home", "search", "shop", "video"])
        XCTAssertGreaterThan(r.manifest.scenes.reduce(0) { $0 + ($1.stats?.coldTestRows ?? 0) }, 0)
        XCTAssertEqual(r.rowsWithoutTruth, 0)
        XCTAssertEqual(r.manifest.catalogue?.items, stats.itemsWritten)
        XCTAssertEqual(r.manifest.catalogue?.unseenItems, stats.itemsWritten - logItems.count)
        XCTAssertEqual(r.manifest.catalogue?.logItemsNotListed, 0)
        XCTAssertEqual(r.manifest.catalogue?.categoryDisagreements, 0)
    }

    func testDeterministicFromSeed() throws {
        let a = try makeTempDirectory(self, "a"), b = try makeTempDirectory(self, "b"), c = try makeTempDirectory(self, "c")
        var o = smallOptions(seed: 3)
        o.rows = 5_000
        try Generator(options: o).run(outDirectory: a)
        try Generator(options: o).run(outDirectory: b)
        o.seed = 4
        try Generator(options: o).run(outDirectory: c)
        for f in ["log.csv", "truth.csv", "items.csv"] {
            let x = try Data(contentsOf: URL(fileURLWithPath: a + "/" + f))
            XCTAssertEqual(x, try Data(contentsOf: URL(fileURLWithPath: b + "/" + f)), f)
            XCTAssertNotEqual(x, try Data(contentsOf: URL(fileURLWithPath: c + "/" + f)), f)
        }
    }

    func testCustomScenesAndBadOptions() throws {
        let dir = try makeTempDirectory(self)
        var o = smallOptions(seed: 1)
        o.rows = 3_000
        o.scenes = [("a", 1), ("b", 1), ("c", 1), ("d", 1), ("e", 1), ("tiny", 0.05)]
        let stats = try Generator(options: o).run(outDirectory: dir)
        XCTAssertEqual(stats.sceneRows.count, 6)
        XCTAssertTrue(stats.sceneRows.allSatisfy { $0 > 0 })
        let cases: [((inout GeneratorOptions) -> Void, String)] = [
            ({ $0.rows = 0 }, "rows must be >= 1, got 0"), ({ $0.scenes = [] }, "at least one scene"),
            ({ $0.scenes = [("a,b", 1)] }, "scene name \"a,b\""), ({ $0.scenes = [("a", 0)] }, "scene a: share must be > 0"),
            ({ $0.items = 3 }, "items (3) must be >= topics"), ({ $0.scenes = [("a", 1), ("a", 2)] }, "scene names must differ"),
        ]
        for (bad, text) in cases {
            var x = GeneratorOptions()
            bad(&x)
            XCTAssertThrowsError(try Generator(options: x), text) { error in
                let e = error as? ScenePSError
                XCTAssertEqual(e?.code, .invalidArgument, "\(error)")
                XCTAssertTrue(e?.message.contains(text) ?? false, "'\(error)' should say '\(text)'")
            }
        }
    }
}
