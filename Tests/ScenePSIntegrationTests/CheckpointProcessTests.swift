import Foundation
import Logging
import ScenePSClient
import ScenePSCore
import ScenePSProtocol
import XCTest

/// Checkpoints with real server processes: `psctl checkpoint` while a client
/// pushes, a disk that fills (fault point), a server killed with SIGKILL while
/// it writes (fault point), `ps-server --restore latest|latest-good` after a
/// damaged file, onto another server count. Ports: slot 7.
final class CheckpointProcessTests: XCTestCase {
    let item = TableSpec.sparse(id: 1, name: "item", dim: 4, initKind: .uniform, initScale: 0.1, seed: 5,
                                adam: AdamConfig(learningRate: 0.05))
    let mlp = TableSpec.dense(id: 9, name: "mlp", size: 13, adam: AdamConfig(learningRate: 0.02))
    static let keys: [UInt64] = { var r = SplitMix64(seed: 3); return (0..<3000).map { _ in r.next() } }()

    func testKilledWriteFullDiskDamageAndRestoreWithRealServers() throws {
        try Harness.requireBinaries()
        let tmp = try Harness.tempDir("ckpt")
        defer { try? FileManager.default.removeItem(at: tmp) }
        let ck = tmp.appendingPathComponent("checkpoints").path
        let base = Harness.basePort(slot: 7)
        let bin = Harness.bin
        var running: [Harness.Running] = []
        defer { for r in running where r.process.isRunning { kill(r.process.processIdentifier, SIGKILL) } }

        func server(_ i: Int, _ n: Int, env: [String: String] = [:], restore: String? = nil) throws -> Harness.Running {
            var args = ["--shard-index", "\(i)", "--shard-count", "\(n)", "--bind", "tcp://127.0.0.1:\(base + i)",
                        "--checkpoint-dir", ck, "--log-level", "warning"]
            if let restore { args += ["--restore", restore] }
            let r = try Harness.Running(bin.appendingPathComponent("ps-server").path, args, environment: env)
            running.append(r)
            return r
        }
        func ready(_ r: Harness.Running) {
            XCTAssertTrue(r.waitFor("ready shard=", timeout: 30), "server not ready:\n\(r.output)")
        }
        func endpoints(_ n: Int) -> String { (0..<n).map { "tcp://127.0.0.1:\(base + $0)" }.joined(separator: ",") }
        func client(_ n: Int) throws -> PSClient {
            var o = PSClientOptions(); o.timeout = .seconds(5); o.retries = 1
            var l = Logger(label: "t"); l.logLevel = .critical
            let c = try PSClient(endpoints: endpoints(n).split(separator: ",").map(String.init), sender: "ckpt-it", options: o, logger: l)
            try c.declare([item, mlp])
            return c
        }
        func push(_ c: PSClient, _ k: Int) throws {
            var rng = SplitMix64(seed: UInt64(k + 1))
            let keys = Array(Self.keys[(k * 97 % 1000)..<(k * 97 % 1000 + 2000)])
            try c.wait(c.push([SparseGradient(tableID: 1, keys: keys, values: (0..<(keys.count * 4)).map { _ in Float(rng.nextUnit() - 0.5) })],
                       dense: [DenseGradient(tableID: 9, values: (0..<13).map { _ in Float(rng.nextUnit() - 0.5) })]))
        }
        func weights(_ c: PSClient) throws -> [Float] {
            let r = try c.wait(c.pull([SparsePull(tableID: 1, keys: Self.keys)], dense: [9]))
            return r.sparse[0] + r.dense[9]!
        }
        func psctl(_ args: [String]) throws -> (status: Int32, output: String) {
            try Harness.run(bin.appendingPathComponent("psctl").path, args, timeout: 60)
        }

        // Two servers: server 0 fails its write of c-full (ENOSPC), server 1 dies while writing c-kill.
        let s0 = try server(0, 2, env: ["SCENEPS_FAULT_CHECKPOINT": "enospc:c-full"])
        let s1 = try server(1, 2, env: ["SCENEPS_FAULT_CHECKPOINT": "after-shard-write:c-kill"])
        ready(s0); ready(s1)
        let c = try client(2)
        for k in 0..<4 { try push(c, k) }
        var r = try psctl(["checkpoint", "--servers", endpoints(2), "--dir", ck, "--name", "c0"])
        XCTAssertEqual(r.status, 0, r.output)
        let atC0 = try weights(c)
        for k in 4..<8 { try push(c, k) }
        r = try psctl(["checkpoint", "--servers", endpoints(2), "--dir", ck, "--name", "c1", "--keep", "5"])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("global_step=16"), r.output)
        let atC1 = try weights(c)
        try push(c, 8)

