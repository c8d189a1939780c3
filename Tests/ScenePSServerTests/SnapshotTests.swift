import Logging
import ScenePSClient
import ScenePSCore
import ScenePSProtocol
import XCTest
@testable import ScenePSServer

/// Named in-memory snapshots of every table (the schedule's "back to the best
/// epoch's model"): weights, Adam moments and row steps come back exactly,
/// rows created after the save are gone, on every server of a cluster.
final class SnapshotTests: XCTestCase {
    let item = TableSpec.sparse(id: 1, name: "item", dim: 4, initKind: .uniform, initScale: 0.1, seed: 5,
                                adam: AdamConfig(learningRate: 0.05))
    let mlp = TableSpec.dense(id: 9, name: "mlp", size: 13, adam: AdamConfig(learningRate: 0.02))

    func makeCluster(_ n: Int) throws -> ([TestServer], PSClient) {
        let (servers, client) = try makeTestCluster(n, sender: "snapshot-test")
        try client.declare([item, mlp], denseInitial: [:])
        return (servers, client)
    }

    func push(_ client: PSClient, keys: [UInt64], seed: UInt64, lrScale: Float = 1) throws {
        var rng = SplitMix64(seed: seed)
        let values = (0..<(keys.count * 4)).map { _ in Float(rng.nextUnit() - 0.5) }
        let dense = (0..<13).map { _ in Float(rng.nextUnit() - 0.5) }
        try client.wait(client.push([SparseGradient(tableID: 1, keys: keys, values: values)],
                        dense: [DenseGradient(tableID: 9, values: dense)], lrScale: lrScale))
    }

    func testRestoreBringsBackWeightsMomentsAndStepsExactly() throws {
        let (servers, client) = try makeCluster(2)
        defer { servers.forEach { $0.stop() } }
        var rng = SplitMix64(seed: 3)
        let old = (0..<300).map { _ in rng.next() }
        let new = (0..<100).map { _ in rng.next() }
        _ = try client.wait(client.pull([SparsePull(tableID: 1, keys: old)], dense: [9]))
        for k in 0..<5 { try push(client, keys: Array(old[(k * 40)..<(k * 40 + 120)]), seed: UInt64(k)) }
        let saved = servers.map { $0.snapshot() }
        XCTAssertEqual(try client.snapshot(.save, name: "best"), 300, "rows copied over both servers")

        // Training goes on: old rows move, new rows appear, the dense slices step.
        _ = try client.wait(client.pull([SparsePull(tableID: 1, keys: new)]))
        try push(client, keys: old + new, seed: 10)
        let moved = servers.map { $0.snapshot() }
        XCTAssertNotEqual(moved, saved)
        XCTAssertEqual(try client.snapshot(.restore, name: "best"), 300)
        XCTAssertEqual(servers.map { $0.snapshot() }, saved, "every row, moment, step and dense slice as saved; new rows gone")

        // The same push after the restore gives exactly what it gave after the save.
        try push(client, keys: old + new, seed: 10)
        XCTAssertEqual(servers.map { $0.snapshot() }, moved)
        // A snapshot can be restored again (it is not consumed), and saving replaces it.
        try client.snapshot(.restore, name: "best")
        XCTAssertEqual(servers.map { $0.snapshot() }, saved)
        try push(client, keys: old, seed: 11)
        let later = servers.map { $0.snapshot() }
        try client.snapshot(.save, name: "best")
        try push(client, keys: old, seed: 12)
        try client.snapshot(.restore, name: "best")
        XCTAssertEqual(servers.map { $0.snapshot() }, later)
    }

    func testUnknownOrEmptyNameIsAnErrorAndChangesNothing() throws {
        let s = try TestServer()
        defer { s.stop() }
        _ = try s.request(.declare(DeclareTables(tables: [item])))
        _ = try s.request(.pull(Blocks(sparse: [SparseBlock(tableID: 1, keys: [1, 2, 3], values: [])])))
        let before = s.snapshot()
        XCTAssertError(try s.request(.snapshot(SnapshotRequest(action: .restore, name: "best"))), .badRequest,
                       contains: "no snapshot named 'best' on this server (it has: none)")
        XCTAssertError(try s.request(.snapshot(SnapshotRequest(action: .save, name: ""))), .badRequest, contains: "needs a name")
        XCTAssertEqual(s.snapshot(), before)
        guard case .ack(let a) = try s.request(.snapshot(SnapshotRequest(action: .save, name: "a"))).body else {
            return XCTFail("save not acknowledged")
        }
        XCTAssertEqual(a.appliedRows, 3)
        XCTAssertError(try s.request(.snapshot(SnapshotRequest(action: .restore, name: "b"))), .badRequest, contains: "(it has: a)")
    }

    func testSnapshotMessagesRoundTripAndAnUnknownActionIsRefused() throws {
        for action in SnapshotRequest.Action.allCases {
            let e = Envelope(requestID: 7, sender: "t", body: .snapshot(SnapshotRequest(action: action, name: "best")))
            XCTAssertEqual(try WireCodec.decode(WireCodec.encode(e)), e)
        }
    }

    /// A large table round-trips through a snapshot (arena chunks of every size).
    func testLargeTableRoundTrip() throws {
        let spec = TableSpec.sparse(id: 2, name: "big", dim: 8, initKind: .uniform, initScale: 0.5, seed: 1)
        let table = SparseTable(spec: spec, optimizer: Adam(spec.adam), stripeBits: 2)
        var rng = SplitMix64(seed: 9)
        let keys = (0..<20_000).map { _ in rng.next() }
        let grads = [Float](repeating: 0.25, count: keys.count * 8)
        keys.withUnsafeBufferPointer { k in grads.withUnsafeBufferPointer { table.push(keys: k, gradients: $0.baseAddress!) } }
        func rows() -> [UInt64: String] {
            var out: [UInt64: String] = [:]
            table.forEachRow { key, w, st, step in out[key] = "\(Array(w))\(Array(st))\(step)" }
            return out
        }
        let before = rows()
        let snap = table.snapshot()
        XCTAssertEqual(snap.rows, keys.count)
        keys.prefix(1000).withUnsafeBufferPointer { k in grads.withUnsafeBufferPointer { table.push(keys: k, gradients: $0.baseAddress!) } }
        let extra: [UInt64] = (0..<5000).map { _ in rng.next() }
        var out = [Float](repeating: 0, count: extra.count * 8)
        extra.withUnsafeBufferPointer { k in out.withUnsafeMutableBufferPointer { table.pull(keys: k, into: $0.baseAddress!) } }
        XCTAssertEqual(table.memory().rows, keys.count + extra.count)
        table.restore(snap)
        XCTAssertEqual(table.memory().rows, keys.count)
        XCTAssertEqual(rows(), before)
        // Every key is still found through the restored index.
        XCTAssertEqual(keys.filter { table.row($0) == nil }.count, 0)
    }
}
