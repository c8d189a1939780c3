import Foundation
import ScenePSCore
import XCTest
@testable import ScenePSData

/// Input files as other tools write them (issue 21): a byte-order mark, CR-only
/// or CRLF line ends, columns in another order, extra columns. Each must give
/// exactly the data set the plain file gives; a missing column is an error
/// naming the file and the column; an ignored column is said so.
final class CSVLayoutTests: XCTestCase {
    let columns = ["user_id", "item_id", "category_id", "scene", "timestamp", "label"]

    /// The rows of a seeded log as fields in `columns` order.
    func rows() -> [[String]] {
        randomLog(seed: 31, rows: 120, timestamps: 40).map {
            [$0.user, $0.item, $0.category, $0.scene, "\($0.timestamp)", "\($0.label)"]
        }
    }

    /// Writes header + rows with the columns in `order` (indices into `columns`, extra names appended
    /// as columns holding a quoted value with a comma), the line end `eol`, optionally a UTF-8 byte-order mark.
    func write(_ path: String, order: [Int], extra: [String] = [], eol: String = "\n", bom: Bool = false) throws {
        var text = (bom ? "\u{FEFF}" : "") + (order.map { columns[$0] } + extra).joined(separator: ",") + eol
        for r in rows() { text += (order.map { r[$0] } + extra.map { _ in "\"x,y\"" }).joined(separator: ",") + eol }
        try writeText(path, text)
    }

    /// Everything a prepared data set holds, per split, for comparing two preparations.
    func content(_ dir: String) throws -> [[String]] {
        let (m, batches) = try loadAll(dir)
        return batches.map { b in
            (0..<b.count).map { i in
                "\(b.row[i]) \(b.user[i]) \(b.item[i]) \(b.category[i]) \(b.scene[i]) \(b.label[i]) \(b.truth[i]) \(b.histLen[i])"
            }.sorted() + ["rows \(m.rows) scenes \(m.scenes.map(\.name)) cut \(m.split.testCut)"]
        }
    }

    func testBOMLineEndsReorderedAndExtraColumnsGiveTheSameDataSet() throws {
        let dir = try makeTempDirectory(self)
        try write(dir + "/plain.csv", order: Array(0..<6))
        _ = try prepare(dir, log: dir + "/plain.csv")
        let reference = try content(dir + "/out")
        XCTAssertEqual(reference.map { $0.count - 1 }.reduce(0, +), 120, "every row prepared once")
        let variants: [(String, [Int], [String], String, Bool)] = [
            ("bom-crlf", Array(0..<6), [], "\r\n", true),
            ("cr-only", Array(0..<6), [], "\r", false),
            ("bom-cr-only", Array(0..<6), [], "\r", true),
            ("reordered", [5, 3, 0, 4, 2, 1], [], "\n", false),
            ("extra", [0, 1, 2, 3, 4, 5], ["comment"], "\n", false),
            ("reordered-extra-cr", [4, 1, 5, 0, 3, 2], ["comment", "source"], "\r", true),
        ]
        for (name, order, extra, eol, bom) in variants {
            let path = dir + "/\(name).csv"
            try write(path, order: order, extra: extra, eol: eol, bom: bom)
            try? FileManager.default.removeItem(atPath: dir + "/out")
            let r = try prepare(dir, log: path)
            XCTAssertEqual(try content(dir + "/out"), reference, name)
            let note = "note: \(path):1: column(s) \(extra.joined(separator: ", ")) not used, ignored"
            if extra.isEmpty {
                XCTAssertFalse(r.summary.contains("not used, ignored"), "\(name): nothing ignored: \(r.summary)")
            } else {
                XCTAssertTrue(r.summary.contains(note), "\(name): the ignored columns are named: \(r.summary)")
                XCTAssertEqual(r.badRows.notes, [note], name)
                XCTAssertEqual(r.badRows.total, 0, "\(name): an extra column is not a bad row")
            }
        }
    }