        // A full disk: a clean failure, training goes on, c1 stays the latest.
        r = try psctl(["checkpoint", "--servers", endpoints(2), "--dir", ck, "--name", "c-full"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.output.contains("No space left on device") && r.output.contains("server 0"), r.output)
        try push(c, 9)
        XCTAssertTrue(s0.process.isRunning && s1.process.isRunning)

        // SIGKILL while writing: psctl fails naming the server, no manifest, c1 stays the latest.
        r = try psctl(["checkpoint", "--servers", endpoints(2), "--dir", ck, "--name", "c-kill", "--timeout-ms", "2000"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.output.contains("server 1"), r.output)
        XCTAssertNotNil(s1.waitExit(timeout: 10))
        XCTAssertEqual(s1.process.terminationReason, .uncaughtSignal)
        XCTAssertEqual(s1.process.terminationStatus, SIGKILL)
        XCTAssertFalse(FileManager.default.fileExists(atPath: ck + "/c-kill/manifest.json"))
        r = try psctl(["verify-checkpoint", "latest", "--dir", ck])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("ok \(ck)/c1"), r.output)
        XCTAssertTrue(r.output.contains("incomplete \(ck)/c-kill"), r.output)
        s0.process.terminate()
        XCTAssertEqual(s0.waitExit(timeout: 15), 0)

        // Restore latest on two servers: exactly the weights at c1.
        let r0 = try server(0, 2, env: ["SCENEPS_FAULT_CHECKPOINT": "mid-shard-write:c-mid"], restore: "latest")
        let r1 = try server(1, 2, restore: "latest")
        ready(r0); ready(r1)
        XCTAssertTrue(r0.output.contains("restored checkpoint=\(ck)/c1"), r0.output)
        let rc = try client(2)
        XCTAssertEqual(try weights(rc), atC1, "restored weights are c1's")
        // SIGKILL in the middle of a shard file: a partial temporary file, never chosen.
        try push(rc, 10)
        r = try psctl(["checkpoint", "--servers", endpoints(2), "--dir", ck, "--name", "c-mid", "--timeout-ms", "2000"])
        XCTAssertEqual(r.status, 1)
        XCTAssertNotNil(r0.waitExit(timeout: 10))
        XCTAssertEqual(r0.process.terminationStatus, SIGKILL)
        XCTAssertFalse(FileManager.default.fileExists(atPath: ck + "/c-mid/manifest.json"))
        r = try psctl(["verify-checkpoint", "latest-good", "--dir", ck])
        XCTAssertTrue(r.output.contains("ok \(ck)/c1"), r.output)
        r1.process.terminate()
        _ = r1.waitExit(timeout: 15)

        // Damage c1: `latest` is refused naming the file and the check; `latest-good`
        // on three servers falls back to c0 and re-shards it.
        let shard = ck + "/c1/shard-00000-of-00002.ckpt"
        var d = try Data(contentsOf: URL(fileURLWithPath: shard))
        d[d.count / 3] ^= 0x01
        try d.write(to: URL(fileURLWithPath: shard))
        let bad = try server(0, 2, restore: "latest")
        XCTAssertEqual(bad.waitExit(timeout: 30), 1)
        XCTAssertTrue(bad.output.contains(shard) && bad.output.contains("check: checksum"), bad.output)
        let three = try (0..<3).map { try server($0, 3, restore: "latest-good") }
        three.forEach(ready)
        XCTAssertTrue(three[2].output.contains("restored checkpoint=\(ck)/c0"), three[2].output)
        XCTAssertEqual(try weights(try client(3)), atC0, "c0 restored onto 3 servers: the same weights")
        for s in three { s.process.terminate(); _ = s.waitExit(timeout: 15) }
    }
}
