import Foundation
import ScenePSCore
import XCTest
@testable import ScenePSData

/// Every bad-input case: an error naming file and line by default; skipped and
/// counted with skipBadRows.
final class BadInputTests: XCTestCase {
    let header = "user_id,item_id,category_id,scene,timestamp,label\n"
    let good = "u1,i1,c1,home,100,1\nu2,i2,c2,shop,101,0\nu1,i3,c1,home,102,0\n"

    /// Log = header + good rows + `badRow` (at line 5) + one more good row.
    func check(badRow: String, reason: BadRowReason, fragment: String, trailingRow: Bool = true,
               configure: @escaping (inout PreparationOptions) -> Void = { _ in },
               file: StaticString = #filePath, line: UInt = #line) throws {
        let dir = try makeTempDirectory(self, "bad\(reason)")
        let path = dir + "/log.csv"
        try writeText(path, header + good + badRow + "\n" + (trailingRow ? "u2,i1,c1,home,103,1\n" : ""))
        XCTAssertThrowsError(try prepare(dir, log: path, configure: configure), file: file, line: line) { error in
            let message = (error as? ScenePSError)?.message ?? "not a ScenePSError: \(error)"
            XCTAssertTrue(message.contains("\(path):5:"), "\(message) names file and line", file: file, line: line)
            XCTAssertTrue(message.contains(fragment), "\(message) says \(fragment)", file: file, line: line)
        }
        let result = try prepare(dir, log: path) { configure(&$0); $0.skipBadRows = true }
        XCTAssertEqual(result.badRows.counts, [reason.rawValue: 1], file: file, line: line)
        XCTAssertEqual(result.manifest.skipped, [reason.rawValue: 1], file: file, line: line)
        XCTAssertEqual(result.manifest.rows, trailingRow ? 4 : 3, file: file, line: line)
        XCTAssertTrue(result.summary.contains("skipped 1 bad row of \(path): 1 \(reason.rawValue) (first at line 5)\n"), result.summary, file: file, line: line)
        XCTAssertTrue(result.summary.contains("  \(reason.rawValue): 1; first at line 5: "), result.summary, file: file, line: line)
        XCTAssertEqual(result.manifest.badRows, [BadRowGroup(file: path, reason: reason, count: 1, firstLine: 5,
                                                             firstDetail: result.badRows.groups.first?.firstDetail ?? "")],
                       file: file, line: line)
        XCTAssertTrue("\(reason.rawValue): \(result.manifest.badRows?.first?.firstDetail ?? "")".contains(fragment), file: file, line: line)
        // The row after the bad one keeps its data-row index (4), so truth rows stay aligned.
        let (_, b) = try loadAll(dir + "/out")
        XCTAssertEqual(Set(b.flatMap(\.row)), trailingRow ? [0, 1, 2, 4] : [0, 1, 2], file: file, line: line)
    }

    func testShortRow() throws { try check(badRow: "u3,i4,c1,home,104", reason: .shortRow, fragment: "5 field(s)") }
    func testMissingColumnInRow() throws { try check(badRow: "u3,i4,home,104,1", reason: .shortRow, fragment: "short row") }
    func testTooManyFields() throws { try check(badRow: "u3,i4,c1,home,104,1,9", reason: .extraFields, fragment: "7 fields") }
    func testNonNumericTimestamp() throws { try check(badRow: "u3,i4,c1,home,yesterday,1", reason: .badTimestamp, fragment: "yesterday") }
    func testFractionalTimestamp() throws { try check(badRow: "u3,i4,c1,home,104.5,1", reason: .badTimestamp, fragment: "104.5") }
    func testLabelNotBinary() throws { try check(badRow: "u3,i4,c1,home,104,2", reason: .badLabel, fragment: "\"2\"") }
    func testEmptyId() throws { try check(badRow: ",i4,c1,home,104,1", reason: .emptyField, fragment: "user_id") }
    func testUnterminatedQuote() throws { try check(badRow: "u3,\"i4,c1,home,104,1", reason: .unterminatedQuote, fragment: "quoted", trailingRow: false) }
    func testUnknownSceneWhenListed() throws {
        try check(badRow: "u3,i4,c1,video,104,1", reason: .unknownScene, fragment: "video") { $0.scenes = ["home", "shop"] }
    }

    func testHeaderProblemsAlwaysFail() throws {
        let dir = try makeTempDirectory(self)
        let path = dir + "/log.csv"
        try writeText(path, "user_id,item_id,scene,timestamp,label\n" + "u1,i1,home,1,1\n")
        for skip in [false, true] {
            XCTAssertThrowsError(try prepare(dir, log: path) { $0.skipBadRows = skip }) { error in
                let m = "\(error)"
                XCTAssertTrue(m.contains("\(path):1:") && m.contains("category_id"), m)
            }
        }
    }

