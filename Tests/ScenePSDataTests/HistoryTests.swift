import Foundation
import ScenePSCore
import XCTest
@testable import ScenePSData

/// History construction against a brute-force reference.
final class HistoryTests: XCTestCase {
    /// Brute force: the user's positive rows with a strictly earlier timestamp,
    /// most recent first (timestamp, then file position, descending), at most L.
    func bruteForceHistory(_ rows: [LogRow], _ r: Int, lLong: Int) -> [Int] {
        let me = rows[r]
        let earlier = rows.indices.filter { rows[$0].user == me.user && rows[$0].label == 1 && rows[$0].timestamp < me.timestamp }
        let ordered = earlier.sorted { (rows[$0].timestamp, $0) > (rows[$1].timestamp, $1) }
        return Array(ordered.prefix(lLong))
    }

    func checkHistories(seed: UInt64, rows count: Int, lLong: Int, timestamps: Int64) throws {
        let dir = try makeTempDirectory(self, "history\(seed)")
        let rows = randomLog(seed: seed, rows: count, timestamps: timestamps)
        try writeText(dir + "/log.csv", logCSV(rows))
        _ = try prepare(dir, log: dir + "/log.csv") { $0.lLong = lLong; $0.chunkSize = 7 }
        let (m, batches) = try loadAll(dir + "/out")
        XCTAssertEqual(m.scenes.map(\.name), ["a", "b", "c"], "scenes are indexed by sorted name")
        let sceneIndex = Dictionary(uniqueKeysWithValues: m.scenes.map { ($0.name, Int32($0.index)) })
        var seen = 0
        for b in batches {
            XCTAssertEqual(b.histItem.count, b.count * lLong)
            for k in 0..<b.count {
                let r = Int(b.row[k])
                XCTAssertTrue(r >= 0 && r < rows.count)
                let row = rows[r]
                XCTAssertEqual(b.user[k], KeyHash.idKey(row.user))
                XCTAssertEqual(b.item[k], KeyHash.idKey(row.item))
                XCTAssertEqual(b.category[k], KeyHash.idKey(row.category))
                XCTAssertEqual(b.scene[k], sceneIndex[row.scene])
                XCTAssertEqual(b.label[k], Float(row.label))
                XCTAssertTrue(b.truth[k].isNaN)
                let want = bruteForceHistory(rows, r, lLong: lLong)
                XCTAssertEqual(Int(b.histLen[k]), want.count, "row \(r)")
                guard Int(b.histLen[k]) == want.count else { continue }
                for (j, h) in want.enumerated() {
                    XCTAssertEqual(b.histItem[k * lLong + j], KeyHash.idKey(rows[h].item), "row \(r) slot \(j)")
                    XCTAssertEqual(b.histCategory[k * lLong + j], KeyHash.idKey(rows[h].category))
                    XCTAssertEqual(b.histScene[k * lLong + j], sceneIndex[rows[h].scene])
                    XCTAssertLessThan(rows[h].timestamp, row.timestamp, "no future or same-time leakage")
                }
                for j in want.count..<lLong {
                    XCTAssertEqual(b.histItem[k * lLong + j], 0)
                    XCTAssertEqual(b.histCategory[k * lLong + j], 0)
                    XCTAssertEqual(b.histScene[k * lLong + j], 0)
                }
                seen += 1
            }
        }
        XCTAssertEqual(seen, rows.count)
    }

    func testHistoriesMatchBruteForceWithTiesAndCut() throws {
        // Few timestamps: many ties; L = 3: the cut matters.
        for seed in 1...4 as ClosedRange<UInt64> {
            try checkHistories(seed: seed, rows: 300, lLong: 3, timestamps: 20)
        }
    }

    func testHistoriesMatchBruteForceLongHistory() throws {
        try checkHistories(seed: 9, rows: 500, lLong: 50, timestamps: 400)
    }

    func testCrossSceneAndEqualTimestamps() throws {
        let dir = try makeTempDirectory(self)
        let rows = [
            LogRow(user: "7", item: "x", category: "cx", scene: "shop", timestamp: 10, label: 1),
            LogRow(user: "7", item: "y", category: "cy", scene: "home", timestamp: 10, label: 1),   // same time: not visible to each other
            LogRow(user: "7", item: "z", category: "cz", scene: "home", timestamp: 11, label: 0),
            LogRow(user: "8", item: "x", category: "cx", scene: "home", timestamp: 12, label: 1),   // other user
            LogRow(user: "7", item: "w", category: "cw", scene: "shop", timestamp: 13, label: 1),
        ]
        try writeText(dir + "/log.csv", logCSV(rows))
        _ = try prepare(dir, log: dir + "/log.csv") { $0.lLong = 4 }
        let (m, batches) = try loadAll(dir + "/out")
        XCTAssertEqual(m.scenes.map(\.name), ["home", "shop"])
        var byRow: [Int64: (SampleBatch, Int)] = [:]
        for b in batches { for k in 0..<b.count { byRow[b.row[k]] = (b, k) } }
        XCTAssertEqual(byRow.count, 5)
        func hist(_ r: Int64) -> [UInt64] {
            let (b, k) = byRow[r]!
            return Array(b.histItem[(k * 4)..<(k * 4 + Int(b.histLen[k]))])
        }
        XCTAssertEqual(hist(0), [])
        XCTAssertEqual(hist(1), [])
        XCTAssertEqual(hist(2), [KeyHash.idKey("y"), KeyHash.idKey("x")], "file order within a timestamp, most recent first")
        XCTAssertEqual(hist(3), [])
        XCTAssertEqual(hist(4), [KeyHash.idKey("y"), KeyHash.idKey("x")])
        let (b, k) = byRow[2]!
        XCTAssertEqual(Array(b.histScene[(k * 4)..<(k * 4 + 2)]), [0, 1], "behaviour scenes: home then shop")
    }
}
