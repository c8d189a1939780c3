import ScenePSCore
import ScenePSProtocol
import XCTest
@testable import ScenePSServer

final class WireBadInputTests: XCTestCase {
    let item = TableSpec.sparse(id: 1, name: "item", dim: 4, initKind: .uniform, initScale: 0.1, seed: 1,
                                adam: AdamConfig(learningRate: 0.05))
    let text = TableSpec.sparse(id: 2, name: "item_text", dim: 3, initKind: .normal, initScale: 0.1, seed: 1, frozen: true)
    let mlp = TableSpec.dense(id: 3, name: "mlp", size: 10, adam: AdamConfig(learningRate: 0.05))

    func setUpServer(threads: Int = 2) throws -> TestServer {
        let t = try TestServer(threads: threads, maxMessageBytes: 64 << 10)
        let r = try t.request(.declare(DeclareTables(tables: [item, text, mlp],
                                                     initial: [DenseBlock(tableID: 3, offset: 0, count: 10, values: (0..<10).map { Float($0) })])))
        guard case .ack = r.body else { throw ScenePSError(.internalError, "declare failed: \(r.body)") }
        // Some state to protect: two pushes.
        for _ in 0..<2 {
            let ok = try t.request(.push(Blocks(sparse: [SparseBlock(tableID: 1, keys: [10, 20], values: [Float](repeating: 0.5, count: 8))],
                                                dense: [DenseBlock(tableID: 3, offset: 2, count: 2, values: [1, -1])])))
            guard case .ack(let a) = ok.body, a.appliedRows == 3 else { throw ScenePSError(.internalError, "push failed: \(ok.body)") }
        }
        _ = try t.request(.pull(Blocks(sparse: [SparseBlock(tableID: 2, keys: [7])])))
        return t
    }

