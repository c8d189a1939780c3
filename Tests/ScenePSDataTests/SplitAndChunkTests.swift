import Foundation
import ScenePSCore
import XCTest
@testable import ScenePSData

final class SplitAndChunkTests: XCTestCase {
    func testQuantileMatchesNumpyLinear() {
        // numpy.quantile(np.arange(1, 11), 0.9) == 9.1; numpy.quantile([0, 0, 1, 5], 0.9) == 3.8
        XCTAssertEqual(Preparation.quantile(Array(1...10), q: 0.9), 9.1, accuracy: 1e-12)
        XCTAssertEqual(Preparation.quantile([5, 0, 1, 0], q: 0.9), 3.8, accuracy: 1e-12)
        XCTAssertEqual(Preparation.quantile([7], q: 0.9), 7)
        XCTAssertEqual(Preparation.quantile([1, 2], q: 0.5), 1.5, accuracy: 1e-12)
        XCTAssertEqual(Preparation.quantile([3, 1, 2], q: 1.0), 3)
    }

    func testSplitByTimeHandComputed() throws {
        let dir = try makeTempDirectory(self)
        // Timestamps 1...10, one row each, file order reversed.
        let rows = (1...10).reversed().map {
            LogRow(user: "u\($0 % 3)", item: "i\($0)", category: "c", scene: "s", timestamp: Int64($0), label: $0 % 2)
        }
        try writeText(dir + "/log.csv", logCSV(rows))
        let result = try prepare(dir, log: dir + "/log.csv") { $0.validFraction = 0.1 }
        // test cut = quantile(1..10, 0.9) = 9.1 -> test {10}; valid cut = quantile(1..9, 0.9) = 8.2 -> valid {9}
        XCTAssertEqual(result.manifest.split.testCut, 9.1, accuracy: 1e-9)
        XCTAssertEqual(result.manifest.split.validCut!, 8.2, accuracy: 1e-9)
        let (_, b) = try loadAll(dir + "/out")
        XCTAssertEqual(b[2].row.map { rows[Int($0)].timestamp }, [10])
        XCTAssertEqual(b[1].row.map { rows[Int($0)].timestamp }, [9])
        XCTAssertEqual(b[0].row.map { rows[Int($0)].timestamp }.sorted(), Array(1...8))
        // Cold: item i10 only occurs in the test row.
        XCTAssertEqual(b[2].cold, [true])
    }

    func testNoValidationWhenFractionIsZero() throws {
        let dir = try makeTempDirectory(self)
        try writeText(dir + "/log.csv", logCSV(randomLog(seed: 3, rows: 200)))
        let result = try prepare(dir, log: dir + "/log.csv") { $0.validFraction = 0 }
        XCTAssertNil(result.manifest.split.validCut)
        XCTAssertTrue(result.manifest.scenes.allSatisfy { $0.valid.isEmpty })
    }

    /// Every row in exactly one chunk; splits obey the cuts; chunk sizes; cold flags.
    func testSplitAndChunkInvariants() throws {
        for (seed, chunk) in [(UInt64(11), 1), (12, 5), (13, 64), (14, 10_000)] {
            let dir = try makeTempDirectory(self, "inv\(seed)")
            let rows = randomLog(seed: seed, rows: 400, scenes: ["home", "shop", "x y"], timestamps: 90)
            try writeText(dir + "/log.csv", logCSV(rows))
            let result = try prepare(dir, log: dir + "/log.csv") {
                $0.chunkSize = chunk; $0.testFraction = 0.2; $0.validFraction = 0.25
            }
            let m = result.manifest
            XCTAssertEqual(m.rows, rows.count)
            let testCut = Preparation.quantile(rows.map(\.timestamp), q: 0.8)
            let trainTs = rows.map(\.timestamp).filter { Double($0) < testCut }
            let validCut = Preparation.quantile(trainTs, q: 0.75)
            XCTAssertEqual(m.split.testCut, testCut)
            XCTAssertEqual(m.split.validCut, validCut)
            for s in m.scenes {
                for refs in [s.train, s.valid, s.test] {
                    for (k, r) in refs.enumerated() {
                        XCTAssertGreaterThan(r.count, 0)
                        if k < refs.count - 1 { XCTAssertEqual(r.count, chunk) } else { XCTAssertLessThanOrEqual(r.count, chunk) }
                    }
                    XCTAssertEqual(Set(refs.map(\.file)).count, refs.count)
                }
            }
            let (_, b) = try loadAll(dir + "/out")
            var count = [Int](repeating: 0, count: rows.count)
            let trainItems = Set(rows.filter { Double($0.timestamp) < testCut }.map(\.item))
            for (split, batch) in b.enumerated() {
                for k in 0..<batch.count {
                    let r = Int(batch.row[k])
                    count[r] += 1
                    let ts = Double(rows[r].timestamp)
                    switch split {
                    case 0: XCTAssertTrue(ts < validCut)
                    case 1: XCTAssertTrue(ts >= validCut && ts < testCut)
                    default: XCTAssertTrue(ts >= testCut)
                    }
                    XCTAssertEqual(batch.cold[k], split == 2 && !trainItems.contains(rows[r].item))
                    XCTAssertEqual(m.scenes[Int(batch.scene[k])].name, rows[r].scene)
                }
            }
            XCTAssertEqual(count, [Int](repeating: 1, count: rows.count), "every row in exactly one chunk")
        }
    }

