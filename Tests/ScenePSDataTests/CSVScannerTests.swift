import Foundation
import ScenePSCore
import XCTest
@testable import ScenePSData

final class CSVScannerTests: XCTestCase {
    func scan(_ text: String, _ body: (inout CSVScanner) -> Void) {
        var bytes = Array(text.utf8)
        bytes.withUnsafeMutableBytes { raw in
            var csv = CSVScanner(bytes: UnsafeRawBufferPointer(raw))
            body(&csv)
        }
    }

    func testFastProbabilityParseEqualsStandardParser() {
        var rng = SplitMix64(seed: 99)
        var values = ["0.5", "0.000001", "0.999999", "0.1", "0.123456789012345", "1.000000", "1", "0", "1e-3", "0.5x", "-0.2", "0."]
        for _ in 0..<2000 {
            let digits = 1 + Int(rng.next() % 15)
            values.append("0." + String((0..<digits).map { _ in Character(String(rng.next() % 10)) }))
        }
        scan(values.joined(separator: "\n") + "\n") { csv in
            var k = 0
            while csv.next() {
                XCTAssertEqual(csv.double(0), Double(values[k]), values[k])
                k += 1
            }
            XCTAssertEqual(k, values.count)
        }
    }

    func testLineNumbersCountBlankLinesAndQuotedNewlines() {
        scan("a,b\n\n\"x\ny\",2\r\nlast,3") { csv in
            XCTAssertTrue(csv.next()); XCTAssertEqual(csv.lineNumber, 1)
            XCTAssertTrue(csv.next()); XCTAssertEqual(csv.lineNumber, 3); XCTAssertEqual(csv.string(0), "x\ny"); XCTAssertEqual(csv.string(1), "2")
            XCTAssertTrue(csv.next()); XCTAssertEqual(csv.lineNumber, 5); XCTAssertEqual(csv.string(0), "last"); XCTAssertEqual(csv.int64(1), 3)
            XCTAssertFalse(csv.next())
        }
    }

    /// A lone CR ends a line (files from old Mac tools) as LF and CRLF do; inside quotes it is data.
    func testCROnlyLineEndsAndLineNumbers() {
        scan("\u{FEFF}a,b\r\rx,\"q\ry\"\r\"z\"\rmixed,1\r\nlf,2\nlast,3\r") { csv in
            XCTAssertTrue(csv.next()); XCTAssertEqual(csv.lineNumber, 1); XCTAssertEqual(csv.string(0), "a", "the BOM is skipped")
            XCTAssertEqual(csv.string(1), "b")
            XCTAssertTrue(csv.next()); XCTAssertEqual(csv.lineNumber, 3); XCTAssertEqual(csv.fields.count, 2)
            XCTAssertEqual(csv.string(0), "x"); XCTAssertEqual(csv.string(1), "q\ry")
            XCTAssertTrue(csv.next()); XCTAssertEqual(csv.lineNumber, 5); XCTAssertEqual(csv.fields.count, 1); XCTAssertEqual(csv.string(0), "z")
            XCTAssertTrue(csv.next()); XCTAssertEqual(csv.lineNumber, 6); XCTAssertEqual(csv.int64(1), 1)
            XCTAssertTrue(csv.next()); XCTAssertEqual(csv.lineNumber, 7); XCTAssertEqual(csv.string(0), "lf"); XCTAssertEqual(csv.int64(1), 2)
            XCTAssertTrue(csv.next()); XCTAssertEqual(csv.lineNumber, 8); XCTAssertEqual(csv.string(0), "last"); XCTAssertEqual(csv.int64(1), 3)
            XCTAssertFalse(csv.next())
        }
    }

    func testIntegersAndLabels() {
        scan("12,-7, 5 ,9223372036854775808,1.0,0,2,01,\n") { csv in
            XCTAssertTrue(csv.next())
            XCTAssertEqual(csv.fields.count, 9)
            XCTAssertEqual(csv.int64(0), 12); XCTAssertEqual(csv.int64(1), -7); XCTAssertEqual(csv.int64(2), 5)
            XCTAssertNil(csv.int64(3), "overflow")
            XCTAssertEqual(csv.label(4), 1); XCTAssertEqual(csv.label(5), 0)
            XCTAssertNil(csv.label(6)); XCTAssertNil(csv.label(7)); XCTAssertNil(csv.label(8))
            XCTAssertTrue(csv.isEmpty(8))
        }
    }
}
