import Foundation
import XCTest

/// cluster/slurm/sceneps.sbatch under a real Slurm: tools/slurm-local.sh installs slurm-wlm and munge when
/// missing and starts munged, slurmctld and slurmd on this host (root only: elsewhere every test here skips,
/// saying why); the job is submitted with sbatch and checked through squeue, scontrol and its summary.json.
final class SlurmJobTests: XCTestCase {
    var psctl: String { Harness.bin.appendingPathComponent("psctl").path }
    var script: String { Harness.root.appendingPathComponent("cluster/slurm/sceneps.sbatch").path }

    /// The cluster, started once for the class: its SLURM_CONF, or why it could not start.
    static let cluster: (dir: URL, conf: String?, why: String) = {
        let dir = (try? Harness.tempDir("slurm")) ?? URL(fileURLWithPath: "/tmp/sceneps-slurm-\(getpid())")
        let helper = Harness.root.appendingPathComponent("tools/slurm-local.sh").path
        guard let r = try? Harness.run(helper, ["start", dir.path], timeout: 300) else { return (dir, nil, "tools/slurm-local.sh did not run") }
        guard r.status == 0, let line = r.output.split(separator: "\n").last(where: { $0.hasPrefix("export SLURM_CONF=") }) else {
            return (dir, nil, r.output.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return (dir, String(line.dropFirst("export SLURM_CONF=".count)), "")
    }()

    /// A small data set (60K rows, two scenes, chunks of 2048) and a fixed schedule of three epochs: about
    /// 15 s of training here, long enough to cancel a step mid-run.
    static let data: (dir: URL, ok: Bool) = {
        let dir = (try? Harness.tempDir("slurm-data")) ?? URL(fileURLWithPath: "/tmp/sceneps-slurm-data-\(getpid())")
        let psctl = Harness.bin.appendingPathComponent("psctl").path
        let r = try? Harness.run(psctl, ["gen-data", "--out", dir.path, "--rows", "60000", "--scene-shares", "home=0.7,shop=0.3",
                                         "--users", "3000", "--items", "4000", "--seed", "5", "--no-titles"], timeout: 120)
        let config = """
            data: {chunk_size: 2048}
            training: {log_every: 10, timeout_seconds: 1, retries: 1, max_progress_lead: 0, epochs: 3, patience: 3}
            checkpoint: {every_seconds: 5}
            scenes: {home: 2, shop: 1}
            """
        try? config.write(to: dir.appendingPathComponent("config.yaml"), atomically: true, encoding: .utf8)
        return (dir, r?.status == 0)
    }()

    override class func tearDown() {
        // The data set is made only after the cluster came up (requireSlurm): do not make it here to delete it.
        // Stopped whether or not the start succeeded: a start that timed out may have left daemons running,
        // and once the directory with their pid files is gone nothing would find them.
        _ = try? Harness.run(Harness.root.appendingPathComponent("tools/slurm-local.sh").path, ["stop", cluster.dir.path], timeout: 60)
        if cluster.conf != nil { try? FileManager.default.removeItem(at: data.dir) }
        try? FileManager.default.removeItem(at: cluster.dir)
        super.tearDown()
    }

    func requireSlurm() throws -> [String: String] {
        try Harness.requireBinaries()
        guard let conf = Self.cluster.conf else { throw XCTSkip("no Slurm cluster on this machine: \(Self.cluster.why)") }
        // A generator that fails is a regression, not a reason to skip (issue 21): the thrown error fails the test.
        guard Self.data.ok else { throw NSError(domain: "SlurmJobTests", code: 1, userInfo: [NSLocalizedDescriptionKey: "psctl gen-data failed for the Slurm job's data set"]) }
        return ["SLURM_CONF": conf, "SCENEPS_ROOT": Harness.root.path, "SCENEPS_BIN": Harness.bin.path]
    }

    func slurm(_ tool: String, _ args: [String], env: [String: String], timeout: TimeInterval = 30) throws -> (status: Int32, output: String) {
        try Harness.run("/usr/bin/\(tool)", args, timeout: timeout, environment: env)
    }

    /// sbatch's arguments for a job of this class's data in `run`: the job's output in run/slurm-JOB.out.
    func submitArgs(_ run: URL, tasks: Int, slot: Int, wait: Bool) -> [String] {
        (wait ? ["--wait"] : []) + ["--ntasks=\(tasks)", "--output=\(run.path)/slurm-%j.out", "--chdir=\(Harness.root.path)", script,
         "--run-dir", run.path, "--config", Self.data.dir.appendingPathComponent("config.yaml").path,
         "--log", Self.data.dir.appendingPathComponent("log.csv").path, "--truth", Self.data.dir.appendingPathComponent("truth.csv").path,
         "--servers", "2", "--base-port", "\(Harness.basePort(slot: slot))"]
    }

    func jobOutput(_ run: URL) -> String {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: run.path))?.filter { $0.hasPrefix("slurm-") && $0.hasSuffix(".out") } ?? []
        return files.sorted().compactMap { try? String(contentsOf: run.appendingPathComponent($0), encoding: .utf8) }.joined()
    }