    func testSceneStatsHistoryBuckets() throws {
        let dir = try makeTempDirectory(self)
        let rows = randomLog(seed: 31, rows: 300, scenes: ["s"], timestamps: 200)
        try writeText(dir + "/log.csv", logCSV(rows))
        let r = try prepare(dir, log: dir + "/log.csv") { $0.lLong = 3 }
        let stats = try XCTUnwrap(r.manifest.scenes[0].stats)
        XCTAssertEqual(Set(stats.historyLengths.keys), ["0", "1-2", "3"])
        XCTAssertEqual(stats.historyLengths.values.reduce(0, +), 300)
        XCTAssertEqual(stats.rows, 300)
        XCTAssertEqual(stats.users, Set(rows.map(\.user)).count)
        XCTAssertEqual(stats.items, Set(rows.map(\.item)).count)
        XCTAssertEqual(stats.positiveRate, Double(rows.filter { $0.label == 1 }.count) / 300, accuracy: 1e-12)
    }

    func testListedScenesFixTheOrderAndKeepEmptyScenes() throws {
        let dir = try makeTempDirectory(self)
        try writeText(dir + "/log.csv", logCSV(randomLog(seed: 5, rows: 100, scenes: ["b", "a"])))
        let result = try prepare(dir, log: dir + "/log.csv") { $0.scenes = ["b", "zz", "a"] }
        XCTAssertEqual(result.manifest.scenes.map(\.name), ["b", "zz", "a"])
        XCTAssertEqual(result.manifest.scenes.map(\.index), [0, 1, 2])
        XCTAssertEqual(result.manifest.scenes[1].trainCount + result.manifest.scenes[1].testCount, 0)
        XCTAssertEqual(result.manifest.scenes[2].key, KeyHash.idKey("a"))
    }

    func testTruthIsCarriedToSamples() throws {
        let dir = try makeTempDirectory(self)
        let rows = randomLog(seed: 8, rows: 50)
        try writeText(dir + "/log.csv", logCSV(rows))
        // Rows given out of order in the truth file.
        let truth = (0..<50).reversed().map { "\($0),\(Double($0) / 100)\n" }.joined()
        try writeText(dir + "/truth.csv", "row,p\n" + truth)
        let result = try prepare(dir, log: dir + "/log.csv") { $0.truthPath = dir + "/truth.csv" }
        XCTAssertTrue(result.manifest.hasTruth)
        let (_, b) = try loadAll(dir + "/out")
        var n = 0
        for batch in b {
            for k in 0..<batch.count {
                XCTAssertEqual(batch.truth[k], Float(Double(batch.row[k]) / 100))
                n += 1
            }
        }
        XCTAssertEqual(n, 50)
    }

    func testCatalogueIsRewrittenWithKeys() throws {
        let dir = try makeTempDirectory(self)
        try writeText(dir + "/log.csv", logCSV([
            LogRow(user: "1", item: "42", category: "c", scene: "s", timestamp: 1, label: 1),
            LogRow(user: "1", item: "43", category: "c", scene: "s", timestamp: 2, label: 0),
        ]))
        try writeText(dir + "/items.csv", "item_id,category_id,title\n42,c,\"red, \"\"big\"\" apple\"\n43,c,pear\n")
        let result = try prepare(dir, log: dir + "/log.csv") { $0.itemsPath = dir + "/items.csv" }
        XCTAssertEqual(result.manifest.catalogue?.items, 2)
        let text = try String(contentsOfFile: dir + "/out/items.csv", encoding: .utf8)
        XCTAssertEqual(text, "item_key,item_id,category_key,title,in_log\n"
                       + "\(KeyHash.idKey("42")),\"42\",\(KeyHash.idKey("c")),\"red, \"\"big\"\" apple\",1\n"
                       + "\(KeyHash.idKey("43")),\"43\",\(KeyHash.idKey("c")),\"pear\",1\n")
    }
}
