import Foundation
import ScenePSCore
import XCTest
@testable import ScenePSData

/// The generator's `movielens` profile has the traits of a real ratings log
/// (MovieLens-100K, measured with tools/log_traits.py: 76% of rows share their
/// user's timestamp with another row, the test tenth comes from 166 of 943
/// users with a median of 89 earlier events per test row), and the default
/// profile still writes the default data byte for byte.
final class MovieLensProfileTests: XCTestCase {
    struct Row { var user: Substring; var item: Substring; var scene: Substring; var ts: Int64; var label: Int }

    func readLog(_ path: String) throws -> [Row] {
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.first, "user_id,item_id,category_id,scene,timestamp,label")
        return lines.dropFirst().map { line in
            let f = line.split(separator: ",")
            return Row(user: f[0], item: f[1], scene: f[3], ts: Int64(f[4])!, label: Int(f[5])!)
        }
    }

    func testDefaultProfileIsTheDefaultDataByteForByte() throws {
        // FNV-1a of the files written by psctl gen-data --rows 40000 --users 2000 --items 4000 --seed 7
        // before profiles existed (main at 5724485): the default data, and the BENCHMARKS figures measured
        // on it, do not move.
        let dir = try makeTempDirectory(self)
        var o = GeneratorOptions()
        o.rows = 40_000; o.users = 2_000; o.items = 4_000; o.seed = 7
        try Generator(options: o).run(outDirectory: dir)
        for (file, hash) in [("log.csv", 0x9a78_59b2_1b38_ca33 as UInt64), ("truth.csv", 0xeeee_f0da_1911_d88b),
                             ("items.csv", 0xfa04_75bc_987c_ba81)] {
            let bytes = try XCTUnwrap(FileManager.default.contents(atPath: dir + "/" + file))
            XCTAssertEqual(KeyHash.fnv1a64(bytes), hash, "\(file) differs from the default data")
        }
    }

    func testMovieLensTraits() throws {
        let dir = try makeTempDirectory(self)
        let o = GeneratorOptions.movieLens()
        let stats = try Generator(options: o).run(outDirectory: dir)
        let rows = try readLog(dir + "/log.csv")
        XCTAssertEqual(rows.count, 100_000)
        XCTAssertEqual(stats.rows, 100_000)

        // Time order, and the share of rows that share their user's timestamp with another row.
        var perUserTs: [String: Int] = [:]
        for (k, r) in rows.enumerated() {
            if k > 0 { XCTAssertGreaterThanOrEqual(r.ts, rows[k - 1].ts, "time order at row \(k)") }
            perUserTs["\(r.user) \(r.ts)", default: 0] += 1
        }
        let same = Double(rows.filter { perUserTs["\($0.user) \($0.ts)"]! > 1 }.count) / Double(rows.count)
        XCTAssertTrue((0.66...0.86).contains(same), "same-timestamp share \(same) (MovieLens-100K: 0.76)")

        // Users: all of them, each with >= 20 rows, and no item rated twice by a user.
        var perUser: [Substring: Int] = [:]
        var pairs = Set<String>()
        for r in rows {
            perUser[r.user, default: 0] += 1
            pairs.insert("\(r.user) \(r.item)")
        }
        XCTAssertEqual(perUser.count, 943)
        XCTAssertGreaterThanOrEqual(perUser.values.min() ?? 0, 20)
        XCTAssertGreaterThan(perUser.values.max() ?? 0, 300, "heavy-tailed rows per user")
        XCTAssertEqual(pairs.count, rows.count, "a user rates an item once")

        // Scenes are genre groups: a row's scene is its item's, and every scene has traffic.
        var itemScene: [Substring: Substring] = [:]
        for r in rows {
            if let s = itemScene[r.item] { XCTAssertEqual(s, r.scene, "item \(r.item) in two scenes") } else { itemScene[r.item] = r.scene }
        }
        XCTAssertEqual(stats.sceneRows.count, 3)
        XCTAssertTrue(stats.sceneRows.allSatisfy { $0 > 10_000 }, "scene rows \(stats.sceneRows)")
        XCTAssertTrue((0.40...0.65).contains(stats.positiveRate), "positive rate \(stats.positiveRate) (MovieLens > 3: 0.55)")
        XCTAssertTrue((0.6...0.95).contains(stats.oracleAUC), "oracle AUC \(stats.oracleAUC)")

        // The test tenth (the preparation's own cut): few users, long histories.
        let testCut = Preparation.quantile(n: rows.count, q: 0.9) { Double(rows[$0].ts) }
        var earlier: [Substring: Int] = [:]
        var testUsers = Set<Substring>(), testHistory: [Int] = []
        var k = 0
        while k < rows.count {   // earlier events = the user's rows strictly earlier in time
            var j = k
            while j < rows.count && rows[j].ts == rows[k].ts { j += 1 }
            for r in rows[k..<j] where Double(r.ts) >= testCut {
                testUsers.insert(r.user)
                testHistory.append(earlier[r.user, default: 0])
            }
            for r in rows[k..<j] { earlier[r.user, default: 0] += 1 }
            k = j
        }
        testHistory.sort()
        let median = testHistory[testHistory.count / 2]
        XCTAssertLessThan(testUsers.count, 943 / 3, "users in the test tenth (MovieLens-100K: 166 of 943)")
        XCTAssertGreaterThan(testUsers.count, 30)
        XCTAssertGreaterThanOrEqual(median, 40, "median earlier events per test row (MovieLens-100K: 89)")
    }

    func testMovieLensIsDeterministicAndOptionsAreChecked() throws {
        let a = try makeTempDirectory(self, "a"), b = try makeTempDirectory(self, "b")
        var o = GeneratorOptions.movieLens()
        o.rows = 5_000; o.users = 100; o.items = 400
        try Generator(options: o).run(outDirectory: a)
        try Generator(options: o).run(outDirectory: b)
        XCTAssertEqual(FileManager.default.contents(atPath: a + "/log.csv"), FileManager.default.contents(atPath: b + "/log.csv"))
        XCTAssertEqual(FileManager.default.contents(atPath: a + "/truth.csv"), FileManager.default.contents(atPath: b + "/truth.csv"))
        o.sittings.sameTimestamp = 0
        try Generator(options: o).run(outDirectory: b)
        let rows = try readLog(b + "/log.csv")
        let ties = zip(rows, rows.dropFirst()).filter { $0.user == $1.user && $0.ts == $1.ts }.count
        XCTAssertLessThan(Double(ties) / Double(rows.count), 0.02, "--same-timestamp 0: (almost) no ties")

        for bad in [{ (o: inout GeneratorOptions) in o.sittings.sameTimestamp = 1 }, { $0.sittings.drift = -0.1 },
                    { $0.holdOutItems = 0.1 }, { $0.sittings.spanSeconds = 0 }] {
            var x = GeneratorOptions.movieLens()
            bad(&x)
            XCTAssertThrowsError(try Generator(options: x))
        }
    }

    /// Many rows sharing a timestamp: the time split never puts one timestamp on
    /// both sides of a cut, the test share moves by at most the group at the cut,
    /// and a sample's history holds only strictly earlier positives (DESIGN §4).
    func testSplitAndHistoryWithSittings() throws {
        let dir = try makeTempDirectory(self)
        var o = GeneratorOptions.movieLens()
        o.rows = 20_000; o.users = 200; o.items = 800
        try Generator(options: o).run(outDirectory: dir)
        _ = try prepare(dir, log: dir + "/log.csv")
        let (manifest, batches) = try loadAll(dir + "/out")
        let rows = try readLog(dir + "/log.csv")
        let testCut = manifest.split.testCut, validCut = try XCTUnwrap(manifest.split.validCut)
        let groupAtCut = rows.filter { Double($0.ts) == testCut }.count
        let testRows = rows.filter { Double($0.ts) >= testCut }.count
        XCTAssertEqual(batches[2].count, testRows)
        XCTAssertEqual(Double(testRows), 2_000, accuracy: Double(groupAtCut) + 1, "test share off by more than the tie at the cut")
        // Positives of the user strictly earlier in time, per row (ties: none of the same timestamp).
        var expected = [Int](repeating: 0, count: rows.count)
        var count: [Substring: Int] = [:]
        var k = 0
        while k < rows.count {
            var j = k
            while j < rows.count && rows[j].ts == rows[k].ts { j += 1 }
            for r in k..<j { expected[r] = count[rows[r].user, default: 0] }
            for r in rows[k..<j] where r.label == 1 { count[r.user, default: 0] += 1 }
            k = j
        }
        var checked = 0
        for (split, b) in batches.enumerated() {
            for k in 0..<b.count {
                let r = Int(b.row[k]), t = Double(rows[r].ts)
                switch split {
                case 0: XCTAssertLessThan(t, validCut)
                case 1: XCTAssertTrue(t >= validCut && t < testCut)
                default: XCTAssertGreaterThanOrEqual(t, testCut)
                }
                XCTAssertEqual(Int(b.histLen[k]), min(expected[r], manifest.lLong), "row \(r)")
                checked += 1
            }
        }
        XCTAssertEqual(checked, rows.count)
        XCTAssertGreaterThan(rows.filter { Double($0.ts) < validCut }.count, 0)
    }
}
