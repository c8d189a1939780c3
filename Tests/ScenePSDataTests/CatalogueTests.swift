import Foundation
import ScenePSCore
import XCTest
@testable import ScenePSData

/// The item catalogue beside a log: items the log never mentions are kept and
/// counted; bad catalogue rows are an error naming file and line, or skipped
/// and counted with skipBadRows.
final class CatalogueTests: XCTestCase {
    let header = "user_id,item_id,category_id,scene,timestamp,label\n"
    /// Items i1 (c1), i2 (c2), i3 (c1 at ts 102, c3 at ts 104: latest c3).
    let log = "u1,i1,c1,home,100,1\nu2,i2,c2,shop,101,0\nu1,i3,c1,home,102,0\nu2,i3,c3,home,104,1\n"

    func setUpLog() throws -> String {
        let dir = try makeTempDirectory(self)
        try writeText(dir + "/log.csv", header + log)
        return dir
    }

    /// Rows of the prepared items.csv, header excluded, split into fields
    /// (titles here have no commas).
    func preparedRows(_ dir: String) throws -> [[String]] {
        let text = try String(contentsOfFile: dir + "/out/items.csv", encoding: .utf8)
        var lines = text.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.removeFirst(), "item_key,item_id,category_key,title,in_log")
        return lines.map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
    }

    func testItemsTheLogNeverMentionsAreKeptAndCounted() throws {
        let dir = try setUpLog()
        let items = dir + "/items.csv"
        // i9 and i10 are new items; i2 is missing from the catalogue.
        try writeText(items, "item_id,category_id,title\ni1,c1,one\ni9,c9,nine\ni3,c3,three\ni10,c1,ten\n")
        let r = try prepare(dir, log: dir + "/log.csv") { $0.itemsPath = items }
        let c = try XCTUnwrap(r.manifest.catalogue)
        XCTAssertEqual(c.items, 4)
        XCTAssertEqual(c.unseenItems, 2)
        XCTAssertEqual(c.logItemsNotListed, 1)
        XCTAssertEqual(c.categoryDisagreements, 0, "i3's latest log row has c3, as the catalogue says")
        XCTAssertEqual(r.badRows.total, 0)
        XCTAssertTrue(r.summary.contains("4 items; 2 catalogue items never occur in the log"), r.summary)
        XCTAssertTrue(r.summary.contains("1 log items are not in the catalogue"), r.summary)
        let rows = try preparedRows(dir)
        XCTAssertEqual(rows.map { $0[1] }, ["\"i1\"", "\"i9\"", "\"i3\"", "\"i10\""], "catalogue order")
        XCTAssertEqual(rows.map { $0[4] }, ["1", "0", "1", "0"], "in_log")
        XCTAssertEqual(rows[1], ["\(KeyHash.idKey("i9"))", "\"i9\"", "\(KeyHash.idKey("c9"))", "\"nine\"", "0"],
                       "an unseen item keeps its category and title")
        // The manifest round-trips the counts.
        let m = try DatasetManifest.load(directory: dir + "/out")
        XCTAssertEqual(m.catalogue, c)
    }

    func testCategoryDisagreementsAreCountedAndTheLogKeepsItsOwn() throws {
        let dir = try setUpLog()
        let items = dir + "/items.csv"
        // i1: log c1, catalogue c7; i3: latest log row c3, catalogue c1 (an older row's).
        try writeText(items, "item_id,category_id,title\ni1,c7,one\ni2,c2,two\ni3,c1,three\n")
        let r = try prepare(dir, log: dir + "/log.csv") { $0.itemsPath = items }
        let c = try XCTUnwrap(r.manifest.catalogue)
        XCTAssertEqual(c.categoryDisagreements, 2)
        XCTAssertEqual(c.categoryDisagreementExamples, ["\(items):2: item \"i1\"", "\(items):4: item \"i3\""])
        XCTAssertTrue(r.summary.contains("2 item(s) whose catalogue category differs"), r.summary)
        // The samples keep the log's categories; the catalogue keeps its own.
        let (_, batches) = try loadAll(dir + "/out")
        let pairs = Set(batches.flatMap { b in (0..<b.count).map { "\(b.item[$0]):\(b.category[$0])" } })
        XCTAssertTrue(pairs.contains("\(KeyHash.idKey("i1")):\(KeyHash.idKey("c1"))"), "\(pairs)")
        XCTAssertEqual(try preparedRows(dir)[0][2], "\(KeyHash.idKey("c7"))")
    }

    func testRepeatedListingWithTheSameCategoryKeepsTheFirst() throws {
        let dir = try setUpLog()
        let items = dir + "/items.csv"
        try writeText(items, "item_id,category_id,title\ni1,c1,first\ni1,c1,second\ni2,c2,two\n")
        let r = try prepare(dir, log: dir + "/log.csv") { $0.itemsPath = items }
        XCTAssertEqual(r.manifest.catalogue?.items, 2)
        XCTAssertEqual(r.manifest.catalogue?.repeatedListings, 1)
        XCTAssertEqual(r.badRows.total, 0)
        XCTAssertEqual(try preparedRows(dir)[0][3], "\"first\"")
    }

    /// A bad catalogue row: by default an error naming file, line and reason;
    /// with skipBadRows, skipped, counted per file and reason, and the rest kept.
    func checkBad(_ rows: String, line: Int, reason: BadRowReason, fragment: String, kept: Int,
                  file: StaticString = #filePath, testLine: UInt = #line) throws {
        let dir = try setUpLog()
        let items = dir + "/items.csv"
        try writeText(items, "item_id,category_id,title\n" + rows)
        XCTAssertThrowsError(try prepare(dir, log: dir + "/log.csv") { $0.itemsPath = items }, file: file, line: testLine) { error in
            let m = (error as? ScenePSError)?.message ?? "not a ScenePSError: \(error)"
            XCTAssertTrue(m.hasPrefix("\(items):\(line): \(reason.rawValue): "), m, file: file, line: testLine)
            XCTAssertTrue(m.contains(fragment), "\(m) says \(fragment)", file: file, line: testLine)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out/manifest.json"), "nothing half-written", file: file, line: testLine)
        let r = try prepare(dir, log: dir + "/log.csv") { $0.itemsPath = items; $0.skipBadRows = true }
        XCTAssertEqual(r.badRows.groups.map(\.reason), [reason], file: file, line: testLine)
        XCTAssertEqual(r.badRows.groups.first?.firstLine, line, file: file, line: testLine)
        XCTAssertEqual(BadRowLog.countsByFile(r.manifest.badRows ?? []), [items: [reason.rawValue: 1]], file: file, line: testLine)
        XCTAssertEqual(r.manifest.catalogue?.items, kept, file: file, line: testLine)
        XCTAssertTrue(r.summary.contains("skipped 1 bad row of \(items): 1 \(reason.rawValue) (first at line \(line))"), r.summary,
                      file: file, line: testLine)
    }

    func testShortRow() throws {
        try checkBad("i1,c1,one\ni2,c2\ni3,c3,three\n", line: 3, reason: .shortRow, fragment: "2 field(s), the header has 3", kept: 2)
    }

    func testEmptyItemId() throws {
        try checkBad("i1,c1,one\n,c2,two\n", line: 3, reason: .emptyField, fragment: "item_id is empty", kept: 1)
    }

    func testEmptyCategoryId() throws {
        try checkBad("i1,,one\ni2,c2,two\n", line: 2, reason: .emptyField, fragment: "category_id is empty", kept: 1)
    }

    func testSameItemWithAnotherCategory() throws {
        try checkBad("i1,c1,one\ni2,c2,two\ni1,c5,uno\n", line: 4, reason: .conflictingItem,
                     fragment: "item \"i1\" has category \"c5\" here and another one at line 2", kept: 2)
    }

    func testTitleInInvalidUTF8() throws {
        let dir = try setUpLog()
        let items = dir + "/items.csv"
        var bytes = Array("item_id,category_id,title\ni1,c1,caf".utf8) + [0xE9] + Array("\ni2,c2,two\n".utf8)   // Latin-1 é
        FileManager.default.createFile(atPath: items, contents: Data(bytes))
        XCTAssertThrowsError(try prepare(dir, log: dir + "/log.csv") { $0.itemsPath = items }) { error in
            let m = (error as? ScenePSError)?.message ?? "\(error)"
            XCTAssertTrue(m.hasPrefix("\(items):2: title not valid UTF-8: the title of item \"i1\""), m)
        }
        let r = try prepare(dir, log: dir + "/log.csv") { $0.itemsPath = items; $0.skipBadRows = true }
        XCTAssertEqual(r.badRows.counts, [BadRowReason.invalidTitle.rawValue: 1])
        XCTAssertEqual(r.manifest.catalogue?.items, 1)
        // Valid multi-byte UTF-8 (accents, CJK) is kept as it is.
        bytes = Array("item_id,category_id,title\ni1,c1,café 茶\n".utf8)
        FileManager.default.createFile(atPath: items, contents: Data(bytes))
        _ = try prepare(dir, log: dir + "/log.csv") { $0.itemsPath = items }
        XCTAssertEqual(try preparedRows(dir)[0][3], "\"café 茶\"")
    }

    /// Bad rows in two files: one total per file, beside the per-reason lines.
    func testSkipSummaryTotals() throws {
        let dir = try makeTempDirectory(self)
        let logPath = dir + "/log.csv"
        try writeText(logPath, header + log + "u3,i4,c1,home\nu3,i4,c1,home,later,1\nu3,i4,c1,home,105,1\nu4,i4,c1,home,x,1\n")
        let items = dir + "/items.csv"
        try writeText(items, "item_id,category_id,title\ni1,,one\ni2,c2,two\n")
        let r = try prepare(dir, log: logPath) { $0.itemsPath = items; $0.skipBadRows = true }
        XCTAssertEqual(r.badRows.total, 4)
        let lines = r.summary.split(separator: "\n").map(String.init)
        XCTAssertTrue(lines.contains("skipped 3 bad rows of \(logPath): 1 short row (first at line 6), 2 non-numeric timestamp (first at line 7)"),
                      r.summary)
        XCTAssertTrue(lines.contains("  non-numeric timestamp: 2; first at line 7: timestamp \"later\" is not an integer"), r.summary)
        XCTAssertTrue(lines.contains("skipped 1 bad row of \(items): 1 empty id (first at line 2)"), r.summary)
        XCTAssertEqual(BadRowLog.countsByFile(r.manifest.badRows ?? []),
                       [logPath: ["short row": 1, "non-numeric timestamp": 2], items: ["empty id": 1]])
        XCTAssertEqual(r.manifest.skipped, ["short row": 1, "non-numeric timestamp": 2, "empty id": 1])
    }
}
