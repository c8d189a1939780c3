import Foundation
import Logging
import ScenePSClient
import ScenePSCore
import ScenePSProtocol
import XCTest

/// Real processes under cluster/local.sh, with processes killed, stopped and
/// pools changed while training runs (docs/COORDINATOR.md). Each test checks
/// the outcome in summary.json: every chunk of every epoch done exactly once,
/// what was re-leased, restarts, scaling, and the AUC against a run without
/// failure on the same data.
final class ElasticTests: XCTestCase {
    var launcher: String { Harness.launcher }
    var psctl: String { Harness.bin.appendingPathComponent("psctl").path }

    /// One data set for every test of this class: 60K rows, two scenes. A fixed schedule (4 epochs at
    /// the full rate, the best kept): the tests compare AUCs between runs, and the schedule's data-driven
    /// rollbacks and decays, landing on different epochs in different runs, added to the runs' spread.
    static let shared: (dir: URL, failure: String?) = {
        let dir = (try? Harness.tempDir("elastic")) ?? URL(fileURLWithPath: "/tmp/sceneps-elastic-\(getpid())")
        let psctl = Harness.bin.appendingPathComponent("psctl").path
        let r = try? Harness.run(psctl, ["gen-data", "--out", dir.path, "--rows", "60000", "--scene-shares", "home=0.7,shop=0.3",
                                         "--users", "3000", "--items", "4000", "--seed", "21", "--no-titles"], timeout: 120)
        let config = """
            data: {chunk_size: 2048}
            training: {log_every: 10, timeout_seconds: 1, retries: 1, max_progress_lead: 0, epochs: 4, patience: 4}
            scenes: {home: 2, shop: 1}
            """
        try? config.write(to: dir.appendingPathComponent("config.yaml"), atomically: true, encoding: .utf8)
        let failure = r.map { $0.status == 0 ? nil : "psctl gen-data exited \($0.status): \($0.output.suffix(2000))" }
            ?? "psctl gen-data could not be started"
        return (dir, failure)
    }()

    override class func tearDown() {
        try? FileManager.default.removeItem(at: shared.dir)
        super.tearDown()
    }

    var data: URL { Self.shared.dir }

    /// - config: a config file other than the test data's (`config(_:adding:)`).
    func args(_ run: URL, slot: Int, config: URL? = nil, extra: [String] = []) -> [String] {
        ["--config", (config ?? data.appendingPathComponent("config.yaml")).path, "--log", data.appendingPathComponent("log.csv").path,
         "--truth", data.appendingPathComponent("truth.csv").path, "--run-dir", run.path,
         "--servers", "2", "--base-port", "\(Harness.basePort(slot: slot))"] + extra
    }

