import Foundation
import XCTest

/// The processes as cluster/k8s/ runs them, on loopback and without Kubernetes: the test plays the engine
/// (a StatefulSet's server restarted with the same arguments, a Deployment's workers started and named by
/// it). The coordinator runs with --pools registered: two home workers where the config says one both
/// train, `psctl scale` is refused with the kubectl command, and `psctl probe` answers as the manifests'
/// probes expect it to.
final class RegisteredPoolsProcessTests: XCTestCase {
    var bin: URL { Harness.bin }
    func exe(_ name: String) -> String { bin.appendingPathComponent(name).path }

    func probe(_ args: [String]) throws -> (status: Int32, output: String) {
        try Harness.run(exe("psctl"), ["probe"] + args, timeout: 30)
    }

    func testTheCoordinatorTakesWhoeverRegistersAndProbesTellReadiness() throws {
        try Harness.requireBinaries()
        let dir = try Harness.tempDir("registered-pools")
        defer { try? FileManager.default.removeItem(at: dir) }
        let gen = try Harness.run(exe("psctl"), ["gen-data", "--out", dir.path, "--rows", "20000", "--scene-shares", "home=0.7,shop=0.3",
                                                 "--users", "1500", "--items", "2000", "--seed", "9", "--no-titles"], timeout: 120)
        XCTAssertEqual(gen.status, 0, gen.output)
        let config = dir.appendingPathComponent("config.yaml")
        try """
            data: {chunk_size: 1024}
            training: {log_every: 10, timeout_seconds: 1, retries: 1, max_progress_lead: 0, epochs: 2, patience: 2}
            checkpoint: {every_seconds: 5}
            scenes: {home: 1, shop: 1}
            """.write(to: config, atomically: true, encoding: .utf8)
        let data = dir.appendingPathComponent("data").path, run = dir.appendingPathComponent("run").path
        let prep = try Harness.run(exe("psctl"), ["prepare", "--config", config.path, "--log", dir.appendingPathComponent("log.csv").path,
                                                  "--out", data], timeout: 120)
        XCTAssertEqual(prep.status, 0, prep.output)
        let port = Harness.basePort(slot: 33)
        let server = "tcp://127.0.0.1:\(port)", coordinator = "tcp://127.0.0.1:\(port + 1)"
        let checkpoints = run + "/checkpoints"
        try FileManager.default.createDirectory(atPath: checkpoints, withIntermediateDirectories: true)
        let serverArgs = ["--shard-index", "0", "--shard-count", "1", "--bind", server, "--checkpoint-dir", checkpoints,
                          "--restore", "latest-if-any"]

        // The first start: no checkpoint yet, so empty tables; ready once it answers.
        let s1 = try Harness.Running(exe("ps-server"), serverArgs)
        defer { s1.process.terminate() }
        XCTAssertTrue(s1.waitFor("ready shard=0", timeout: 60), s1.output)
        XCTAssertTrue(s1.output.contains("no complete checkpoint in \(checkpoints) yet: starting with empty tables"), s1.output)
        let up = try probe(["--endpoint", server])
        XCTAssertEqual(up.status, 0, up.output)
        let down = try probe(["--endpoint", "tcp://127.0.0.1:\(port + 4)", "--timeout", "0.5"])
        XCTAssertEqual(down.status, 1, down.output)
        XCTAssertTrue(down.output.contains("tcp://127.0.0.1:\(port + 4) did not answer a heartbeat within 0.5 s"), down.output)

        let c = try Harness.Running(exe("coordinator"), ["--config", config.path, "--data", data, "--servers", server, "--run-dir", run,
                                                         "--bind", coordinator, "--checkpoint-dir", checkpoints, "--pools", "registered"])
        defer { c.process.terminate() }
        var ready = false
        for _ in 0..<60 where !ready { ready = try probe(["--endpoint", coordinator]).status == 0; if !ready { Thread.sleep(forTimeInterval: 0.5) } }
        XCTAssertTrue(ready, c.output)
        let early = try probe(["--endpoint", coordinator, "--member", "worker-home-a"])
        XCTAssertEqual(early.status, 1, "no such member yet: \(early.output)")
        XCTAssertTrue(early.output.contains("worker-home-a is not a registered member"), early.output)
        let away = try probe(["--endpoint", "tcp://127.0.0.1:\(port + 4)", "--member", "worker-home-a", "--coordinator-away-ok", "--timeout", "0.5"])
        XCTAssertEqual(away.status, 0, "a coordinator away is not held against a worker's liveness: \(away.output)")

        // A Deployment of two home workers (the config says one) and one of shop, named by the engine.
        var workers: [String: Harness.Running] = [:]
        for (scene, name) in [("home", "worker-home-a"), ("home", "worker-home-b"), ("shop", "worker-shop-a")] {
            workers[name] = try Harness.Running(exe("worker"), ["--config", config.path, "--data", data, "--coordinator", coordinator,
                                                                "--scene", scene, "--name", name])
        }
        defer { for w in workers.values { w.process.terminate() } }
        // Each worker counts once its probe has said ready: a worker seen earlier may have finished since (a
        // full-suite run saw the first ones done before the last one was probed, and counted 0 of 3).
        var probedReady: Set<String> = []
        let by = Date().addingTimeInterval(60)
        while probedReady.count < 3 && Date() < by {
            for name in workers.keys where !probedReady.contains(name) {
                if try probe(["--endpoint", coordinator, "--member", name]).status == 0 { probedReady.insert(name) }
            }
            if probedReady.count < 3 { Thread.sleep(forTimeInterval: 0.1) }
        }
        let members = probedReady.count
        XCTAssertEqual(members, 3, "every worker ready (registered): \(c.output.suffix(3000))")
        let scale = try Harness.run(exe("psctl"), ["scale", "--run-dir", run, "--scene", "home", "--workers", "3"], timeout: 30)
        XCTAssertEqual(scale.status, 1, scale.output)
        XCTAssertTrue(scale.output.contains("kubectl scale deployment/worker-home --replicas=3"), scale.output)

        guard let cs = c.waitExit(timeout: 300) else { return XCTFail("the coordinator did not finish: \(c.output.suffix(3000))") }
        XCTAssertEqual(cs, 0, String(c.output.suffix(3000)))
        for (name, w) in workers {
            XCTAssertEqual(w.waitExit(timeout: 60), 0, "\(name): \(w.output.suffix(2000))")
            XCTAssertFalse(w.output.contains("retired"), "\(name) was not retired: \(w.output.suffix(1000))")
            XCTAssertTrue(w.output.contains("progress"), "\(name) trained: \(w.output.suffix(1000))")
        }
        let summary = try Harness.readJSON(URL(fileURLWithPath: run + "/summary.json"))
        for l in summary["leases"] as? [[String: Any]] ?? [] {
            XCTAssertEqual(l["done"] as? Int, l["chunks"] as? Int, "every chunk done once: \(l)")
        }
        XCTAssertEqual((summary["scaling"] as? [Any])?.count ?? 0, 0, "the refused scale left no record")

        // The engine restarts the server with the same arguments: now it restores the latest checkpoint.
        s1.process.terminate()
        XCTAssertNotNil(s1.waitExit(timeout: 30))
        let s2 = try Harness.Running(exe("ps-server"), serverArgs)
        defer { s2.process.terminate() }
        XCTAssertTrue(s2.waitFor("ready shard=0", timeout: 60), s2.output)
        XCTAssertTrue(s2.output.contains("restored checkpoint=\(checkpoints)/"), s2.output)
    }
}
