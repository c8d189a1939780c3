import ScenePSWire
import ScenePSTestSupport
import XCTest
@testable import ScenePSProtocol

final class WireCodecTests: XCTestCase {
    /// Seeded generator for test data (SplitMix64 inline: this target does not depend on ScenePSCore).
    struct Rng {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func float() -> Float { Float(Int64(bitPattern: next()) >> 40) / 1000 }
    }

    static func sampleBodies() -> [Body] {
        var r = Rng(state: 7)
        let spec = TableSpec.sparse(id: 3, name: "item", dim: 4, initKind: .uniform, initScale: 0.05, seed: 99,
                                    adam: AdamConfig(learningRate: 0.01, beta1: 0.8, beta2: 0.99, epsilon: 1e-6, l2: 1e-4))
        let dense = TableSpec.dense(id: 9, name: "mlp", size: 1000, initKind: .normal, initScale: 0.1, seed: 5, frozen: true)
        let keys = (0..<7).map { _ in r.next() }
        let values = (0..<28).map { _ in r.float() }
        let blocks = Blocks(sparse: [SparseBlock(tableID: 3, keys: keys, values: values), SparseBlock(tableID: 4, keys: [1, 2])],
                            dense: [DenseBlock(tableID: 9, offset: 500, count: 3, values: [1.5, -2, 0])])
        return [
            .hello(Hello(role: "worker", scene: "feed", shardCount: 2, shardIndex: 1)),
            .helloReply(HelloReply(shardIndex: 1, shardCount: 2, serverVersion: "v1", tables: [spec, dense])),
            .declare(DeclareTables(tables: [spec, dense], initial: [DenseBlock(tableID: 9, offset: 500, count: 2, values: [0.25, 0.5])])),
            .declare(DeclareTables(tables: [])),
            .pull(Blocks(sparse: [SparseBlock(tableID: 3, keys: keys)], dense: [DenseBlock(tableID: 9, offset: 0, count: 500)])),
            .pullReply(blocks),
            .push(blocks),
            .push(Blocks()),
            .push(Blocks(dense: [DenseBlock(tableID: 9, offset: 0, count: 1, values: [0.5])], lrScale: 0.1)),
            .ack(Ack(appliedRows: 4097, duplicate: true)),
            .error(ErrorReply(status: .wrongDimension, message: "bad dim ✓")),
            .error(ErrorReply(status: .unknownTicket, message: "ticket 7")),
            .stats,
            .statsReply(StatsReply(shardIndex: 1, tables: [TableStats(id: 3, name: "item", rows: 10, bytes: 4000, pulls: 5, pushes: 6)],
                                   requests: 11, errors: 2, uptimeSeconds: 3.5, handleSeconds: 1.25, pushApplySeconds: 0.5,
                                   handleBucketBounds: [1e-5, 2e-5], handleBucketCounts: [3, 0, 1 << 40])),
            .heartbeat(Heartbeat()),
            .heartbeat(Heartbeat(epoch: 3, progress: 0.25, peers: 4, peersMinProgress: 0.125)),
            .shutdown(reason: "done"),
            .snapshot(SnapshotRequest(action: .restore, name: "best")),
        ] + CoordinatorSamples.bodies + [
            .coordinatorCheckpoint(CoordinatorCheckpointRequest(ticket: 0, tags: "x,y")),
            .coordinatorCheckpointReply({
                var r = CoordinatorCheckpointReply(state: .done, ticket: 3)
                r.name = "ckpt-1"; r.path = "/r/checkpoints/ckpt-1"; r.epoch = 2; r.chunksDone = 9
                r.pushStallMs = 1.5; r.bytes = 1 << 33; r.seconds = 0.75; r.message = "ok"
                return r
            }()),
            .recovery(RecoveryRequest(action: .rewind, checkpoint: "/r/checkpoints/ckpt-1", reason: "server-1 died")),
            .recoveryReply({
                var r = RecoveryReply()
                r.checkpointing = true; r.epochFrom = 3; r.epochTo = 2; r.chunksUndone = 4; r.examplesUndone = 8000
                r.leasesReleased = 2; r.message = "m"
                return r
            }()),
        ]
    }

    func testRoundTripEveryMessageKind() throws {
        let bodies = Self.sampleBodies()
        var kinds = Set<String>()
        for (i, body) in bodies.enumerated() {
            let env = Envelope(requestID: UInt64(i) * 1_000_003 + 1, sender: "worker-\(i)", body: body)
            let bytes = WireCodec.encode(env)
            let back = try WireCodec.decode(bytes)
            XCTAssertEqual(back, env, "round trip of \(body.kindName)")
            // The owned-buffer path produces the same bytes.
            XCTAssertEqual(WireCodec.encodeBuffer(env).withUnsafeBytes { [UInt8]($0) }, bytes)
            kinds.insert(body.kindName)
        }
        XCTAssertEqual(kinds.count, 27, "every body kind is covered")
    }

