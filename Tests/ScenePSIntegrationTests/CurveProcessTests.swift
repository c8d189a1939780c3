import Foundation
import Logging
import ScenePSClient
import ScenePSCore
import ScenePSTransport
import XCTest

/// CURVE across real processes, probed by a client that is not ours: pyzmq
/// with the .proto compiled by protoc (tools/curve_probe.py), in a venv this
/// test creates (.build/venv-curve, kept for the next run).
final class CurveProcessTests: XCTestCase {
    var psctl: String { Harness.bin.appendingPathComponent("psctl").path }

    /// The venv's python and a directory holding scene_ps_pb2.py.
    func independentClient(_ dir: URL) throws -> (python: String, pb2: String) {
        let venv = Harness.root.appendingPathComponent(".build/venv-curve")
        let python = venv.appendingPathComponent("bin/python").path
        if !FileManager.default.isExecutableFile(atPath: python) || !FileManager.default.fileExists(atPath: venv.appendingPathComponent(".complete").path) {
            let v = try Harness.run("/usr/bin/env", ["python3", "-m", "venv", venv.path], timeout: 120)
            XCTAssertEqual(v.status, 0, v.output)
            // protobuf < 5: protoc 3.21's Python output (Debian 12's protobuf-compiler) runs on the 4.x runtime.
            let p = try Harness.run(python, ["-m", "pip", "install", "-q", "pyzmq", "protobuf>=4.21,<5"], timeout: 300)
            XCTAssertEqual(p.status, 0, "pip install pyzmq protobuf failed: \(p.output)")
            FileManager.default.createFile(atPath: venv.appendingPathComponent(".complete").path, contents: Data())
        }
        let pb2 = dir.appendingPathComponent("pb2")
        try FileManager.default.createDirectory(at: pb2, withIntermediateDirectories: true)
        let protos = Harness.root.appendingPathComponent("protos")
        let c = try Harness.run("/usr/bin/env", ["protoc", "--proto_path=\(protos.path)", "--python_out=\(pb2.path)",
                                                 protos.appendingPathComponent("scene_ps.proto").path], timeout: 60)
        XCTAssertEqual(c.status, 0, "protoc (Debian protobuf-compiler, tools/install-deps.sh) failed: \(c.output)")
        return (python, pb2.path)
    }

