import Foundation
import Logging
import ScenePSCore
import ScenePSProtocol
import XCTest
@testable import ScenePSServer

/// Row caps (docs/SECURITY.md, "Limits"): a request that would create rows
/// past a table's cap is refused whole, naming the table and the cap.
final class RowLimitTests: XCTestCase {
    static let item = TableSpec.sparse(id: 1, name: "item", dim: 4, initKind: .uniform, initScale: 0.1, seed: 1)
    static let user = TableSpec.sparse(id: 2, name: "user", dim: 4, initKind: .uniform, initScale: 0.1, seed: 1)

    func handler(_ limits: RowLimits, shards: Int = 1) -> RequestHandler {
        let registry = TableRegistry(shardIndex: 0, shardCount: shards)
        registry.limits = limits
        var logger = Logger(label: "row-limit-test")
        logger.logLevel = .critical
        return RequestHandler(registry: registry, maxMessageBytes: 1 << 20, logger: logger)
    }

    func call(_ h: RequestHandler, _ body: Body) -> Body {
        let bytes = WireCodec.encode(Envelope(requestID: UInt64.random(in: 1...UInt64.max), sender: "t", body: body))
        return bytes.withUnsafeBytes { h.handle(frame: $0, peer: "p").reply.body }
    }

    func rows(_ h: RequestHandler, _ id: UInt32 = 1) -> Int {
        guard case .sparse(let t)? = h.registry.table(id) else { return -1 }
        return t.rowCount
    }

    func pull(_ keys: [UInt64], _ id: UInt32 = 1) -> Body { .pull(Blocks(sparse: [SparseBlock(tableID: id, keys: keys)])) }

    func assertFull(_ b: Body, _ mentions: [String], file: StaticString = #filePath, line: UInt = #line) {
        guard case .error(let e) = b else { return XCTFail("expected TABLE_FULL, got \(b.kindName)", file: file, line: line) }
        XCTAssertEqual(e.status, .tableFull, e.message, file: file, line: line)
        for m in mentions { XCTAssertTrue(e.message.contains(m), "'\(e.message)' should mention '\(m)'", file: file, line: line) }
    }

    func testAPullOrPushPastMaxRowsIsRefusedWholeAndCreatesNothing() {
        // max_rows 20 over 2 servers: 10 on this one.
        let h = handler(RowLimits(budgetBytes: nil, explicit: ["item": 20]), shards: 2)
        guard case .ack = call(h, .declare(DeclareTables(tables: [Self.item, Self.user]))) else { return XCTFail("declare") }
        guard case .pullReply = call(h, pull(Array(1...8))) else { return XCTFail("a pull within the cap") }
        XCTAssertEqual(rows(h), 8)
        assertFull(call(h, pull(Array(5...12))), ["'item'", "cap of 10 rows", "max_rows 20 over 2 server(s)", "4 new rows", "it holds 8",
                                                  "tables.item.max_rows"])
        XCTAssertEqual(rows(h), 8, "a refused pull created rows")
        // A pull of rows it holds, and one that reaches the cap exactly, are served.
        guard case .pullReply = call(h, pull(Array(1...8))) else { return XCTFail("a pull of existing rows") }
        guard case .pullReply = call(h, pull(Array(7...10))) else { return XCTFail("a pull up to the cap") }
        XCTAssertEqual(rows(h), 10)
        // A push that would create a row is refused too; one to existing rows applies.
        assertFull(call(h, .push(Blocks(sparse: [SparseBlock(tableID: 1, keys: [11], values: [1, 1, 1, 1])]))), ["this push", "cap of 10"])
        guard case .ack = call(h, .push(Blocks(sparse: [SparseBlock(tableID: 1, keys: [3], values: [1, 1, 1, 1])]))) else { return XCTFail("push") }
        XCTAssertEqual(rows(h), 10)
        // Another table has no explicit cap and no budget: unlimited.
        guard case .pullReply = call(h, pull(Array(1...100), 2)) else { return XCTFail("an uncapped table") }
        XCTAssertEqual(rows(h, 2), 100)
    }

    func testTheDefaultCapIsAnEqualShareOfTheBudgetAtTwiceTheRowCost() {
        let perRow = RowLimits.bytesPerRow(dim: 4)
        XCTAssertEqual(perRow, (3 + 4 * 3) * 4 + 20)
        // A budget of 200 rows' cost, shared by two sparse tables, each row counted twice: 50 rows each.
        let h = handler(RowLimits(budgetBytes: UInt64(100 * 2 * perRow)))
        guard case .ack = call(h, .declare(DeclareTables(tables: [Self.item, Self.user]))) else { return XCTFail("declare") }
        guard case .pullReply = call(h, pull(Array(1...50))) else { return XCTFail("a pull within the cap") }
        assertFull(call(h, pull([51])), ["cap of 50 rows", "memory budget", "\(perRow) B a row"])
    }

    /// The cost a cap assumes is what a row really takes: at d = 32 with Adam, about 415 B
    /// (record 396 B, index 8 B per slot at a load of 0.4 to 0.8).
    func testBytesPerRowBoundsTheMeasuredCost() {
        let spec = TableSpec.sparse(id: 9, name: "item", dim: 32, initKind: .uniform, initScale: 0.1, seed: 1)
        let t = SparseTable(spec: spec, optimizer: Adam(AdamConfig()))
        let n = 200_000
        var out = [Float](repeating: 0, count: 1000 * 32)
        for start in stride(from: 0, to: n, by: 1000) {
            let keys = (start..<(start + 1000)).map { KeyHash.mix64(UInt64($0)) }
            keys.withUnsafeBufferPointer { k in out.withUnsafeMutableBufferPointer { t.pull(keys: k, into: $0.baseAddress!) } }
        }
        let m = t.memory()
        XCTAssertEqual(m.rows, n)
        let measured = Double(m.totalBytes) / Double(n)
        let assumed = Double(RowLimits.bytesPerRow(dim: 32))
        XCTAssertEqual(assumed, 416)
        XCTAssertGreaterThan(measured, 396, "a row's record alone is 396 B")
        XCTAssertLessThan(measured, assumed * 1.05, "measured \(measured) B a row; the cap assumes \(assumed)")
        print(String(format: "bytes per row at d=32 with Adam: measured %.1f (200000 rows), assumed %.0f", measured, assumed))
    }
}