    /// The test data's config with `yaml` appended, written beside it as `name`.
    func config(_ name: String, adding yaml: String) throws -> URL {
        let url = data.appendingPathComponent(name)
        try (String(contentsOf: data.appendingPathComponent("config.yaml"), encoding: .utf8) + "\n" + yaml + "\n")
            .write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    /// A run without failure, once per test process (the reference AUCs). It must itself have learnt:
    /// its overall test AUC beats item popularity on the same split by `popularityMargin`.
    nonisolated(unsafe) static var baseline: [String: Any]?   // XCTest runs one test at a time
    func baselineSummary() throws -> [String: Any] {
        if let b = Self.baseline { return b }
        let run = try Harness.tempDir("elastic-baseline")
        defer { try? FileManager.default.removeItem(at: run) }
        let r = try Harness.run(launcher, args(run, slot: 8), timeout: 600)
        XCTAssertEqual(r.status, 0, String(r.output.suffix(4000)))
        let s = try Harness.readJSON(run.appendingPathComponent("summary.json"))
        let pop = try Popularity(data: run.appendingPathComponent("data"))
        let auc = (s["overall"] as? [String: Any])?["auc"] as? Double ?? 0
        let scenes = s["scenes"] as? [String: [String: Any]] ?? [:]
        print(String(format: "elastic baseline: overall %.4f (%@), popularity %.4f (%@)", auc,
                     scenes.keys.sorted().map { "\($0) \(String(format: "%.4f", scenes[$0]?["auc"] as? Double ?? 0))" }.joined(separator: ", "),
                     pop.best, scenes.keys.sorted().map { "\($0) \(String(format: "%.4f", pop.best($0)))" }.joined(separator: ", ")))
        XCTAssertGreaterThan(auc, pop.best + Self.popularityMargin,
                             "the run without failure must learn more than item popularity (\(pop.best)): \(auc)")
        Self.baseline = s
        return s
    }

    /// How far the run without failure (the fusion model, 4 epochs) beats item popularity, overall test
    /// AUC. Measured (3 runs, AMD EPYC 2 cores, load 5-18): 0.7364, 0.7274, 0.7285 against popularity 0.5794
    /// (deterministic), 0.148-0.157 above it; 0.10 passes the weakest by 0.048, about five times the runs'
    /// spread, and fails a model that learnt two thirds of that or less (FusionTrainingTests shows
    /// broken experts or gate land far below).
    static let popularityMargin = 0.10

    func requireData() throws {
        try Harness.requireBinaries()
        // A generator that fails is a regression, not a reason to skip: the thrown error fails each test.
        if let failure = Self.shared.failure { throw ScenePSError(.internalError, "generating the elastic tests' data failed: \(failure)") }
    }

    /// Every epoch: every chunk done exactly once, all its training examples counted once.
    func assertEveryChunkOnce(_ s: [String: Any], file: StaticString = #filePath, line: UInt = #line) -> [[String: Any]] {
        let leases = s["leases"] as? [[String: Any]] ?? []
        XCTAssertFalse(leases.isEmpty, "summary.json has per-epoch lease counts", file: file, line: line)
        let trainRows = leases.first?["examples"] as? Int ?? -1
        for l in leases {
            let chunks = l["chunks"] as? Int ?? -1
            XCTAssertEqual(l["done"] as? Int, chunks, "epoch \(l["epoch"] ?? "?"): every chunk done once: \(l)", file: file, line: line)
            XCTAssertEqual(l["examples"] as? Int, trainRows, "every epoch trains the same examples, each once: \(l)", file: file, line: line)
            XCTAssertEqual((l["leased"] as? Int ?? 0), chunks + (l["released"] as? Int ?? 0),
                           "every lease ended done or re-leased: \(l)", file: file, line: line)
        }
        return leases
    }

    /// Per-scene AUC within `tolerance` of the run without failure, overall within `overallTolerance`.
    /// At 60K rows two runs differ by up to ~0.02 on a scene and ~0.015 overall without any failure
    /// (asynchronous training on a loaded machine; the data order moves with every re-lease): the tighter
    /// per-scene bound of 0.01 is shown on the 480K-row quickstart (BENCHMARKS.md, "The coordinator").
    /// What these tests pin exactly is the lease accounting (`assertEveryChunkOnce`).
    func assertAUCClose(_ s: [String: Any], to b: [String: Any], tolerance: Double = 0.03, overallTolerance: Double = 0.02,
                        file: StaticString = #filePath, line: UInt = #line) {
        let scenes = s["scenes"] as? [String: [String: Any]] ?? [:]
        let base = b["scenes"] as? [String: [String: Any]] ?? [:]
        XCTAssertEqual(Set(scenes.keys), Set(base.keys), file: file, line: line)
        for (name, m) in scenes {
            let auc = m["auc"] as? Double ?? 0, ref = base[name]?["auc"] as? Double ?? 1
            XCTAssertEqual(auc, ref, accuracy: tolerance, "scene \(name): \(auc) against \(ref) without failure", file: file, line: line)
        }
        let o = (s["overall"] as? [String: Any])?["auc"] as? Double ?? 0
        let ob = (b["overall"] as? [String: Any])?["auc"] as? Double ?? 1
        XCTAssertEqual(o, ob, accuracy: overallTolerance, "overall: \(o) against \(ob) without failure", file: file, line: line)
    }

    func waitForTraining(_ l: Harness.Running, worker: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertTrue(l.waitFor("workers training", timeout: 180), String(l.output.suffix(3000)), file: file, line: line)
        XCTAssertTrue(l.waitFor("[\(worker)] ", timeout: 60) && l.waitFor("progress", timeout: 60),
                      String(l.output.suffix(3000)), file: file, line: line)
        Thread.sleep(forTimeInterval: 1)
    }

    /// Sends `signal` to the one process of this test's job (below the launcher `l`, which execs the
    /// supervisor) whose command line matches `pattern`: never to another job's processes on the machine.
    func signalOne(_ l: Harness.Running, _ pattern: String, _ signal: Int32 = SIGKILL,
                   file: StaticString = #filePath, line: UInt = #line) throws {
        let hit = try Harness.signalDescendants(of: l.process.processIdentifier, matching: pattern, signal: signal)
        XCTAssertEqual(hit.count, 1, "one process of this job matches \(pattern): \(Harness.descendants(of: l.process.processIdentifier))",
                       file: file, line: line)
    }

    /// 1. kill -9 a worker mid-epoch: its lease goes to another worker (or its restarted self); the job
    /// finishes with every chunk trained once per epoch and the AUC of a run without failure.
    func testAKilledWorkersLeaseIsTrainedByAnotherAndTheJobFinishes() throws {
        try requireData()
        let base = try baselineSummary()
        let run = try Harness.tempDir("elastic-kill-worker")
        defer { try? FileManager.default.removeItem(at: run) }
        let l = try Harness.Running(launcher, args(run, slot: 9, extra: ["--restart-on-failure"]), cwd: Harness.root)
        waitForTraining(l, worker: "worker-home-1")
        try signalOne(l, "/worker .*--name home-1( |$)")
        let status = l.waitExit(timeout: 600)
        XCTAssertEqual(status, 0, String(l.output.suffix(5000)))
        XCTAssertTrue(l.output.contains("worker-home-1 was killed by signal 9; restarting it"), String(l.output.suffix(3000)))
        let s = try Harness.readJSON(run.appendingPathComponent("summary.json"))
        let leases = assertEveryChunkOnce(s)
        XCTAssertGreaterThanOrEqual(leases.reduce(0) { $0 + ($1["released"] as? Int ?? 0) }, 1,
                                    "the dead worker's lease was taken back and leased again: \(leases)")
        XCTAssertEqual((s["restarts"] as? [String: Int])?["home-1"], 1, "\(s["restarts"] ?? "none")")
        // Trained twice: at most the chunk in hand of each dead worker (chunks of 2048 here).
        for l in leases {
            XCTAssertLessThanOrEqual(l["retrained"] as? Int ?? .max, 2048 * (l["released"] as? Int ?? 0), "\(l)")
        }
        assertAUCClose(s, to: base)
    }

    /// 2. kill -9 the coordinator and restart it: training continues from its journal; no chunk lost.
    func testAKilledCoordinatorIsRestartedAndContinuesFromItsJournal() throws {
        try requireData()
        let base = try baselineSummary()
        let run = try Harness.tempDir("elastic-kill-coordinator")
        defer { try? FileManager.default.removeItem(at: run) }
        let l = try Harness.Running(launcher, args(run, slot: 10, extra: ["--restart-on-failure"]), cwd: Harness.root)
        waitForTraining(l, worker: "worker-shop-0")
        try signalOne(l, "/coordinator ")
        let status = l.waitExit(timeout: 600)
        XCTAssertEqual(status, 0, String(l.output.suffix(5000)))
        XCTAssertTrue(l.output.contains("restarting from the journal"), String(l.output.suffix(3000)))
        let s = try Harness.readJSON(run.appendingPathComponent("summary.json"))
        _ = assertEveryChunkOnce(s)
        XCTAssertEqual((s["restarts"] as? [String: Int])?["coordinator"], 1, "\(s["restarts"] ?? "none")")
        assertAUCClose(s, to: base)
    }

    /// 3 and 4. Scale one scene up and another down mid-epoch, then a scene to zero: it waits, reported as
    /// waiting, and resumes when scaled up; every chunk of every epoch trained exactly once.
    func testPoolsChangeWhileTrainingRuns() throws {
        try requireData()
        let run = try Harness.tempDir("elastic-scale")
        defer { try? FileManager.default.removeItem(at: run) }
        let l = try Harness.Running(launcher, args(run, slot: 11), cwd: Harness.root)
        waitForTraining(l, worker: "worker-home-0")
        func scale(_ scene: String, _ n: Int) throws -> String {
            let r = try Harness.run(psctl, ["scale", "--run-dir", run.path, "--scene", scene, "--workers", "\(n)"], timeout: 30)
            XCTAssertEqual(r.status, 0, r.output)
            return r.output
        }
        XCTAssertTrue(try scale("home", 1).contains("pool 2 -> 1"))
        XCTAssertTrue(try scale("shop", 2).contains("pool 1 -> 2"))
        XCTAssertTrue(l.waitFor("== scene shop: 2 workers", timeout: 30), String(l.output.suffix(3000)))
        // Bad input: a clear error, the job unchanged.
        for bad in [["--scene", "nope", "--workers", "1"], ["--scene", "home", "--workers=-1"]] {
            let r = try Harness.run(psctl, ["scale", "--run-dir", run.path] + bad, timeout: 30)
            XCTAssertNotEqual(r.status, 0)
            XCTAssertTrue(r.output.contains("error"), r.output)
        }
        // Shop to zero: it waits, and says so.
        _ = try scale("shop", 0)
        var waiting = false
        for _ in 0..<300 where !waiting {
            let st = try Harness.run(psctl, ["status", "--run-dir", run.path, "--json", "--interval", "0.1"], timeout: 30)
            let o = st.output.firstIndex(of: "{").flatMap { try? JSONSerialization.jsonObject(with: Data(st.output[$0...].utf8)) as? [String: Any] }
            waiting = (o?["scenes"] as? [[String: Any]])?.first { $0["name"] as? String == "shop" }?["waiting"] as? Bool ?? false
            if !waiting { Thread.sleep(forTimeInterval: 0.2) }
        }
        XCTAssertTrue(waiting, "a scene without workers is reported as waiting")
        Thread.sleep(forTimeInterval: 1)
        _ = try scale("shop", 1)
        let status = l.waitExit(timeout: 600)
        XCTAssertEqual(status, 0, String(l.output.suffix(5000)))
        let s = try Harness.readJSON(run.appendingPathComponent("summary.json"))
        let leases = assertEveryChunkOnce(s)
        XCTAssertEqual(leases.reduce(0) { $0 + ($1["released"] as? Int ?? 0) }, 0, "scaling re-leases nothing: \(leases)")
        let scaling = s["scaling"] as? [[String: Any]] ?? []
        XCTAssertEqual(scaling.map { "\($0["scene"] ?? "")=\($0["workers"] ?? "")" }, ["home=1", "shop=2", "shop=0", "shop=1"])
        assertAUCClose(s, to: try baselineSummary())
        // No live job any more: a clear error.
        let after = try Harness.run(psctl, ["scale", "--run-dir", run.path, "--scene", "home", "--workers", "1"], timeout: 30)
        XCTAssertNotEqual(after.status, 0)
        XCTAssertTrue(after.output.contains("no live job"), after.output)
    }

    /// Issue 21: a server killed before the job's first checkpoint cannot be restored: with
    /// --restart-on-failure the job stops and says why (no checkpoint yet), and no process is left.
    func testAServerDyingBeforeAnyCheckpointStopsTheJobSayingWhy() throws {
        try requireData()
        let run = try Harness.tempDir("elastic-no-checkpoint")
        defer { try? FileManager.default.removeItem(at: run) }
        let port = Harness.basePort(slot: 18)
        let a = args(run, slot: 18, config: try config("config-no-checkpoint.yaml", adding: "checkpoint: {every_seconds: 0, at_epoch_end: false}"),
                     extra: ["--restart-on-failure"])
        let l = try Harness.Running(launcher, a, cwd: Harness.root)
        waitForTraining(l, worker: "worker-home-0")
        let job = Harness.descendants(of: l.process.processIdentifier)
        XCTAssertFalse((try? CheckpointDirectory.list(run.appendingPathComponent("checkpoints").path))?.contains { $0.manifest != nil } ?? false,
                       "no checkpoint yet")
        try signalOne(l, "/ps-server --shard-index 1 --shard-count 2 --bind tcp://127.0.0.1:\(port + 1)( |$)")
        let status = l.waitExit(timeout: 120)
        XCTAssertEqual(status, 1, String(l.output.suffix(4000)))
        XCTAssertTrue(l.output.contains("FAILED: server-1 was killed by signal 9, and no checkpoint exists yet to restore its shard from"),
                      String(l.output.suffix(4000)))
        XCTAssertFalse(l.output.contains("restores its shard from"), "nothing was restored")
        XCTAssertEqual(job.filter { Harness.isAlive($0.pid) }.map(\.command), [], "no process of the job is left running")
    }

    /// Issue 21: a crash loop ends at --max-restarts: a worker killed, restarted once (the limit), and
    /// killed again stops the job naming the limit, instead of restarting it forever.
    func testAWorkerKilledMoreOftenThanMaxRestartsStopsTheJob() throws {
        try requireData()
        let run = try Harness.tempDir("elastic-max-restarts")
        defer { try? FileManager.default.removeItem(at: run) }
        let l = try Harness.Running(launcher, args(run, slot: 19, extra: ["--restart-on-failure", "--max-restarts", "1"]), cwd: Harness.root)
        waitForTraining(l, worker: "worker-home-1")
        try signalOne(l, "/worker .*--name home-1( |$)")
        let restarted = "worker-home-1 was killed by signal 9; restarting it (1 of 1)"
        XCTAssertTrue(l.waitFor(restarted, timeout: 60), String(l.output.suffix(3000)))
        // The restarted worker (a new process) trains, then dies too.
        XCTAssertTrue(l.waitFor("[worker-home-1] ", after: restarted, timeout: 120), String(l.output.suffix(3000)))
        let job = Harness.descendants(of: l.process.processIdentifier)
        try signalOne(l, "/worker .*--name home-1( |$)")
        let status = l.waitExit(timeout: 120)
        XCTAssertEqual(status, 1, String(l.output.suffix(4000)))
        XCTAssertTrue(l.output.contains("FAILED: worker-home-1 was killed by signal 9, and was restarted 1 times already (--max-restarts)"),
                      String(l.output.suffix(4000)))
        XCTAssertFalse(l.output.contains("restarting it (2 of 1)"))
        XCTAssertEqual(job.filter { Harness.isAlive($0.pid) }.map(\.command), [], "no process of the job is left running")
    }

    /// 5. SIGSTOP a server longer than the request timeout, then SIGCONT: workers do not hang or crash
    /// silently; the job either stops with a message naming the server (a worker's request timed out),
    /// or completes (nothing needed the server while it was stopped, or the evaluation's retry outlasted it).
    func testAStoppedServerIsNamedAndTheJobStops() throws {
        try requireData()
        let run = try Harness.tempDir("elastic-stop-server")
        defer { try? FileManager.default.removeItem(at: run) }
        let port = Harness.basePort(slot: 12)
        let l = try Harness.Running(launcher, args(run, slot: 12), cwd: Harness.root)
        waitForTraining(l, worker: "worker-home-0")
        let pattern = "/ps-server --shard-index 1 --shard-count 2 --bind tcp://127.0.0.1:\(port + 1)( |$)"
        try signalOne(l, pattern, SIGSTOP)
        Thread.sleep(forTimeInterval: 5)   // timeout 1 s, 1 retry: every worker has given up
        try signalOne(l, pattern, SIGCONT)
        let status = l.waitExit(timeout: 300)
        XCTAssertNotNil(status, "the job does not hang")
        if status == 0 {
            let s = try Harness.readJSON(run.appendingPathComponent("summary.json"))
            _ = assertEveryChunkOnce(s)
        } else {
            XCTAssertTrue(l.output.contains("server 1 (tcp://127.0.0.1:\(port + 1)) did not answer"), String(l.output.suffix(4000)))
            XCTAssertTrue(l.output.contains("FAILED: worker-"), String(l.output.suffix(4000)))
        }
    }

    /// Issue 12, test 1 (partial recovery): kill -9 a server mid-training with --restart-on-failure: it comes
    /// back with its shard of the latest checkpoint, the job finishes, the recovery is reported.
    func testAKilledServerComesBackFromTheLatestCheckpoint() throws {
        try requireData()
        let base = try baselineSummary()
        let run = try Harness.tempDir("elastic-kill-server")
        defer { try? FileManager.default.removeItem(at: run) }
        let port = Harness.basePort(slot: 13)
        let a = args(run, slot: 13, config: try config("config-ckpt.yaml", adding: "checkpoint: {every_seconds: 3}"), extra: ["--restart-on-failure"])
        let l = try Harness.Running(launcher, a, cwd: Harness.root)
        XCTAssertTrue(l.waitFor("[coordinator] ", timeout: 180) && l.waitFor("checkpoint ckpt-", timeout: 180), String(l.output.suffix(3000)))
        // Pushes applied after the cut (what the restore undoes): a worker's progress line after it, not a sleep.
        XCTAssertTrue(l.waitFor(" progress\n", after: "checkpoint ckpt-", timeout: 120), String(l.output.suffix(3000)))
        try signalOne(l, "/ps-server --shard-index 1 --shard-count 2 --bind tcp://127.0.0.1:\(port + 1)( |$)")
        let status = l.waitExit(timeout: 600)
        XCTAssertEqual(status, 0, String(l.output.suffix(5000)))
        XCTAssertTrue(l.output.contains("server-1 restores its shard from"), String(l.output.suffix(3000)))
        let s = try Harness.readJSON(run.appendingPathComponent("summary.json"))
        _ = assertEveryChunkOnce(s)
        XCTAssertEqual((s["restarts"] as? [String: Int])?["server-1"], 1, "\(s["restarts"] ?? "none")")
        let rec = s["recoveries"] as? [[String: String]] ?? []
        XCTAssertEqual(rec.count, 1, "the recovery and its debt are reported: \(rec)")
        XCTAssertNotNil(rec.first?["seconds_undone"].flatMap(Double.init))
        // Its count of applied pushes outlived it (RUN_DIR/servers/server-1.pushes): trained for a second
        // after a cut, it had applied pushes the restore undid.
        XCTAssertGreaterThan(rec.first?["pushes_undone"].flatMap(Int.init) ?? 0, 0, "the dead server's pushes undone are counted: \(rec)")
        XCTAssertTrue(l.output.contains(" pushes, "), "and logged: \(l.output.suffix(3000))")
        XCTAssertGreaterThan((s["checkpoints"] as? [Any])?.count ?? 0, 1)
        // The requests in flight to the dead server were sent again when their connection dropped, not
        // after the 10 s request timeout (docs/ARCHITECTURE.md, "The client").
        let logs = run.appendingPathComponent("logs")
        for f in try FileManager.default.contentsOfDirectory(atPath: logs.path) where f.hasPrefix("worker-") {
            let text = try String(contentsOf: logs.appendingPathComponent(f), encoding: .utf8)
            XCTAssertFalse(text.contains("request timed out"), "\(f): \(text.suffix(2000))")
        }
        assertAUCClose(s, to: base, tolerance: 0.03, overallTolerance: 0.02)
    }

    /// Issue 12, test 1 (global recovery): kill -9 a server mid-training under `recovery: global`: every
    /// server rolls back to the latest checkpoint and the coordinator's data progress rewinds to it (chunks
    /// done after the cut are trained again, leases in flight released); the job finishes with every chunk
    /// of every epoch counted once, and the restart and the debt of every server are reported.
    func testUnderGlobalRecoveryAKilledServerRollsEveryServerAndTheDataProgressBack() throws {
        try requireData()
        let base = try baselineSummary()
        let run = try Harness.tempDir("elastic-global")
        defer { try? FileManager.default.removeItem(at: run) }
        let port = Harness.basePort(slot: 16)
        let a = args(run, slot: 16, config: try config("config-global.yaml", adding: "checkpoint: {every_seconds: 3}\nrecovery: global"), extra: ["--restart-on-failure"])
        let l = try Harness.Running(launcher, a, cwd: Harness.root)
        XCTAssertTrue(l.waitFor("[coordinator] ", timeout: 180) && l.waitFor("checkpoint ckpt-", timeout: 180), String(l.output.suffix(3000)))
        // Training after that cut (what the rewind undoes): a worker's progress line after it, not a sleep.
        XCTAssertTrue(l.waitFor(" progress\n", after: "checkpoint ckpt-", timeout: 120), String(l.output.suffix(3000)))
        try signalOne(l, "/ps-server --shard-index 1 --shard-count 2 --bind tcp://127.0.0.1:\(port + 1)( |$)")
        let status = l.waitExit(timeout: 600)
        XCTAssertEqual(status, 0, String(l.output.suffix(5000)))
        XCTAssertTrue(l.output.contains("global recovery: every server rolls back to"), String(l.output.suffix(3000)))
        XCTAssertTrue(l.output.contains("rewound to checkpoint"), "the coordinator rewound: \(l.output.suffix(3000))")
        let s = try Harness.readJSON(run.appendingPathComponent("summary.json"))
        let leases = assertEveryChunkOnce(s)
        XCTAssertEqual((s["restarts"] as? [String: Int])?["server-1"], 1, "\(s["restarts"] ?? "none")")
        let rec = s["recoveries"] as? [[String: String]] ?? []
        XCTAssertEqual(rec.map { $0["process"] ?? "" }.sorted(), ["server-0", "server-1"], "one entry per server rolled back: \(rec)")
        XCTAssertTrue(rec.allSatisfy { $0["policy"] == "global" && $0["seconds_undone"].flatMap(Double.init) != nil }, "\(rec)")
        XCTAssertEqual(Set(rec.compactMap { $0["checkpoint"] }).count, 1, "every server went back to the same cut: \(rec)")
        let live = try XCTUnwrap(rec.first { $0["process"] == "server-0" })
        XCTAssertNotNil(live["pushes_undone"].flatMap(Int.init), "the live server's pushes undone are counted: \(live)")
        let dead = try XCTUnwrap(rec.first { $0["process"] == "server-1" })
        XCTAssertNotNil(dead["pushes_undone"].flatMap(Int.init), "the dead server's pushes undone are counted from its push counter: \(dead)")
        let chunksRewound = try XCTUnwrap(dead["chunks_rewound"].flatMap(Int.init), "\(dead)")
        let released = try XCTUnwrap(dead["leases_released"].flatMap(Int.init), "\(dead)")
        // The data progress really went back: the chunks undone show in the leases as rewound (trained again,
        // their leases counted as released) and the leases in flight as released.
        let rewound = leases.reduce(0) { $0 + ($1["rewound"] as? Int ?? 0) }
        XCTAssertEqual(rewound, chunksRewound, "leases: \(leases)")
        XCTAssertGreaterThan(chunksRewound + released, 0, "chunks done after the cut or leases in flight were taken back: \(dead)")
        XCTAssertGreaterThanOrEqual(leases.reduce(0) { $0 + ($1["released"] as? Int ?? 0) }, chunksRewound + released)
        if chunksRewound > 0 { XCTAssertGreaterThan(leases.reduce(0) { $0 + ($1["retrained"] as? Int ?? 0) }, 0) }
        assertAUCClose(s, to: base, tolerance: 0.03, overallTolerance: 0.02)
    }

    /// Issue 12, on-demand checkpoint: `psctl checkpoint --run-dir` during a run writes a checkpoint that
    /// `psctl verify-checkpoint` accepts, whose manifest progress is the coordinator's journal of that
    /// moment (and the coordinator records it); a run directory without a live job is a clear error.
    func testAnOnDemandCheckpointOfARunningJobCarriesTheCoordinatorsProgress() throws {
        try requireData()
        let run = try Harness.tempDir("elastic-on-demand")
        defer { try? FileManager.default.removeItem(at: run) }
        let empty = try Harness.tempDir("elastic-on-demand-empty")
        defer { try? FileManager.default.removeItem(at: empty) }
        let none = try Harness.run(psctl, ["checkpoint", "--run-dir", empty.path], timeout: 30)
        XCTAssertNotEqual(none.status, 0)
        XCTAssertTrue(none.output.contains("has no live job") && none.output.contains(empty.path), none.output)
        let l = try Harness.Running(launcher, args(run, slot: 17), cwd: Harness.root)
        waitForTraining(l, worker: "worker-home-0")
        let r = try Harness.run(psctl, ["checkpoint", "--run-dir", run.path, "--tags", "manual"], timeout: 120)
        XCTAssertEqual(r.status, 0, r.output)
        let path = try XCTUnwrap(r.output.split(separator: " ").first { $0.hasPrefix("checkpoint=") }.map { String($0.dropFirst(11)) }, r.output)
        XCTAssertTrue(path.hasPrefix(run.appendingPathComponent("checkpoints").path), path)
        let v = try Harness.run(psctl, ["verify-checkpoint", path], timeout: 60)
        XCTAssertEqual(v.status, 0, v.output)
        XCTAssertTrue(v.output.contains("ok \(path)") && v.output.contains("on-demand"), v.output)
        let m = try Harness.readJSON(URL(fileURLWithPath: path).appendingPathComponent("manifest.json"))
        // (An epoch's checkpoint due at the same moment is the same one, with its tags too.)
        XCTAssertTrue(Set(m["tags"] as? [String] ?? []).isSuperset(of: ["on-demand", "manual"]), "\(m["tags"] ?? "")")
        let progress = try XCTUnwrap(m["progress"] as? [String: Any], "\(m)")
        let done = (progress["done"] as? [String: [Int]] ?? [:]).values.reduce(0) { $0 + $1.count }
        let field: (String) -> String? = { k in r.output.split(separator: " ").first { $0.hasPrefix(k + "=") }.map { String($0.dropFirst(k.count + 1)) } }
        XCTAssertEqual(field("chunks_done").flatMap(Int.init), done, "the printed progress is the manifest's: \(r.output)")
        XCTAssertEqual(field("epoch").flatMap(Int.init), progress["epoch"] as? Int)
        XCTAssertNotNil(progress["targets"], "the progress is the coordinator's journal: \(progress.keys.sorted())")
        // Bad input: a rewind to a checkpoint that is missing, or whose progress is of another data set, is
        // refused naming the manifest; the coordinator keeps serving and nothing changes (the job still ends
        // with every chunk once).
        var foreign = m
        var fp = progress
        fp["done"] = ["0": [9999]]
        foreign["progress"] = fp
        let fake = run.appendingPathComponent("checkpoints-foreign/ckpt-foreign")
        try FileManager.default.createDirectory(at: fake, withIntermediateDirectories: true)
        try JSONSerialization.data(withJSONObject: foreign).write(to: fake.appendingPathComponent("manifest.json"))
        let endpoint = try String(contentsOf: run.appendingPathComponent("coordinator/endpoint"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        var quiet = Logger(label: "test")
        quiet.logLevel = .critical
        let calls = CoordinatorCalls(try ZMQCoordinatorLink(endpoint: endpoint, sender: "elastic-test-\(getpid())",
                                                           attemptTimeout: .seconds(2), patience: .seconds(20), logger: quiet))
        for (bad, expect) in [(fake.path, "do not exist in this data set"), (run.appendingPathComponent("nowhere").path, "nowhere")] {
            XCTAssertThrowsError(try calls.recovery(RecoveryRequest(action: .rewind, checkpoint: bad, reason: "test"))) { e in
                XCTAssertTrue("\(e)".contains(expect) && "\(e)".contains("manifest.json"), "\(e)")
            }
        }
        XCTAssertEqual(try calls.status().phase.isEmpty, false, "the coordinator keeps serving")
        let status = l.waitExit(timeout: 600)
        XCTAssertEqual(status, 0, String(l.output.suffix(4000)))
        // The coordinator recorded it, with the same progress.
        let s = try Harness.readJSON(run.appendingPathComponent("summary.json"))
        _ = assertEveryChunkOnce(s)
        let name = (path as NSString).lastPathComponent
        let recorded = (s["checkpoints"] as? [[String: Any]] ?? []).first { $0["name"] as? String == name }
        XCTAssertEqual(recorded?["tags"] as? [String], m["tags"] as? [String], "\(s["checkpoints"] ?? "none")")
        XCTAssertEqual((progress["epochs"] as? [[String: Any]])?.first?["chunks"] as? Int,
                       (s["leases"] as? [[String: Any]])?.first?["chunks"] as? Int, "the progress is of this job's data set")
        let journal = try Harness.readJSON(run.appendingPathComponent("coordinator/state.json"))
        let record = (journal["checkpoints"] as? [[String: Any]] ?? []).first { $0["name"] as? String == name }
        XCTAssertEqual(record?["chunks_done"] as? Int, done)
        // The job is over: the run directory has no live job any more.
        let after = try Harness.run(psctl, ["checkpoint", "--run-dir", run.path], timeout: 60)
        XCTAssertNotEqual(after.status, 0)
        XCTAssertTrue(after.output.contains("has no live job"), after.output)
    }

    /// Issue 12, on-demand checkpoint across a coordinator restart: the coordinator dies right after
    /// answering `psctl checkpoint --run-dir` and before the checkpoint starts (fault point); the supervisor
    /// restarts it, psctl rides out the gap, finds its ticket unknown to the successor and no checkpoint on
    /// disk, asks again and gets the successor's checkpoint; the job finishes with every chunk once.
    func testAnOnDemandCheckpointOutlivesACoordinatorRestart() throws {
        try requireData()
        let run = try Harness.tempDir("elastic-on-demand-restart")
        defer { try? FileManager.default.removeItem(at: run) }
        let l = try Harness.Running(launcher, args(run, slot: 5, extra: ["--restart-on-failure"]), cwd: Harness.root,
                                    environment: ["SCENEPS_FAULT_COORDINATOR": "kill-after-on-demand-reply"])
        waitForTraining(l, worker: "worker-home-0")
        let r = try Harness.run(psctl, ["checkpoint", "--run-dir", run.path, "--tags", "manual"], timeout: 120)
        XCTAssertEqual(r.status, 0, r.output + String(l.output.suffix(3000)))
        let path = try XCTUnwrap(r.output.split(separator: " ").first { $0.hasPrefix("checkpoint=") }.map { String($0.dropFirst(11)) }, r.output)
        XCTAssertTrue(path.hasPrefix(run.appendingPathComponent("checkpoints").path), path)
        let m = try Harness.readJSON(URL(fileURLWithPath: path).appendingPathComponent("manifest.json"))
        XCTAssertTrue(Set(m["tags"] as? [String] ?? []).isSuperset(of: ["on-demand", "manual"]), "\(m["tags"] ?? "")")
        let status = l.waitExit(timeout: 600)
        XCTAssertEqual(status, 0, String(l.output.suffix(4000)))
        XCTAssertTrue(l.output.contains("coordinator was killed by signal 9; restarting it"), String(l.output.suffix(3000)))
        XCTAssertGreaterThanOrEqual(l.output.components(separatedBy: "on-demand checkpoint asked for").count - 1, 2,
                                    "asked of the first coordinator, then again of its successor: \(l.output.suffix(3000))")
        let s = try Harness.readJSON(run.appendingPathComponent("summary.json"))
        _ = assertEveryChunkOnce(s)
        XCTAssertEqual((s["restarts"] as? [String: Int])?["coordinator"], 1, "\(s["restarts"] ?? "none")")
    }

    /// Issue 12, global recovery when the coordinator also dies: server-1 is killed under `recovery: global`
    /// and the coordinator dies between the servers' restore and the rewind (fault point in the supervisor);
    /// the supervisor restarts it and sends the rewind to the successor; the job finishes, every chunk once.
    func testUnderGlobalRecoveryACoordinatorDyingBeforeTheRewindIsRestartedAndRewound() throws {
        try requireData()
        let run = try Harness.tempDir("elastic-global-coordinator")
        defer { try? FileManager.default.removeItem(at: run) }
        let port = Harness.basePort(slot: 5)
        let a = args(run, slot: 5, config: try config("config-global-coordinator.yaml", adding: "checkpoint: {every_seconds: 3}\nrecovery: global"), extra: ["--restart-on-failure"])
        let l = try Harness.Running(launcher, a, cwd: Harness.root, environment: ["SCENEPS_FAULT_SUPERVISOR": "kill-coordinator-before-rewind"])
        XCTAssertTrue(l.waitFor("[coordinator] ", timeout: 180) && l.waitFor("checkpoint ckpt-", timeout: 180), String(l.output.suffix(3000)))
        XCTAssertTrue(l.waitFor(" progress\n", after: "checkpoint ckpt-", timeout: 120), String(l.output.suffix(3000)))
        try signalOne(l, "/ps-server --shard-index 1 --shard-count 2 --bind tcp://127.0.0.1:\(port + 1)( |$)")
        let status = l.waitExit(timeout: 600)
        XCTAssertEqual(status, 0, String(l.output.suffix(5000)))
        for line in ["global recovery: every server rolls back to", "coordinator was killed by signal 9; restarting it", "rewound to checkpoint",
                     "every server restored"] {
            XCTAssertTrue(l.output.contains(line), "\(line): \(l.output.suffix(4000))")
        }
        let s = try Harness.readJSON(run.appendingPathComponent("summary.json"))
        _ = assertEveryChunkOnce(s)
        let restarts = s["restarts"] as? [String: Int]
        XCTAssertEqual(restarts?["coordinator"], 1, "\(restarts ?? [:])")
        XCTAssertEqual(restarts?["server-1"], 1, "\(restarts ?? [:])")
        let rec = s["recoveries"] as? [[String: String]] ?? []
        XCTAssertEqual(rec.map { $0["process"] ?? "" }.sorted(), ["server-0", "server-1"], "\(rec)")
    }

    /// Ctrl-C checkpoints the job before stopping it: the latest checkpoint is the one tagged `stop`, taken
    /// after the interrupt, and --resume goes on from it to the end, every chunk once.
    func testCtrlCCheckpointsTheJobBeforeStoppingAndResumeGoesOnFromThere() throws {
        try requireData()
        let run = try Harness.tempDir("elastic-ctrl-c")
        defer { try? FileManager.default.removeItem(at: run) }
        let l = try Harness.Running(launcher, args(run, slot: 5), cwd: Harness.root)
        waitForTraining(l, worker: "worker-home-0")
        let interrupted = Date().timeIntervalSince1970
        l.process.interrupt()
        XCTAssertEqual(l.waitExit(timeout: 60), 130, String(l.output.suffix(3000)))
        XCTAssertTrue(l.output.contains("taken before stopping"), String(l.output.suffix(3000)))
        let latest = try XCTUnwrap(try CheckpointDirectory.list(run.appendingPathComponent("checkpoints").path).first { $0.manifest != nil }?.manifest)
        XCTAssertTrue(latest.tags.contains("stop"), "\(latest.tags)")
        XCTAssertGreaterThanOrEqual(latest.created_unix, interrupted - 1)
        let r = try Harness.run(launcher, ["--run-dir", run.path, "--resume", "--base-port", "\(Harness.basePort(slot: 5))"], timeout: 600)
        XCTAssertEqual(r.status, 0, String(r.output.suffix(5000)))
        XCTAssertTrue(r.output.contains(latest.name), "resumed from the stop's checkpoint: \(r.output.prefix(3000))")
        _ = assertEveryChunkOnce(try Harness.readJSON(run.appendingPathComponent("summary.json")))
    }

    /// Issue 12, tests 2 and 5: kill -9 every process, then --resume onto 3 servers instead of 2: training
    /// continues from the checkpointed progress (the epochs before it are not trained again) and finishes.
    func testAJobKilledWholeResumesFromItsLatestCheckpointOnto3Servers() throws {
        try requireData()
        let base = try baselineSummary()
        let run = try Harness.tempDir("elastic-resume")
        defer { try? FileManager.default.removeItem(at: run) }
        // Pools sized by workers_per_scene (1), not by name: the resume's --workers-per-scene 2 resizes them.
        let config = data.appendingPathComponent("config-resume.yaml")
        try String(contentsOf: data.appendingPathComponent("config.yaml"), encoding: .utf8)
            .replacingOccurrences(of: "scenes: {home: 2, shop: 1}", with: "workers_per_scene: 1")
            .write(to: config, atomically: true, encoding: .utf8)
        let l = try Harness.Running(launcher, args(run, slot: 14, config: config), cwd: Harness.root)
        XCTAssertTrue(l.waitFor("epoch 2: every chunk trained", timeout: 300), String(l.output.suffix(3000)))
        XCTAssertTrue(l.waitFor("checkpoint ckpt-", timeout: 60), String(l.output.suffix(3000)))
        // Every process of this job (the supervisor the launcher exec'd and everything below it) stopped
        // first, then killed: under load the job must not go on (and even end) while the kills reach its
        // processes one at a time. The supervisor is stopped first so that it starts nothing new.
        let supervisor = l.process.processIdentifier
        kill(supervisor, SIGSTOP)
        let job = Harness.descendants(of: supervisor)
        XCTAssertEqual(job.filter { $0.command.contains("/ps-server ") }.count, 2, "the job's servers: \(job)")
        XCTAssertTrue(job.contains { $0.command.contains("/coordinator ") }, "the job's coordinator: \(job)")
        XCTAssertGreaterThanOrEqual(job.filter { $0.command.contains("/worker ") }.count, 2, "the job's workers: \(job)")
        for signal in [SIGSTOP, SIGKILL] {
            for p in job { kill(p.pid, signal) }
        }
        kill(supervisor, SIGKILL)
        _ = l.waitExit(timeout: 60)
        // Bad input first: a run directory without checkpoints is refused before anything starts.
        let empty = try Harness.tempDir("elastic-resume-empty")
        defer { try? FileManager.default.removeItem(at: empty) }
        let none = try Harness.run(launcher, ["--run-dir", empty.path, "--resume"], timeout: 60)
        XCTAssertNotEqual(none.status, 0)
        XCTAssertTrue(none.output.contains("is not the run directory of a job"), none.output)
        let r = try Harness.run(launcher, ["--run-dir", run.path, "--resume", "--servers", "3", "--workers-per-scene", "2",
                                           "--base-port", "\(Harness.basePort(slot: 15))"], timeout: 600)
        XCTAssertEqual(r.status, 0, String(r.output.suffix(5000)))
        XCTAssertTrue(r.output.contains("resuming from a checkpoint"), String(r.output.suffix(3000)))
        XCTAssertFalse(r.output.contains("epoch 1: every chunk trained"), "epoch 1 is not trained again after the resume")
        XCTAssertTrue(r.output.contains("every chunk trained"), "the resumed job trains (the first one was stopped before its end): \(r.output.suffix(3000))")
        let s = try Harness.readJSON(run.appendingPathComponent("summary.json"))
        XCTAssertEqual(s["servers"] as? Int, 3)
        // --workers-per-scene on the resume resizes the pools the checkpoint held (1 each), recorded as scaling.
        XCTAssertEqual(s["workers"] as? [String: Int], ["home": 2, "shop": 2])
        let scaling = s["scaling"] as? [[String: Any]] ?? []
        XCTAssertEqual(scaling.map { "\($0["scene"] ?? "")=\($0["workers"] ?? "")" }, ["home=2", "shop=2"])
        XCTAssertTrue(r.output.contains("== scene shop: pool 1 -> 2 workers"), String(r.output.suffix(3000)))
        _ = assertEveryChunkOnce(s)
        // Resuming the finished job: nothing left to train, said so, exit 0, its results kept.
        let again = try Harness.run(launcher, ["--run-dir", run.path, "--resume", "--base-port", "\(Harness.basePort(slot: 15))"], timeout: 120)
        XCTAssertEqual(again.status, 0, String(again.output.suffix(3000)))
        XCTAssertTrue(again.output.contains("had already finished at that checkpoint"), String(again.output.suffix(3000)))
        XCTAssertEqual(try Harness.readJSON(run.appendingPathComponent("summary.json"))["overall"] as? NSDictionary,
                       s["overall"] as? NSDictionary)
        assertAUCClose(s, to: base, tolerance: 0.03, overallTolerance: 0.02)
        // The last checkpoint holds the model the job ended with (the best epoch's): scored without a
        // cluster it gives summary.json's test AUC.
        let checkpoints = (s["checkpoints"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
        let last = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: run.appendingPathComponent("checkpoints").path)
            .filter { $0.hasPrefix("ckpt-") }.sorted().last)
        XCTAssertFalse(checkpoints.isEmpty)
        let out = run.appendingPathComponent("eval.json")
        let e = try Harness.run(psctl, ["evaluate", "--config", run.appendingPathComponent("job-config.yaml").path,
                                        "--data", run.appendingPathComponent("data").path,
                                        "--checkpoint", run.appendingPathComponent("checkpoints/\(last)").path,
                                        "--out", out.path], timeout: 120)
        XCTAssertEqual(e.status, 0, e.output)
        let scored = try Harness.readJSON(out)
        XCTAssertEqual((scored["overall"] as? [String: Any])?["auc"] as? Double ?? 0,
                       (s["overall"] as? [String: Any])?["auc"] as? Double ?? 1, accuracy: 1e-9, e.output)
    }
}