    func testAMissingColumnIsAnErrorNamingTheFileAndTheColumn() throws {
        let dir = try makeTempDirectory(self)
        for dropped in [0, 3, 5] {
            let path = dir + "/missing-\(columns[dropped]).csv"
            try write(path, order: (0..<6).filter { $0 != dropped }, eol: "\r")
            XCTAssertThrowsError(try prepare(dir, log: path)) { e in
                let m = (e as? ScenePSError)?.message ?? "\(e)"
                XCTAssertTrue(m.contains("\(path):1: missing column(s) \(columns[dropped]) in the header"), m)
            }
        }
        let twice = dir + "/twice.csv"
        try writeText(twice, "user_id,item_id,category_id,scene,timestamp,label,item_id\nu,i,c,home,1,1,i\n")
        XCTAssertThrowsError(try prepare(dir, log: twice)) { e in
            XCTAssertTrue("\(e)".contains("\(twice):1: column item_id appears twice in the header"), "\(e)")
        }
    }

    /// The truth file and the catalogue map their columns by name too.
    func testTruthAndCatalogueColumnsByNameInAnyOrder() throws {
        let dir = try makeTempDirectory(self)
        try write(dir + "/log.csv", order: Array(0..<6))
        let n = rows().count
        let p = (0..<n).map { Double($0 % 10) / 10 + 0.05 }
        try writeText(dir + "/truth.csv", "row,p\n" + (0..<n).map { "\($0),\(p[$0])\n" }.joined())
        let items = (0..<12).map { "\($0),c\($0 % 4),title \($0)" }
        try writeText(dir + "/items.csv", "item_id,category_id,title\n" + items.joined(separator: "\n") + "\n")
        _ = try prepare(dir, log: dir + "/log.csv") { $0.truthPath = dir + "/truth.csv"; $0.itemsPath = dir + "/items.csv" }
        let reference = try content(dir + "/out")
        let catalogue = try String(contentsOfFile: dir + "/out/items.csv", encoding: .utf8)
        XCTAssertTrue(reference[0].contains { $0.contains(" 0.05 ") || $0.contains(" 0.15 ") }, "truth read: \(reference[0].prefix(3))")

        // p before row, an extra column, CR-only; the catalogue reordered with an extra column, a BOM and CRLF.
        try writeText(dir + "/truth2.csv", "p,source,row\r" + (0..<n).reversed().map { "\(p[$0]),gen,\($0)\r" }.joined())
        try writeText(dir + "/items2.csv", "\u{FEFF}title,note,category_id,item_id\r\n"
                      + (0..<12).map { "title \($0),-,c\($0 % 4),\($0)" }.joined(separator: "\r\n") + "\r\n")
        try FileManager.default.removeItem(atPath: dir + "/out")
        let r = try prepare(dir, log: dir + "/log.csv") { $0.truthPath = dir + "/truth2.csv"; $0.itemsPath = dir + "/items2.csv" }
        XCTAssertEqual(try content(dir + "/out"), reference)
        XCTAssertEqual(try String(contentsOfFile: dir + "/out/items.csv", encoding: .utf8), catalogue)
        XCTAssertEqual(r.badRows.notes, ["note: \(dir)/truth2.csv:1: column(s) source not used, ignored",
                                         "note: \(dir)/items2.csv:1: column(s) note not used, ignored"])

        try writeText(dir + "/truth3.csv", "row,probability\n0,0.5\n")
        XCTAssertThrowsError(try prepare(dir, log: dir + "/log.csv") { $0.truthPath = dir + "/truth3.csv" }) { e in
            XCTAssertTrue("\(e)".contains("\(dir)/truth3.csv:1: missing column(s) p in the header"), "\(e)")
        }
        try writeText(dir + "/items3.csv", "item,category_id,title\n1,c1,t\n")
        XCTAssertThrowsError(try prepare(dir, log: dir + "/log.csv") { $0.itemsPath = dir + "/items3.csv" }) { e in
            XCTAssertTrue("\(e)".contains("\(dir)/items3.csv:1: missing column(s) item_id in the header"), "\(e)")
        }
    }
}