    /// `scontrol show job`'s JobState and ExitCode, or nil while the job is pending or running.
    func finished(_ job: String, env: [String: String]) throws -> (state: String, exit: String)? {
        let r = try slurm("scontrol", ["show", "job", job], env: env)
        func field(_ k: String) -> String? {
            r.output.split(whereSeparator: { $0 == " " || $0 == "\n" }).first { $0.hasPrefix(k + "=") }.map { String($0.dropFirst(k.count + 1)) }
        }
        guard let state = field("JobState") else { return nil }
        return ["PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED"].contains(state) ? nil : (state, field("ExitCode") ?? "?")
    }

    /// The job runs every process as a step of its own; one worker's step is cancelled with `scancel
    /// JOB.STEP` mid-run: supervise restarts that worker as a new step, the job finishes (exit 0), every chunk
    /// of every epoch is trained once and the restart is counted in summary.json.
    func testAJobOfStepsSurvivesAWorkerStepCancelledMidRun() throws {
        let env = try requireSlurm()
        let run = try Harness.tempDir("slurm-job")
        defer { try? FileManager.default.removeItem(at: run) }
        let sub = try slurm("sbatch", ["--parsable"] + submitArgs(run, tasks: 6, slot: 25, wait: false), env: env)
        XCTAssertEqual(sub.status, 0, sub.output)
        let job = sub.output.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ";").first.map(String.init) ?? ""
        XCTAssertFalse(job.isEmpty, sub.output)
        defer { _ = try? slurm("scancel", [job], env: env) }

        // Wait (bounded) for the worker's step to run and train.
        var step: String?
        let by = Date().addingTimeInterval(240)
        while step == nil && Date() < by {
            let q = try slurm("squeue", ["-h", "-s", "-j", job, "-o", "%i %j"], env: env)
            let steps = q.output.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
            if jobOutput(run).contains("[worker-home-0] ") && jobOutput(run).contains("progress") {
                step = steps.first { $0.count == 2 && $0[1] == "worker-home-0" }?[0]
            }
            if try finished(job, env: env) != nil { break }
            if step == nil { Thread.sleep(forTimeInterval: 0.5) }
        }
        guard let step else { return XCTFail("no training step worker-home-0 in job \(job); output:\n\(jobOutput(run).suffix(4000))") }
        let steps = try slurm("squeue", ["-h", "-s", "-j", job, "-o", "%j"], env: env).output
        for name in ["ps-server-0", "ps-server-1", "coordinator", "worker-home-0", "worker-home-1", "worker-shop-0"] {
            XCTAssertTrue(steps.split(separator: "\n").contains(Substring(name)), "step \(name) runs: \(steps)")
        }
        let c = try slurm("scancel", [step], env: env)
        XCTAssertEqual(c.status, 0, c.output)

