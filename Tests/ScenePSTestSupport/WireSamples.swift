import ScenePSProtocol

/// One valid body of every wire message, every field set to a value that is
/// not its default (the coordinator's from `CoordinatorSamples`). The golden
/// bytes test (WireGoldenBytesTests) pins what the codec makes of each; add a
/// sample here when a message is added and regenerate only that line.
public enum WireSamples {
    /// SplitMix64, so the float/key payloads are fixed without ScenePSCore.
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

    public static var bodies: [Body] {
        var r = Rng(state: 11)
        let spec = TableSpec.sparse(id: 3, name: "item", dim: 4, initKind: .uniform, initScale: 0.05, seed: 99,
                                    adam: AdamConfig(learningRate: 0.01, beta1: 0.8, beta2: 0.99, epsilon: 1e-6, l2: 1e-4),
                                    initFile: "/m/titles")
        let dense = TableSpec.dense(id: 9, name: "mlp", size: 1000, initKind: .normal, initScale: 0.1, seed: 5, frozen: true)
        let keys = (0..<7).map { _ in r.next() }
        let values = (0..<28).map { _ in r.float() }
        let blocks = Blocks(sparse: [SparseBlock(tableID: 3, keys: keys, values: values), SparseBlock(tableID: 4, keys: [1, 2])],
                            dense: [DenseBlock(tableID: 9, offset: 500, count: 3, values: [1.5, -2, 0])])
        let stats = TableStats(id: 3, name: "item", rows: 10, bytes: 4000, pulls: 5, pushes: 6)
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
            .stats,
            .statsReply(StatsReply(shardIndex: 1, tables: [stats], requests: 11, errors: 2, uptimeSeconds: 3.5,
                                   handleSeconds: 1.25, pushApplySeconds: 0.5)),
            .heartbeat(Heartbeat()),
            .heartbeat(Heartbeat(epoch: 3, progress: 0.25, peers: 4, peersMinProgress: 0.125)),
            .shutdown(reason: "done"),
            .snapshot(SnapshotRequest(action: .restore, name: "best")),
            .checkpoint(CheckpointRequest(action: .commit, name: "ckpt-2", dir: "/r/ckpt", holdTimeoutMs: 1500)),
            .checkpointReply({
                var c = CheckpointReply(state: .done, name: "ckpt-2")
                c.shardIndex = 1; c.shardCount = 3; c.appliedPushes = 77; c.heldPushes = 4; c.holdMs = 2.5
                c.pushStallMs = 1.25; c.file = "shard-1.bin"; c.bytes = 1 << 34; c.checksum = "crc32c:0badf00d"
                c.rows = 123; c.writeSeconds = 0.5; c.message = "ok"; c.tables = [spec, dense]
                c.tableRows = [stats]; c.preservedRows = 9
                return c
            }()),
            .checkpointReply(CheckpointReply(state: .failed, name: "")),
        ] + CoordinatorSamples.bodies + [
            .coordinatorCheckpoint(CoordinatorCheckpointRequest(ticket: 4, tags: "x,y")),
            .coordinatorCheckpointReply({
                var c = CoordinatorCheckpointReply(state: .done, ticket: 3)
                c.name = "ckpt-1"; c.path = "/r/checkpoints/ckpt-1"; c.epoch = 2; c.chunksDone = 9
                c.pushStallMs = 1.5; c.bytes = 1 << 33; c.seconds = 0.75; c.message = "ok"
                return c
            }()),
            .recovery(RecoveryRequest(action: .rewind, checkpoint: "/r/checkpoints/ckpt-1", reason: "server-1 died")),
            .recoveryReply({
                var c = RecoveryReply()
                c.checkpointing = true; c.epochFrom = 3; c.epochTo = 2; c.chunksUndone = 4; c.examplesUndone = 8000
                c.leasesReleased = 2; c.message = "m"
                return c
            }()),
        ]
    }
}