    func testLargeSparseBlockRoundTrip() throws {
        var r = Rng(state: 11)
        let keys = (0..<4096).map { _ in r.next() }
        let values = (0..<(4096 * 32)).map { _ in r.float() }
        let env = Envelope(requestID: 42, sender: "bench", body: .push(Blocks(sparse: [SparseBlock(tableID: 1, keys: keys, values: values)])))
        let back = try WireCodec.decode(WireCodec.encode(env))
        guard case .push(let b) = back.body else { return XCTFail("wrong body \(back.body.kindName)") }
        XCTAssertEqual(b.sparse.count, 1)
        XCTAssertEqual(b.sparse[0].keys.count, 4096)
        XCTAssertEqual(b.sparse[0].values.count, 4096 * 32)
        XCTAssertEqual(b.sparse[0].keys, keys)
        XCTAssertEqual(b.sparse[0].values, values)
    }

    func testWrongVersionIsRejectedWithRequestID() {
        let env = Envelope(version: 7, requestID: 1234, sender: "old", body: .heartbeat(Heartbeat()))
        XCTAssertThrowsError(try WireCodec.decode(WireCodec.encode(env))) { error in
            guard let e = error as? WireDecodingError else { return XCTFail("wrong error \(error)") }
            XCTAssertEqual(e.status, .versionMismatch)
            XCTAssertEqual(e.requestID, 1234)
            XCTAssertTrue(e.message.contains("7"), e.message)
        }
    }

    func testMissingBodyIsRejected() {
        var msg = Sceneps__Envelope()
        sceneps__envelope__init(&msg)
        msg.version = WireProtocol.version
        msg.request_id = 5
        let size = sceneps__envelope__get_packed_size(&msg)
        var bytes = [UInt8](repeating: 0, count: size)
        _ = sceneps__envelope__pack(&msg, &bytes)
        XCTAssertThrowsError(try WireCodec.decode(bytes)) { error in
            let e = error as? WireDecodingError
            XCTAssertEqual(e?.status, .badRequest)
            XCTAssertEqual(e?.requestID, 5)
        }
    }

    func testGarbageAndTruncatedFramesThrowAndNeverCrash() {
        XCTAssertThrowsError(try WireCodec.decode([UInt8]()))
        let env = Envelope(requestID: 99, sender: "w", body: Self.sampleBodies()[5])
        let good = WireCodec.encode(env)
        // Every strict prefix either fails or (rarely) decodes to a different, still valid, message.
        var failures = 0
        for cut in 0..<good.count {
            do {
                let e = try WireCodec.decode(Array(good[0..<cut]))
                XCTAssertNotEqual(e, env, "a prefix of \(cut) bytes decoded to the full message")
            } catch {
                XCTAssertFalse(error.message.isEmpty)
                failures += 1
            }
        }
        XCTAssertGreaterThan(failures, good.count / 2, "most truncations are detected")
        // Random garbage and bit flips: must throw or decode, never crash.
        var r = Rng(state: 3)
        var garbageFailures = 0
        for len in [1, 2, 3, 7, 16, 100, 1000] {
            for _ in 0..<50 {
                let bytes = (0..<len).map { _ in UInt8(truncatingIfNeeded: r.next()) }
                if (try? WireCodec.decode(bytes)) == nil { garbageFailures += 1 }
            }
        }
        XCTAssertGreaterThan(garbageFailures, 300)
        for _ in 0..<500 {
            var flipped = good
            let i = Int(r.next() % UInt64(flipped.count))
            flipped[i] ^= UInt8(truncatingIfNeeded: r.next() | 1)
            _ = try? WireCodec.decode(flipped)
        }
    }

    func testPeekHeaderReadsRequestIDWithoutDecoding() {
        let bytes = WireCodec.encode(Envelope(requestID: 0xDEAD_BEEF_1234, sender: "x", body: .heartbeat(Heartbeat())))
        bytes.withUnsafeBytes { b in
            let h = WireCodec.peekHeader(b)
            XCTAssertEqual(h.version, WireProtocol.version)
            XCTAssertEqual(h.requestID, 0xDEAD_BEEF_1234)
        }
        [UInt8]([0xFF, 0x00]).withUnsafeBytes { b in
            XCTAssertEqual(WireCodec.peekHeader(b).requestID, 0)
        }
    }
}