        var end: (state: String, exit: String)?
        let endBy = Date().addingTimeInterval(420)
        while end == nil && Date() < endBy {
            Thread.sleep(forTimeInterval: 1)
            end = try finished(job, env: env)
        }
        let out = jobOutput(run)
        guard let end else { return XCTFail("job \(job) did not finish within 420 s; output:\n\(out.suffix(5000))") }
        XCTAssertEqual(end.state, "COMPLETED", String(out.suffix(5000)))
        XCTAssertEqual(end.exit, "0:0", String(out.suffix(5000)))
        XCTAssertTrue(out.contains("worker-home-0 was killed by signal 9; restarting it"), String(out.suffix(4000)))
        let s = try Harness.readJSON(run.appendingPathComponent("summary.json"))
        let leases = s["leases"] as? [[String: Any]] ?? []
        XCTAssertEqual(leases.count, 3, "three epochs: \(leases)")
        // The cancelled step's lease, if it held one, is taken back and leased again. Whether it held one
        // is up to the moment of the scancel (on this small data a worker spends much of an epoch waiting
        // at its end for the evaluation, holding none; a full-suite run saw released 0): the coordinator's
        // note on dropping home-0 says which chunks went back, and `released` must count exactly those.
        let drops = out.split(separator: "\n").filter { $0.contains("[coordinator]") && $0.contains("home-0 (member ") }
        XCTAssertFalse(drops.isEmpty, "the coordinator dropped the cancelled worker's member: \(out.suffix(4000))")
        let back = drops.reduce(0) { n, line in
            n + (line.range(of: "; ").map { line[$0.upperBound...].components(separatedBy: " of home").count - 1 } ?? 0)
        }
        XCTAssertEqual(leases.reduce(0) { $0 + ($1["released"] as? Int ?? 0) }, back,
                       "released counts the chunks the dropped member held (\(drops)): \(leases)")
        for l in leases {
            XCTAssertEqual(l["done"] as? Int, l["chunks"] as? Int, "every chunk of the epoch done once: \(l)")
            XCTAssertEqual((l["leased"] as? Int ?? 0), (l["chunks"] as? Int ?? -1) + (l["released"] as? Int ?? 0), "\(l)")
        }
        XCTAssertEqual((s["restarts"] as? [String: Int])?["home-0"], 1, "\(s["restarts"] ?? "none")")
        let auc = (s["overall"] as? [String: Any])?["auc"] as? Double ?? 0
        XCTAssertGreaterThan(auc, 0.6, "training learnt something")
    }

    /// `--requeue` does the right thing with the exit codes: SIGTERM to the batch step (as before a time limit,
    /// `--signal=B:TERM`) checkpoints the job and ends it with 143, which the cluster's RequeueExit queues
    /// again; the requeued script (SLURM_RESTART_COUNT 1) resumes from that checkpoint and completes, every
    /// chunk of every epoch once. Slurm holds a requeued job for a while (BeginTime); the test makes it
    /// eligible at once.
    func testATerminatedJobIsRequeuedAndResumesFromItsStopCheckpoint() throws {
        let env = try requireSlurm()
        let run = try Harness.tempDir("slurm-requeue")
        defer { try? FileManager.default.removeItem(at: run) }
        let sub = try slurm("sbatch", ["--parsable"] + submitArgs(run, tasks: 6, slot: 28, wait: false), env: env)
        XCTAssertEqual(sub.status, 0, sub.output)
        let job = sub.output.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ";").first.map(String.init) ?? ""
        defer { _ = try? slurm("scancel", [job], env: env) }
        let by = Date().addingTimeInterval(240)
        while !(jobOutput(run).contains("[worker-home-0] ") && jobOutput(run).contains("progress")) && Date() < by {
            if try finished(job, env: env) != nil { break }
            Thread.sleep(forTimeInterval: 0.5)
        }
        Thread.sleep(forTimeInterval: 1)
        XCTAssertEqual(try slurm("scancel", ["--signal=TERM", "--batch", job], env: env).status, 0)
        // Requeued: pending again, restarted once, its last exit 143.
        var requeued = false
        let rby = Date().addingTimeInterval(120)
        while !requeued && Date() < rby {
            let show = try slurm("scontrol", ["show", "job", job], env: env).output
            requeued = show.contains("Restarts=1") && show.contains("ExitCode=143:0")
            if !requeued { Thread.sleep(forTimeInterval: 0.5) }
        }
        let stopped = jobOutput(run)
        XCTAssertTrue(requeued, "job \(job) was not requeued with exit 143: \(stopped.suffix(3000))")
        guard let stopLine = stopped.split(separator: "\n").first(where: { $0.contains("taken before stopping") }),
              let ckpt = stopLine.split(separator: " ").first(where: { $0.contains("/checkpoints/ckpt-") }) else {
            return XCTFail("no checkpoint before stopping: \(stopped.suffix(3000))")
        }
        XCTAssertTrue(stopped.contains("Slurm job \(job): exit status 143"), String(stopped.suffix(2000)))
        // Slurm holds a requeued job (BeginTime) partly because slurmd revokes the old run's credential with a
        // whole-second time stamp and refuses a launch whose credential is not newer: released in the same
        // second, the relaunch failed at once (FAILED 1:0, no output; seen in a full-suite run). Release it
        // only once a second has surely passed.
        Thread.sleep(forTimeInterval: 2.5)
        _ = try slurm("scontrol", ["update", "JobId=\(job)", "StartTime=now"], env: env)

        var end: (state: String, exit: String)?
        let endBy = Date().addingTimeInterval(420)
        while end == nil && Date() < endBy {
            Thread.sleep(forTimeInterval: 1)
            end = try finished(job, env: env)
        }
        let out = jobOutput(run)
        XCTAssertEqual(end?.state, "COMPLETED", String(out.suffix(5000)))
        XCTAssertEqual(end?.exit, "0:0", String(out.suffix(5000)))
        XCTAssertTrue(out.contains("restart 1; run directory"), String(out.suffix(3000)))
        XCTAssertTrue(out.contains("checkpoint=\(ckpt) ") && out.contains("resuming from a checkpoint"),
                      "the requeued job resumed from the stop checkpoint \(ckpt): \(out.suffix(4000))")
        let s = try Harness.readJSON(run.appendingPathComponent("summary.json"))
        let leases = s["leases"] as? [[String: Any]] ?? []
        XCTAssertEqual(leases.count, 3, "three epochs: \(leases)")
        for l in leases { XCTAssertEqual(l["done"] as? Int, l["chunks"] as? Int, "every chunk of the epoch done once: \(l)") }
    }

    /// An allocation smaller than the job (3 tasks for 2 servers + the coordinator + 3 workers): a clear
    /// error naming both counts and the sbatch flag before any process starts, and a permanent exit status.
    func testAnAllocationSmallerThanTheJobIsRefusedBeforeTraining() throws {
        let env = try requireSlurm()
        let run = try Harness.tempDir("slurm-small")
        defer { try? FileManager.default.removeItem(at: run) }
        let r = try slurm("sbatch", submitArgs(run, tasks: 3, slot: 26, wait: true), env: env, timeout: 240)
        let out = jobOutput(run)
        XCTAssertEqual(r.status, 2, "sbatch --wait exits with the job's status: \(r.output)\n\(out.suffix(3000))")
        XCTAssertTrue(out.contains("the job needs 6 processes (2 servers, the coordinator, 3 workers: home 2, shop 1) but the allocation holds 3"),
                      String(out.suffix(3000)))
        XCTAssertTrue(out.contains("sbatch --ntasks=6"), String(out.suffix(3000)))
        XCTAssertFalse(out.contains("== starting"), "nothing was started: \(out.suffix(3000))")
        XCTAssertFalse(FileManager.default.fileExists(atPath: run.appendingPathComponent("summary.json").path))
    }
}
