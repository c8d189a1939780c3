import Foundation
import ScenePSCore
import XCTest
@testable import ScenePSData

/// gen-data's cold-start knobs: held-out items occur only in the last tenth
/// of the rows (the default test period), noisy categories stop telling the
/// topic, and at 0 both leave the data set byte for byte as it was.
final class ColdStartGeneratorTests: XCTestCase {
    func options(holdOut: Double = 0, noise: Double = 0) -> GeneratorOptions {
        var o = GeneratorOptions()
        o.rows = 30_000; o.users = 1_500; o.items = 2_000; o.seed = 3
        o.holdOutItems = holdOut; o.categoryNoise = noise
        return o
    }

    /// Items first seen at or after the test start, and the test rows that show them.
    func coldItems(_ dir: String, rows: Int) throws -> (items: Int, rows: Int, log: [Substring]) {
        let log = try String(contentsOfFile: dir + "/log.csv", encoding: .utf8).split(separator: "\n").dropFirst()
        let testStart = rows - rows / 10
        var seenBefore = Set<Substring>(), cold = Set<Substring>(), coldRows = 0
        for (r, line) in log.enumerated() {
            let item = line.split(separator: ",")[1]
            if r < testStart { seenBefore.insert(item) } else if !seenBefore.contains(item) { cold.insert(item); coldRows += 1 }
        }
        return (cold.count, coldRows, Array(log))
    }

    func testHeldOutItemsOccurOnlyInTheTestPeriod() throws {
        let plainDir = try makeTempDirectory(self), heldDir = try makeTempDirectory(self)
        try Generator(options: options()).run(outDirectory: plainDir)
        try Generator(options: options(holdOut: 0.2)).run(outDirectory: heldDir)
        let plain = try coldItems(plainDir, rows: 30_000), held = try coldItems(heldDir, rows: 30_000)
        // Without the hold-out few test rows are cold (new releases, the long tail); with 20% held out, many.
        XCTAssertGreaterThan(held.rows, 3 * max(plain.rows, 1), "cold test rows: \(held.rows) held out vs \(plain.rows)")
        XCTAssertGreaterThan(Double(held.rows) / 3_000, 0.08, "share of test rows that are cold")
        XCTAssertGreaterThan(held.items, plain.items)
        // The catalogue still lists every item, titles included.
        let items = try String(contentsOfFile: heldDir + "/items.csv", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(items.count, 2_001)
    }

    func testCategoryNoiseDecouplesCategoriesFromTopics() throws {
        func topicMismatch(_ o: GeneratorOptions) throws -> Double {
            let dir = try makeTempDirectory(self)
            try Generator(options: o).run(outDirectory: dir)
            let rows = try String(contentsOfFile: dir + "/items.csv", encoding: .utf8).split(separator: "\n").dropFirst()
            var wrong = 0
            for line in rows {
                let f = line.split(separator: ",")
                let item = Int(f[0].dropFirst())!, category = Int(f[1].dropFirst())!
                if category / o.categoriesPerTopic != item % o.topics { wrong += 1 }
            }
            return Double(wrong) / Double(rows.count)
        }
        XCTAssertEqual(try topicMismatch(options()), 0, "by default a category tells its item's topic")
        // A random category lands on the right topic 1 time in 25.
        XCTAssertEqual(try topicMismatch(options(noise: 0.5)), 0.5 * 24 / 25, accuracy: 0.04)   // sampling over the rows: ≥ 4 sd, seeded
    }

    /// Golden value: FNV-1a 64 of log.csv + items.csv for these options, from
    /// the generator before the knobs existed (main's psctl gen-data --rows
    /// 30000 --users 1500 --items 2000 --seed 3). The knobs draw from a stream
    /// of their own, so at 0 nothing moves.
    func testZeroKnobsLeaveTheDataSetUnchanged() throws {
        let a = try makeTempDirectory(self)
        try Generator(options: options()).run(outDirectory: a)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: a + "/log.csv")) + Data(contentsOf: URL(fileURLWithPath: a + "/items.csv"))
        XCTAssertEqual(KeyHash.fnv1a64(bytes), 0xc1dc_e459_7b2e_e822, "the default data set changed")
        XCTAssertThrowsError(try Generator(options: options(holdOut: 1)))
        XCTAssertThrowsError(try Generator(options: options(noise: -0.1)))
    }
}