    func testEveryBadRequestGetsTheRightStatusAndChangesNothing() throws {
        let t = try setUpServer()
        defer { t.stop() }
        let before = t.snapshot()
        XCTAssertEqual(before.count, 4, "rows 10, 20 of item, 7 of item_text, the dense slice")
        let goodPush = Blocks(sparse: [SparseBlock(tableID: 1, keys: [10, 30], values: [Float](repeating: 1, count: 8))])

        // Malformed frames.
        XCTAssertError(try t.exchange([0xFF, 0xFF, 0xFF, 0x01, 0x02]), .badRequest, contains: "not a valid Envelope")
        let pushBytes = WireCodec.encode(Envelope(requestID: 77, sender: "raw", body: .push(goodPush)))
        XCTAssertError(try t.exchange(Array(pushBytes.dropLast(5))), .badRequest, contains: "truncated")
        XCTAssertError(try t.exchange([]), .badRequest, contains: "empty")
        XCTAssertError(try t.request(.ack(Ack(appliedRows: 1))), .badRequest, contains: "reply")

        // Wrong protocol version: the reply names both versions and keeps the request id.
        let old = try t.exchange(WireCodec.encode(Envelope(version: 9, requestID: 55, sender: "old", body: .heartbeat(Heartbeat()))))
        XCTAssertError(old, .versionMismatch, contains: "9")
        XCTAssertEqual(old.requestID, 55)

        // Unknown table, in a pull and in a push whose first block is valid.
        XCTAssertError(try t.request(.pull(Blocks(sparse: [SparseBlock(tableID: 99, keys: [1])]))), .unknownTable, contains: "99")
        var mixed = goodPush
        mixed.sparse.append(SparseBlock(tableID: 42, keys: [1], values: [1, 2, 3, 4]))
        XCTAssertError(try t.request(.push(mixed)), .unknownTable, contains: "42")

        // A learning-rate scale that is not a positive finite number.
        for scale: Float in [-1, .nan, .infinity, 1e6] {
            var p = goodPush
            p.lrScale = scale
            XCTAssertError(try t.request(.push(p)), .badRequest, contains: "lr_scale")
        }

        // Wrong dimension / key-value count mismatch (after a valid block).
        var wrongDim = goodPush
        wrongDim.sparse.append(SparseBlock(tableID: 1, keys: [40, 50], values: [1, 2, 3, 4, 5, 6, 7]))
        XCTAssertError(try t.request(.push(wrongDim)), .wrongDimension, contains: "7")
        XCTAssertError(try t.request(.push(Blocks(sparse: [SparseBlock(tableID: 1, keys: [10], values: [])]))), .wrongDimension, contains: "item")

        // A key listed twice for a table, in one block or across two blocks of it: refused, not stepped twice.
        XCTAssertError(try t.request(.push(Blocks(sparse: [SparseBlock(tableID: 1, keys: [10, 20, 10], values: [Float](repeating: 1, count: 12))]))),
                       .badRequest, contains: "key 10 is listed twice")
        var split = goodPush
        split.sparse.append(SparseBlock(tableID: 1, keys: [20, 30], values: [Float](repeating: 1, count: 8)))
        XCTAssertError(try t.request(.push(split)), .badRequest, contains: "key 30 is listed twice")

        // Dense slice out of range, overflowing offset, wrong value count.
        XCTAssertError(try t.request(.pull(Blocks(dense: [DenseBlock(tableID: 3, offset: 8, count: 5)]))), .wrongDimension, contains: "outside")
        XCTAssertError(try t.request(.push(Blocks(dense: [DenseBlock(tableID: 3, offset: UInt64.max, count: 2, values: [1, 1])]))),
                       .wrongDimension, contains: "outside")
        XCTAssertError(try t.request(.push(Blocks(dense: [DenseBlock(tableID: 3, offset: 0, count: 3, values: [1, 1])]))),
                       .wrongDimension, contains: "count 3")

        // NaN and Inf gradients (sparse and dense), after a valid block.
        for bad in [Float.nan, .infinity, -.infinity] {
            var p = goodPush
            p.sparse.append(SparseBlock(tableID: 1, keys: [60], values: [0, 1, bad, 2]))
            XCTAssertError(try t.request(.push(p)), .nonFinite, contains: "NaN or Inf")
            var d = goodPush
            d.dense.append(DenseBlock(tableID: 3, offset: 0, count: 2, values: [bad, 0]))
            XCTAssertError(try t.request(.push(d)), .nonFinite, contains: "NaN or Inf")
        }

        // Oversized message: over the 64 KiB limit; the request id still comes back.
        let big = Blocks(sparse: [SparseBlock(tableID: 1, keys: Array(0..<4000), values: [Float](repeating: 1, count: 16000))])
        let tooLarge = try t.request(.push(big), id: 4242)
        XCTAssertError(tooLarge, .tooLarge, contains: "limit")
        XCTAssertEqual(tooLarge.requestID, 4242)

        // Push to a frozen table (after a valid block).
        var frozen = goodPush
        frozen.sparse.append(SparseBlock(tableID: 2, keys: [7], values: [1, 1, 1]))
        XCTAssertError(try t.request(.push(frozen)), .frozen, contains: "item_text")

        // A conflicting declaration, and a bad one, create nothing.
        var conflicting = item
        conflicting.dim = 8
        XCTAssertError(try t.request(.declare(DeclareTables(tables: [TableSpec.sparse(id: 50, name: "new", dim: 2), conflicting]))),
                       .conflict, contains: "dim=8")
        XCTAssertError(try t.request(.declare(DeclareTables(tables: [TableSpec.sparse(id: 51, name: "zero", dim: 0)]))),
                       .badRequest, contains: "dim")
        XCTAssertError(try t.request(.declare(DeclareTables(tables: [TableSpec.dense(id: 52, name: "d2", size: 4)],
                                                            initial: [DenseBlock(tableID: 52, offset: 0, count: 3, values: [1, 2, 3])]))),
                       .wrongDimension, contains: "slice")
        XCTAssertNil(t.server.registry.table(50))
        XCTAssertNil(t.server.registry.table(52))

        // Nothing changed, and the server still answers correctly.
        XCTAssertEqual(t.snapshot(), before)
        let pull = try t.request(.pull(Blocks(sparse: [SparseBlock(tableID: 1, keys: [20, 10]), SparseBlock(tableID: 2, keys: [7])],
                                              dense: [DenseBlock(tableID: 3, offset: 0, count: 10)])))
        guard case .pullReply(let b) = pull.body else { return XCTFail("pull failed: \(pull.body)") }
        guard case .sparse(let itemTable)? = t.server.registry.table(1) else { return XCTFail("item table missing") }
        XCTAssertEqual(b.sparse.count, 2)
        XCTAssertEqual(b.sparse[0].values, itemTable.row(20)!.weights + itemTable.row(10)!.weights)
        XCTAssertEqual(itemTable.row(10)!.step, 2)
        XCTAssertEqual(b.sparse[1].values.count, 3)
        XCTAssertEqual(b.dense.count, 1)
        XCTAssertEqual(b.dense[0].values.count, 10)
        XCTAssertEqual(Array(b.dense[0].values[4...]), (4..<10).map { Float($0) }, "untouched dense values")
        let stats = try t.request(.stats)
        guard case .statsReply(let s) = stats.body else { return XCTFail("stats failed") }
        XCTAssertGreaterThanOrEqual(s.errors, 20)
        // And it still applies a valid push.
        guard case .ack(let a) = try t.request(.push(goodPush)).body else { return XCTFail("valid push rejected") }
        XCTAssertEqual(a.appliedRows, 2)
        XCTAssertEqual(itemTable.row(10)!.step, 3)
    }