    func testAnIndependentClientWithoutAKeyOrWithTheWorkerKeyIsRefusedAndNoRowChanges() throws {
        try Harness.requireBinaries()
        let dir = try Harness.tempDir("curve")
        defer { try? FileManager.default.removeItem(at: dir) }
        let keys = dir.appendingPathComponent("keys").path
        let k = try Harness.run(psctl, ["keys", "--out", keys], timeout: 30)
        XCTAssertEqual(k.status, 0, k.output)
        let client = try independentClient(dir)

        let server = try Harness.Running(Harness.bin.appendingPathComponent("ps-server").path, [
            "--shard-index", "0", "--shard-count", "1", "--bind", "tcp://127.0.0.1:*", "--keys", keys,
            "--checkpoint-dir", dir.appendingPathComponent("ckpt").path])
        defer { if server.process.isRunning { server.process.terminate(); _ = server.waitExit(timeout: 10) } }
        XCTAssertTrue(server.waitFor("ready shard=0", timeout: 30), server.output)
        XCTAssertTrue(server.output.contains("curve=on (2 keys)"), server.output)
        let endpoint = try XCTUnwrap(server.output.split(separator: "\n").first { $0.hasPrefix("ready shard=0") }?
            .split(separator: " ").first { $0.hasPrefix("endpoint=") }?.dropFirst("endpoint=".count)).description

        // The admin declares a table and creates three rows, then keeps a snapshot the probe tries to restore.
        var logger = Logger(label: "curve-test")
        logger.logLevel = .critical
        var o = PSClientOptions()
        o.curve = try CurveKeys.client(dir: keys, role: .admin)
        o.timeout = .seconds(5)
        let admin = try PSClient(endpoints: [endpoint], sender: "curve-admin", options: o, logger: logger)
        try admin.declare([TableSpec.sparse(id: 1, name: "item", dim: 4, initKind: .uniform, initScale: 0.1, seed: 3)])
        try admin.wait(admin.push([SparseGradient(tableID: 1, keys: [1, 2, 3], values: (0..<12).map { Float($0) / 10 })]))
        XCTAssertEqual(try admin.snapshot(.save, name: "best"), 3)
        try admin.wait(admin.push([SparseGradient(tableID: 1, keys: [1], values: [1, 1, 1, 1])]))
        let valuesBefore = try admin.wait(admin.pull([SparsePull(tableID: 1, keys: [1, 2, 3])])).sparse[0]
        let statsBefore = try XCTUnwrap(admin.stats().first?.tables.first)

        let p = try Harness.run(client.python, [Harness.root.appendingPathComponent("tools/curve_probe.py").path,
                                                "--pb2", client.pb2, "--keys", keys, "--server", endpoint,
                                                "--table", "1", "--keys-to-pull", "1,2,3"], timeout: 120)
        XCTAssertEqual(p.status, 0, "the probe got what a protected server must not give: \(p.output)")
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(p.output.utf8)) as? [String: Any], p.output)
        let results = try XCTUnwrap(json["results"] as? [String: Any])
        XCTAssertTrue(results["server/no-key/shutdown"] is NSNull, "\(results)")
        let denied = try XCTUnwrap(results["server/worker/shutdown"] as? [String: Any])
        XCTAssertEqual(denied["status"] as? String, "STATUS_PERMISSION_DENIED")
        XCTAssertTrue((denied["message"] as? String ?? "").contains("needs the admin key"), "\(denied)")
        // The worker key reads the same rows the admin does (pulls are a worker's to make).
        let pulled = try XCTUnwrap((results["server/worker/pull"] as? [String: Any])?["values"] as? [Double])
        XCTAssertEqual(pulled.count, valuesBefore.count)
        for (a, b) in zip(pulled, valuesBefore) { XCTAssertEqual(Float(a), b) }

        // Nothing changed: the server runs, the rows are the same values (no snapshot restored), no push applied.
        XCTAssertTrue(server.process.isRunning, server.output)
        XCTAssertEqual(try admin.wait(admin.pull([SparsePull(tableID: 1, keys: [1, 2, 3])])).sparse[0], valuesBefore)
        let statsAfter = try XCTUnwrap(admin.stats().first?.tables.first)
        XCTAssertEqual(statsAfter.rows, statsBefore.rows)
        XCTAssertEqual(statsAfter.pushes, statsBefore.pushes)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("ckpt/probe").path), "a worker's PREPARE began a checkpoint")
        XCTAssertTrue(server.output.contains("needs the admin key"), "refusals are logged: \(server.output)")

        try admin.shutdownServers(reason: "test over")
        XCTAssertEqual(server.waitExit(timeout: 15), 0, server.output)
    }

    /// A server refuses to start on a key directory it cannot trust, naming the file.
    func testBadKeyDirectoriesStopTheServerBeforeItBinds() throws {
        try Harness.requireBinaries()
        let dir = try Harness.tempDir("curve-bad")
        defer { try? FileManager.default.removeItem(at: dir) }
        let keys = dir.appendingPathComponent("keys").path
        XCTAssertEqual(try Harness.run(psctl, ["keys", "--out", keys], timeout: 30).status, 0)
        let server = Harness.bin.appendingPathComponent("ps-server").path
        let args = ["--shard-index", "0", "--shard-count", "1", "--bind", "tcp://127.0.0.1:*", "--keys", keys]
        chmod(keys + "/server.key", 0o640)
        var r = try Harness.run(server, args, timeout: 30)
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(r.output.contains("\(keys)/server.key: mode 0640") && !r.output.contains("ready"), r.output)
        chmod(keys + "/server.key", 0o600)
        try FileManager.default.removeItem(atPath: keys + "/authorized")
        r = try Harness.run(server, args, timeout: 30)
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(r.output.contains("\(keys)/authorized") && !r.output.contains("ready"), r.output)
    }

    /// A whole job with --keys trains to the end (supervisor, coordinator, servers and workers all speak
    /// CURVE with their roles), while the independent client's worker key is refused by the coordinator
    /// (scale, recovery, checkpoint) and by a server, and its keyless connection gets no answer.
    func testAJobWithKeysTrainsAndRefusesTheWorkerKeysAdminRequests() throws {
        try Harness.requireBinaries()
        let dir = try Harness.tempDir("curve-job")
        defer { try? FileManager.default.removeItem(at: dir) }
        let keys = dir.appendingPathComponent("keys").path
        XCTAssertEqual(try Harness.run(psctl, ["keys", "--out", keys], timeout: 30).status, 0)
        let client = try independentClient(dir)
        let g = try Harness.run(psctl, ["gen-data", "--out", dir.path, "--rows", "20000", "--scene-shares", "home=0.75,shop=0.25",
                                        "--users", "2000", "--items", "3000", "--seed", "5"], timeout: 120)
        XCTAssertEqual(g.status, 0, g.output)
        let config = dir.appendingPathComponent("config.yaml")
        try "model: {kind: baseline}\ntraining: {epochs: 5}\nscenes: {home: 1, shop: 1}\n".write(to: config, atomically: true, encoding: .utf8)
        let run = dir.appendingPathComponent("run")
        let port = Harness.basePort(slot: 20)
        let job = try Harness.Running(Harness.root.appendingPathComponent("cluster/local.sh").path, [
            "--config", config.path, "--log", dir.appendingPathComponent("log.csv").path, "--run-dir", run.path,
            "--servers", "1", "--base-port", "\(port)", "--keys", keys], cwd: Harness.root)
        defer { if job.process.isRunning { job.process.interrupt(); _ = job.waitExit(timeout: 30) } }
        let endpointFile = run.appendingPathComponent("coordinator/endpoint").path
        let end = Date().addingTimeInterval(120)
        while !FileManager.default.fileExists(atPath: endpointFile) && job.process.isRunning && Date() < end { Thread.sleep(forTimeInterval: 0.1) }
        let coordinator = try String(contentsOfFile: endpointFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertEqual(try String(contentsOfFile: run.appendingPathComponent("coordinator/keys").path, encoding: .utf8)
                        .trimmingCharacters(in: .whitespacesAndNewlines), URL(fileURLWithPath: keys).standardizedFileURL.path)

        // The admin (psctl, which finds the job's key directory through the run directory) holds the job:
        // with no shop worker no epoch can end, so the probes meet a live job.
        let hold = try Harness.run(psctl, ["scale", "--run-dir", run.path, "--scene", "shop", "--workers", "0"], timeout: 60)
        XCTAssertEqual(hold.status, 0, hold.output)
        let p = try Harness.run(client.python, [Harness.root.appendingPathComponent("tools/curve_probe.py").path,
                                                "--pb2", client.pb2, "--keys", keys, "--server", "tcp://127.0.0.1:\(port)",
                                                "--coordinator", coordinator, "--scale-scene", "shop", "--wait", "1.5"], timeout: 120)
        XCTAssertEqual(p.status, 0, "the probe got what a protected job must not give: \(p.output)")
        XCTAssertTrue(job.process.isRunning, String(job.output.suffix(3000)))
        let st = try Harness.run(psctl, ["status", "--run-dir", run.path], timeout: 60)
        XCTAssertEqual(st.status, 0, st.output)
        let shop = st.output.split(separator: "\n").first { $0.hasPrefix("shop ") }.map(String.init) ?? ""
        XCTAssertEqual(shop.split(separator: " ").dropFirst().first, "0", "the worker key's scale to 5 changed the pool: \(st.output)")
        let resume = try Harness.run(psctl, ["scale", "--run-dir", run.path, "--scene", "shop", "--workers", "1"], timeout: 60)
        XCTAssertEqual(resume.status, 0, resume.output)

        XCTAssertEqual(job.waitExit(timeout: 420), 0, String(job.output.suffix(6000)))
        let s = try Harness.readJSON(run.appendingPathComponent("summary.json"))
        XCTAssertGreaterThanOrEqual(s["epochs_trained"] as? Int ?? 0, 1)
        XCTAssertTrue(job.output.contains("curve=on"), String(job.output.prefix(3000)))
        let coordinatorLog = try String(contentsOf: run.appendingPathComponent("logs/coordinator.log"), encoding: .utf8)
        XCTAssertTrue(coordinatorLog.contains("a scale needs the admin key"), String(coordinatorLog.suffix(3000)))
    }
}
