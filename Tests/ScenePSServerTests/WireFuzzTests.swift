import ScenePSCore
import ScenePSProtocol
import ScenePSTestSupport
import XCTest
@testable import ScenePSServer

/// Seeded mutations of a valid frame of every message type, decoded here and
/// sent to a live server: the decoder throws a typed error or yields a valid
/// message, never crashes; the server answers every frame (an undecodable one
/// with the decoder's status and, when readable, the request id), keeps serving,
/// and counts exactly the errors it replied.
final class WireFuzzTests: XCTestCase {
    static let item = TableSpec.sparse(id: 1, name: "item", dim: 4, initKind: .uniform, initScale: 0.1, seed: 1,
                                       adam: AdamConfig(learningRate: 0.05))
    static let mlp = TableSpec.dense(id: 3, name: "mlp", size: 10, adam: AdamConfig(learningRate: 0.05))

    /// One valid body of every kind (the replies too: a server must refuse them, not trust them).
    static var bodies: [Body] {
        let blocks = Blocks(sparse: [SparseBlock(tableID: 1, keys: [10, 20, 30], values: (0..<12).map { Float($0) / 8 })],
                            dense: [DenseBlock(tableID: 3, offset: 2, count: 3, values: [0.5, -0.25, 1])], lrScale: 0.5)
        return [
            .hello(Hello(role: "worker", scene: "home", shardCount: 1, shardIndex: 0)),
            .helloReply(HelloReply(shardIndex: 0, shardCount: 1, serverVersion: "v", tables: [item, mlp])),
            .declare(DeclareTables(tables: [item, mlp])),
            .pull(Blocks(sparse: [SparseBlock(tableID: 1, keys: [10, 20, 99])], dense: [DenseBlock(tableID: 3, offset: 0, count: 10)])),
            .pullReply(blocks),
            .push(blocks),
            .ack(Ack(appliedRows: 3, duplicate: true)),
            .error(ErrorReply(status: .conflict, message: "x")),
            .stats,
            .statsReply(StatsReply(shardIndex: 0, tables: [TableStats(id: 1, name: "item", rows: 1, bytes: 2, pulls: 3, pushes: 4)],
                                   requests: 5, errors: 6, uptimeSeconds: 7, handleSeconds: 8, pushApplySeconds: 9)),
            .heartbeat(Heartbeat(epoch: 1, progress: 0.5)),
            .shutdown(reason: "fuzz"),
            .snapshot(SnapshotRequest(action: .restore, name: "best")),
        ] + CoordinatorSamples.bodies + [
            // No checkpoint directory on this server: a mutated PREPARE is refused, never holds pushes.
            .checkpoint(CheckpointRequest(action: .status, name: "fuzz")),
            .checkpointReply({ var r = CheckpointReply(state: .done, name: "fuzz"); r.file = "f"; r.tables = [item]; return r }()),
        ]
    }

    static func mutate(_ good: [UInt8], _ rng: inout SplitMix64) -> [UInt8] {
        var b = good
        func pos() -> Int { Int(rng.next() % UInt64(max(b.count, 1))) }
        switch rng.next() % 5 {
        case 0:   // one to three bit flips
            for _ in 0...(rng.next() % 3) where !b.isEmpty { b[pos()] ^= UInt8(1) << UInt8(rng.next() % 8) }
        case 1:   // truncation
            b = Array(b.prefix(pos()))
        case 2:   // a random byte replaced
            if !b.isEmpty { b[pos()] = UInt8(truncatingIfNeeded: rng.next()) }
        case 3:   // random bytes inserted
            let at = pos()
            b.insert(contentsOf: (0..<(1 + rng.next() % 4)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, at: at)
        default:  // a slice duplicated (repeated fields, overlong lengths)
            let a = pos(), n = min(b.count - a, 1 + Int(rng.next() % 16))
            b.insert(contentsOf: b[a..<(a + n)], at: pos())
        }
        return b
    }

    func testMutatedFramesOfEveryTypeAreDecodedOrRefusedAndTheServerKeepsServing() throws {
        let t = try TestServer(threads: 2, maxMessageBytes: 64 << 10)
        defer { t.stop() }
        guard case .ack = try t.request(.declare(DeclareTables(tables: [Self.item, Self.mlp]))).body else {
            return XCTFail("declare failed")
        }
        var rng = SplitMix64(seed: 1414)
        var kinds = Set<String>(), sent = 0, refusedUndecodable = 0, errorReplies = 0, decodedOK = 0
        for (k, body) in Self.bodies.enumerated() {
            let good = WireCodec.encode(Envelope(requestID: 5000 + UInt64(k), sender: "fuzz", body: body))
            kinds.insert(body.kindName)
            for _ in 0..<60 {
                let bytes = Self.mutate(good, &rng)
                var expected: WireDecodingError? = nil
                do {
                    let env = try WireCodec.decode(bytes)
                    decodedOK += 1
                    // Still a valid message: round-trips, and is sent unless it would stop the server.
                    let again = WireCodec.encode(env)   // bytes, not values: a flipped float may be NaN
                    XCTAssertEqual(WireCodec.encode(try WireCodec.decode(again)), again, "a decoded mutation round-trips")
                    if case .shutdown = env.body { continue }
                } catch {
                    XCTAssertFalse(error.message.isEmpty, "\(body.kindName): decoding error without a message")
                    XCTAssertTrue([.badRequest, .versionMismatch].contains(error.status), "\(body.kindName): \(error.status)")
                    expected = error
                }
                let reply = try t.exchange(bytes)
                sent += 1
                if case .error = reply.body { errorReplies += 1 }
                if let expected {
                    refusedUndecodable += 1
                    XCTAssertError(reply, expected.status, contains: String(expected.message.prefix(20)))
                    XCTAssertEqual(reply.requestID, expected.requestID, "\(body.kindName): the reply keeps the request id the decoder read")
                }
            }
        }
        XCTAssertEqual(kinds.count, 25, "every message type was fuzzed")
        XCTAssertGreaterThan(refusedUndecodable, 200, "most mutations are undecodable")
        XCTAssertGreaterThan(decodedOK, 20, "some mutations decode (flipped values): the server got those too")
        // Still serving, with exactly the errors it replied counted.
        guard case .statsReply(let s) = try t.request(.stats).body else { return XCTFail("no stats after the fuzz") }
        XCTAssertEqual(s.errors, UInt64(errorReplies), "every error reply is counted, and nothing else")
        XCTAssertGreaterThanOrEqual(s.requests, UInt64(sent + 2))
        let pull = try t.request(.pull(Blocks(sparse: [SparseBlock(tableID: 1, keys: [10])], dense: [DenseBlock(tableID: 3, offset: 0, count: 10)])))
        guard case .pullReply(let b) = pull.body else { return XCTFail("pull after the fuzz: \(pull.body)") }
        XCTAssertEqual(b.sparse.first?.values.count, 4)
        XCTAssertEqual(b.dense.first?.values.count, 10)
        XCTAssertTrue(b.sparse[0].values.allSatisfy(\.isFinite) && b.dense[0].values.allSatisfy(\.isFinite),
                      "no mutation put a non-finite value into the tables")
    }
}