    func testRetriedPushIsAppliedOnce() throws {
        let t = try setUpServer(threads: 1)
        defer { t.stop() }
        guard case .sparse(let itemTable)? = t.server.registry.table(1) else { return XCTFail("item table missing") }
        let push = Blocks(sparse: [SparseBlock(tableID: 1, keys: [500], values: [1, 2, 3, 4])])
        let first = try t.request(.push(push), id: 9001, sender: "worker-a")
        guard case .ack(let a1) = first.body else { return XCTFail("push failed") }
        XCTAssertFalse(a1.duplicate)
        let weightsAfterOne = itemTable.row(500)!.weights
        let retry = try t.request(.push(push), id: 9001, sender: "worker-a")
        guard case .ack(let a2) = retry.body else { return XCTFail("retry failed") }
        XCTAssertTrue(a2.duplicate)
        XCTAssertEqual(a2.appliedRows, 1)
        XCTAssertEqual(retry.requestID, 9001)
        XCTAssertEqual(itemTable.row(500)!.step, 1)
        XCTAssertEqual(itemTable.row(500)!.weights, weightsAfterOne)
        // Same id from another sender, and a new id from the same sender, are new pushes.
        guard case .ack(let a3) = try t.request(.push(push), id: 9001, sender: "worker-b").body else { return XCTFail() }
        XCTAssertFalse(a3.duplicate)
        guard case .ack(let a4) = try t.request(.push(push), id: 9002, sender: "worker-a").body else { return XCTFail() }
        XCTAssertFalse(a4.duplicate)
        XCTAssertEqual(itemTable.row(500)!.step, 3)
    }

    func testHelloHeartbeatAndShutdownMessage() throws {
        let t = try TestServer(shardIndex: 1, shardCount: 3, threads: 1)   // the handler owns the ROUTER
        defer { t.stop() }
        let h = try t.request(.hello(Hello(role: "test", shardCount: 3, shardIndex: 1)))
        guard case .helloReply(let r) = h.body else { return XCTFail("no hello reply") }
        XCTAssertEqual(r.shardIndex, 1)
        XCTAssertEqual(r.shardCount, 3)
        XCTAssertEqual(r.tables, [])
        guard case .heartbeat = try t.request(.heartbeat(Heartbeat())).body else { return XCTFail("no heartbeat") }
        guard case .ack = try t.request(.shutdown(reason: "test")).body else { return XCTFail("no shutdown ack") }
        XCTAssertTrue(t.server.wait(timeout: .seconds(5)), "server stops after a Shutdown message")
    }
}