    func testEmptyFiles() throws {
        let dir = try makeTempDirectory(self)
        for (name, text) in [("empty.csv", ""), ("header-only.csv", header), ("blank.csv", "\n\n")] {
            try writeText(dir + "/" + name, text)
            XCTAssertThrowsError(try prepare(dir, log: dir + "/" + name) { $0.skipBadRows = true }) { error in
                let m = "\(error)"
                XCTAssertTrue(m.contains(name) && m.contains("empty"), m)
            }
        }
        // All rows bad in skip mode: nothing to prepare is an error too.
        try writeText(dir + "/allbad.csv", header + "a,b,c,d,e,f\n")
        XCTAssertThrowsError(try prepare(dir, log: dir + "/allbad.csv") { $0.skipBadRows = true }) { error in
            XCTAssertTrue("\(error)".contains("no usable rows"), "\(error)")
        }
    }

    func testBadTruthRows() throws {
        let dir = try makeTempDirectory(self)
        try writeText(dir + "/log.csv", header + good)
        let cases: [(String, String)] = [
            ("row,p\n0,0.5\n1,x\n2,0.1\n", "\"x\""),          // non-numeric p
            ("row,p\n0,0.5\n7,0.2\n2,0.1\n", "\"7\""),         // row out of range
            ("row,p\n0,0.5\n1,1.5\n2,0.1\n", "1.5"),           // not a probability
            ("row,p\n0,0.5\n0,0.2\n2,0.1\n", "row 0"),         // duplicate
            ("row,p\n0,0.5\n1\n2,0.1\n", "1 field(s)"),        // short
        ]
        for (k, (text, fragment)) in cases.enumerated() {
            let truth = "\(dir)/truth\(k).csv"
            try writeText(truth, text)
            XCTAssertThrowsError(try prepare(dir, log: dir + "/log.csv") { $0.truthPath = truth }) { error in
                let m = "\(error)"
                XCTAssertTrue(m.contains("\(truth):3:") && m.contains(fragment), m)
            }
            let r = try prepare(dir, log: dir + "/log.csv") { $0.truthPath = truth; $0.skipBadRows = true }
            XCTAssertEqual(r.badRows.total, 1)
            XCTAssertEqual(r.rowsWithoutTruth, 1, "row 1 has no truth")
        }
        // Missing rows without skip: an error naming the first missing row.
        try writeText(dir + "/partial.csv", "row,p\n0,0.5\n")
        XCTAssertThrowsError(try prepare(dir, log: dir + "/log.csv") { $0.truthPath = dir + "/partial.csv" }) { error in
            XCTAssertTrue("\(error)".contains("first: row 1"), "\(error)")
        }
    }

    func testQuotedFieldsAndCRLFAreAccepted() throws {
        let dir = try makeTempDirectory(self)
        let text = "user_id,item_id,category_id,scene,timestamp,label\r\n\"u,1\",i1,c1,\"home\",5,1\r\nu2,\"i\"\"2\",c1,home,6,0\r\n\r\n"
        try writeText(dir + "/log.csv", text)
        let r = try prepare(dir, log: dir + "/log.csv")
        XCTAssertEqual(r.manifest.rows, 2)
        XCTAssertEqual(r.manifest.scenes.map(\.name), ["home"])
        let (_, b) = try loadAll(dir + "/out")
        let all = b.flatMap { batch in (0..<batch.count).map { (batch.user[$0], batch.item[$0]) } }
        XCTAssertTrue(all.contains { $0 == (KeyHash.idKey("u,1"), KeyHash.idKey("i1")) })
        XCTAssertTrue(all.contains { $0 == (KeyHash.idKey("u2"), KeyHash.idKey("i\"2")) })
    }

    func testBadOptions() {
        let cases: [((inout PreparationOptions) -> Void, String)] = [
            ({ $0.chunkSize = 0 }, "chunk size must be >= 1, got 0"), ({ $0.testFraction = 0 }, "test fraction"),
            ({ $0.testFraction = 1 }, "test fraction"), ({ $0.validFraction = -0.1 }, "validation fraction"),
            ({ $0.lLong = 0 }, "l-long must be in 1...4096, got 0"), ({ $0.scenes = ["a", "a"] }, "lists a scene twice"),
        ]
        for (configure, text) in cases {
            var o = PreparationOptions(logPath: "/nonexistent", outDirectory: "/tmp/x")
            configure(&o)
            XCTAssertThrowsError(try o.validate(), text) { error in
                let e = error as? ScenePSError
                XCTAssertEqual(e?.code, .invalidArgument, "\(error)")
                XCTAssertTrue(e?.message.contains(text) ?? false, "'\(error)' should name '\(text)'")
            }
        }
        XCTAssertThrowsError(try Preparation.run(PreparationOptions(logPath: "/nonexistent/log.csv", outDirectory: "/tmp/x"))) { error in
            XCTAssertEqual((error as? ScenePSError)?.code, .io, "\(error)")
            XCTAssertTrue("\(error)".contains("/nonexistent/log.csv"), "names the file: \(error)")
        }
    }
}
