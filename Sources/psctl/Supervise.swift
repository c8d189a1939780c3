import ArgumentParser
import Foundation
import Logging
import ScenePSClient
import ScenePSCore
import ScenePSProtocol
import ScenePSServer
#if canImport(Glibc)
import Glibc
#endif

/// Runs a whole job on this machine, as Kubernetes would run it on many:
/// starts the servers and the coordinator, keeps each scene's pool at the
/// size the coordinator asks for, restarts what dies when told to, and stops
/// everything at the end (cluster/local.sh runs it; docs/COORDINATOR.md).
struct Supervise: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a local job: servers, coordinator and workers, supervised (cluster/local.sh runs this).",
        discussion: """
            Starts the servers and waits until each answers, then the coordinator, then every scene's workers. \
            Every process's output is prefixed with its name and copied to RUN_DIR/logs/NAME.log. While the job \
            runs it keeps every scene's pool at the size the coordinator holds (psctl scale changes it): it \
            starts workers when a pool grows; workers over the size retire by themselves. A worker or the \
            coordinator that dies is restarted with --restart-on-failure (at most --max-restarts times each); \
            so is a server, from the latest checkpoint, as the config's `recovery` says (partial: only it, with \
            its shard; global: every server from that cut, and the coordinator's data progress rewound to it). \
            Without the flag, everything is stopped and the exit status is 1, naming the process. Exits 0 when \
            the coordinator ends the job. Ctrl-C / SIGTERM stop every process.
            """)

    @Option(help: "Directory of the ps-server, worker and coordinator executables.") var bin: String
    @Option(help: "Cluster config file (YAML).") var config: String
    @Option(help: "Prepared data set directory.") var data: String
    @Option(help: "Run directory (logs, journal, summary.json).") var runDir: String
    @Option(help: "Number of servers (overrides `servers`).") var servers: Int?
    @Option(help: "Workers for each scene the config does not size (overrides `workers_per_scene`).") var workersPerScene: Int?
    @Option(help: "Server i listens on tcp://127.0.0.1:(base-port + i), the coordinator on the next port.") var basePort: Int?
    @Flag(help: "Restart a worker or the coordinator that dies (as Kubernetes would).") var restartOnFailure = false
    @Option(help: "With --restart-on-failure: restarts allowed per process.") var maxRestarts: Int = 3
    @Option(help: "The coordinator declares a worker dead after this many seconds of silence.") var deadAfter: Double = 3
    @Option(help: "Resume the job of RUN_DIR from a checkpoint: `latest`, `latest-good` (the newest that passes every check) or a path. Servers restore it (onto any number of servers), the coordinator takes its data progress.")
    var resumeFrom: String?
    @Option(help: "Metrics (docs/OBSERVING.md): the supervisor serves Prometheus metrics on this port and gives each process the next free one up (P+1, P+2, ...); RUN_DIR/metrics/targets.json lists them for Prometheus's file_sd. Off when not given.")
    var metricsBasePort: Int?
    @Option(help: "With --metrics-base-port: the address the metrics ports bind.") var metricsHost: String = "127.0.0.1"

    func validate() throws {
        if let servers, servers < 1 { throw ValidationError("--servers must be at least 1") }
        if let workersPerScene, workersPerScene < 0 { throw ValidationError("--workers-per-scene must be 0 or more") }
        guard maxRestarts >= 0 else { throw ValidationError("--max-restarts must be 0 or more") }
        if let p = metricsBasePort, !(1...65000).contains(p) { throw ValidationError("--metrics-base-port must be in 1...65000, got \(p)") }
    }

    func run() throws {
        try reportingErrors {
            let plan = try ClusterPlan(configPath: config, dataDir: data, servers: servers, workersPerScene: workersPerScene,
                                       basePort: basePort)
            let sup = try Supervisor(bin: bin, configPath: config, dataDir: data, runDir: runDir, plan: plan,
                                     restartOnFailure: restartOnFailure, maxRestarts: maxRestarts, deadAfter: deadAfter)
            if let r = resumeFrom { sup.resume = try Supervisor.resolveCheckpoint(r, dir: sup.checkpointDir) }
            if let p = metricsBasePort {
                do {
                    sup.observe = try SupervisorObservation(basePort: p, host: metricsHost, runDir: runDir, logger: Logger(label: "supervise"))
                } catch { throw ScenePSError.invalidArgument("\(error)") }
                try sup.observe!.checkFree((0..<plan.servers.count).map { "server-\($0)" } + ["coordinator"])
            }
            let status = sup.run()
            if status != 0 { throw ExitCode(status) }
        }
    }
}

/// The supervisor's processes and loop.
final class Supervisor {
    let bin: String, configPath: String, dataDir: String, runDir: String
    let plan: ClusterPlan
    let restartOnFailure: Bool
    let maxRestarts: Int
    let deadAfter: Double
    let out = PrefixedOutput()
    var servers: [Child] = []
    var coordinator: Child?
    var workers: [Child] = []
    /// Next index per scene for new workers' names.
    var nextIndex: [String: Int] = [:]
    var restarts: [String: Int] = [:]
    let started = Date()
    /// Metrics (--metrics-base-port): the supervisor's endpoint and every process's port; nil: off.
    var observe: SupervisorObservation?

    init(bin: String, configPath: String, dataDir: String, runDir: String, plan: ClusterPlan,
         restartOnFailure: Bool, maxRestarts: Int, deadAfter: Double) throws {
        self.bin = bin
        self.configPath = configPath
        self.dataDir = dataDir
        self.runDir = runDir
        self.plan = plan
        self.restartOnFailure = restartOnFailure
        self.maxRestarts = maxRestarts
        self.deadAfter = deadAfter
        for b in ["ps-server", "worker", "coordinator"] {
            guard FileManager.default.isExecutableFile(atPath: (bin as NSString).appendingPathComponent(b)) else {
                throw ScenePSError.invalidArgument("missing executable \(bin)/\(b): build it with `swift build -c release`")
            }
        }
        try FileManager.default.createDirectory(atPath: logsDir, withIntermediateDirectories: true)
    }

    var logsDir: String { (runDir as NSString).appendingPathComponent("logs") }
    var checkpointDir: String { (runDir as NSString).appendingPathComponent("checkpoints") }

    func say(_ s: String) { out.line(s) }

    func fail(_ why: String) -> Int32 {
        FileHandle.standardError.write(Data("local.sh: FAILED: \(why)\nlocal.sh: logs in \(logsDir)\n".utf8))
        stopAll()
        return 1
    }

    func start(_ name: String, _ exe: String, _ args: [String]) throws -> Child {
        try Child(name: name, executable: (bin as NSString).appendingPathComponent(exe),
                  arguments: args + (observe?.arguments(for: name) ?? []),
                  log: (logsDir as NSString).appendingPathComponent("\(name).log"), out: out)
    }

    /// Server i, restoring its shard from checkpoint `restore` (a path or `latest`) when given.
    func startServer(_ i: Int, restore: String?) throws -> Child {
        try FileManager.default.createDirectory(atPath: checkpointDir, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: (runDir as NSString).appendingPathComponent("servers"), withIntermediateDirectories: true)
        return try start("server-\(i)", "ps-server", [
            "--shard-index", "\(i)", "--shard-count", "\(plan.servers.count)", "--bind", plan.servers[i],
            "--checkpoint-dir", checkpointDir, "--push-counter", pushCounterPath(i)] + (restore.map { ["--restore", $0] } ?? []))
    }

    /// Where server `i` keeps its count of applied pushes (it outlives the process).
    func pushCounterPath(_ i: Int) -> String { (runDir as NSString).appendingPathComponent("servers/server-\(i).pushes") }

    /// Pushes dead server `i` applied after checkpoint `m`'s cut (undone by restoring it), from the count it
    /// left in its push-counter file; nil when unknown (no file, or the checkpoint has another shard count).
    func pushesUndone(deadServer i: Int, since m: CheckpointManifest) -> UInt64? {
        guard let c = PushCounterFile.read(pushCounterPath(i)), c.shard == i, c.shards == plan.servers.count,
              m.shard_count == plan.servers.count, let shard = m.shards.first(where: { $0.index == i }) else { return nil }
        return c.applied >= shard.applied_pushes ? c.applied - shard.applied_pushes : 0
    }

    func startCoordinator() throws {
        coordinator = try start("coordinator", "coordinator", [
            "--config", configPath, "--data", dataDir, "--servers", plan.servers.joined(separator: ","), "--run-dir", runDir,
            "--bind", plan.coordinator, "--dead-after", "\(deadAfter)", "--checkpoint-dir", checkpointDir,
        ] + (resume.map { ["--restore-progress", $0] } ?? []))
        resume = nil   // a restarted coordinator continues from its journal
    }

    func startWorker(scene: String, name: String? = nil) throws {
        let n: String
        if let name { n = name } else {
            let k = nextIndex[scene, default: 0]
            nextIndex[scene] = k + 1
            n = "\(scene)-\(k)"
        }
        let total = max(plan.scenes.reduce(0) { $0 + $1.1 }, workers.count + 1)
        workers.append(try start("worker-\(n)", "worker", [
            "--config", configPath, "--data", dataDir, "--coordinator", plan.coordinator, "--scene", scene, "--name", n,
            "--host-workers", "\(total)",
        ]))
        workers[workers.count - 1].scene = scene
        workers[workers.count - 1].memberName = n
    }

    /// One request/reply socket to any ScenePS peer (servers answer a Heartbeat and a Shutdown too).
    func link(_ endpoint: String, _ purpose: String, attempt: Duration, patience: Duration) -> ZMQCoordinatorLink? {
        var logger = Logger(label: "supervise")
        logger.logLevel = .critical
        return try? ZMQCoordinatorLink(endpoint: endpoint, sender: "supervise-\(purpose)-\(getpid())",
                                       attemptTimeout: attempt, patience: patience, logger: logger)
    }

    /// Asks `endpoint` for a heartbeat until it answers or `child` exits.
    func waitAnswer(_ child: Child, _ endpoint: String, _ body: Body, seconds: Double) -> String? {
        guard let link = link(endpoint, child.name, attempt: .milliseconds(300), patience: .milliseconds(300)) else {
            return "cannot open a socket to \(endpoint)"
        }
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            if let status = child.exitStatus { return "\(child.name) \(Child.describe(status)) before it was ready" }
            if (try? link.call(body)) != nil { return nil }
        }
        return "\(child.name) did not answer at \(endpoint) within \(Int(seconds)) s"
    }

    func coordinatorStatus() -> StatusReply? { try? coordinatorCalls?.status() }

    /// The supervisor's own calls to the coordinator (status, scale, checkpoint), over one link opened
    /// on first use; each call waits at most half a second.
    var coordinatorCalls: CoordinatorCalls? {
        if statusLink == nil { statusLink = link(plan.coordinator, "status", attempt: .milliseconds(500), patience: .milliseconds(500)) }
        return statusLink.map { CoordinatorCalls($0) }
    }
    var statusLink: ZMQCoordinatorLink?

    /// `body` asked of the coordinator until it answers, while the coordinator runs and at most until
    /// `deadline`; nil when it never did.
    func askCoordinator<R>(until deadline: Date, _ body: (CoordinatorCalls) throws -> R) -> R? {
        while Date() < deadline && coordinator?.exitStatus == nil {
            if let calls = coordinatorCalls, let r = try? body(calls) { return r }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return nil
    }

    func run() -> Int32 {
        let signals = SignalWatch()
        say("== run directory: \(runDir)")
        if let o = observe {
            o.endpoint.start()
            say("== metrics: \(o.endpoint.url) (the supervisor's); every process's in \(o.targetsFile)")
        }
        defer { observe?.endpoint.stop() }
        do {
            let resuming = resume != nil   // startCoordinator clears it
            say("== starting \(plan.servers.count) servers")
            for (i, ep) in plan.servers.enumerated() {
                servers.append(try startServer(i, restore: resume))
            }
            for (i, ep) in plan.servers.enumerated() {
                if let why = waitAnswer(servers[i], ep, .heartbeat(Heartbeat()), seconds: 30) { return fail(why) }
            }
            say("== starting the coordinator at \(plan.coordinator)")
            try startCoordinator()
            // Resumed from the checkpoint a finished job took at its end: its coordinator has nothing to do and ends.
            func finishedAlready() -> Int32? {
                guard resuming && coordinator?.exitStatus == 0 else { return nil }
                say("== the job in \(runDir) had already finished at that checkpoint: nothing left to train")
                return finish()
            }
            if let why = waitAnswer(coordinator!, plan.coordinator, .status, seconds: 30) { return finishedAlready() ?? fail(why) }
            // The pools the coordinator holds (its journal's, after a restart; else the config's). A resume
            // keeps the checkpoint's (psctl scale changes included) but for the scenes --workers-per-scene
            // sizes: those are resized to it the way psctl scale does (journaled, in summary.json's scaling).
            let asked = Date()
            guard let status = askCoordinator(until: asked.addingTimeInterval(30), { try $0.status() }) else {
                return finishedAlready() ?? fail("the coordinator at \(plan.coordinator) did not report its pools within 30 s")
            }
            var pools: [(String, Int)] = []
            for (scene, n) in plan.scenes {
                var target = status.scenes.first { $0.name == scene }.map { Int($0.target) } ?? n
                if resuming && plan.sizedByFlag.contains(scene) && target != n {
                    // Idempotent (it sets the size), so asked again until it answers.
                    guard askCoordinator(until: asked.addingTimeInterval(60), { try $0.scale(scene: scene, workers: n) }) != nil else {
                        return fail("the coordinator did not take scene \(scene)'s pool size \(n) within 60 s")
                    }
                    say("== scene \(scene): pool \(target) -> \(n) workers (the checkpoint's, resized by --workers-per-scene)")
                    target = n
                }
                for _ in 0..<max(0, target) { try startWorker(scene: scene) }
                pools.append((scene, max(0, target)))
            }
            let cores = ProcessInfo.processInfo.activeProcessorCount
            if workers.count > 2 * cores {
                FileHandle.standardError.write(Data("local.sh: note: \(workers.count) workers on \(cores) cores: every pull is many other workers' pushes old when its gradient lands (measured: 16 workers on 2 cores lose ~0.01 AUC against 4-8); fewer workers per scene train as fast here\n".utf8))
            }
            say("== \(workers.count) workers training (" + pools.map { "\($0.0): \($0.1)" }.joined(separator: ", ") + ")")
        } catch {
            return fail("\(error)")
        }
        var lastReconcile = Date.distantPast
        while true {
            if let sig = signals.received {
                let what = sig == SIGINT ? "interrupted" : "terminated"
                FileHandle.standardError.write(Data("local.sh: \(what): checkpointing the job first (at most \(Int(Self.stopCheckpointSeconds)) s; again to stop at once)\n".utf8))
                checkpointBeforeStopping(signals)
                FileHandle.standardError.write(Data("local.sh: \(what), stopping every process\n".utf8))
                stopAll()
                return sig == SIGINT ? 130 : 143
            }
            for (i, s) in servers.enumerated() {
                guard s.exitStatus != nil else { continue }
                if let why = restartServer(i) { return fail(why) }
            }
            if let c = coordinator, let st = c.exitStatus {
                if st == 0 { return finish() }
                if let why = restart(c, what: "the coordinator") { return fail(why) }
                do { try startCoordinator() } catch { return fail("restarting the coordinator: \(error)") }
            }
            var i = 0
            while i < workers.count {
                let w = workers[i]
                guard let st = w.exitStatus else { i += 1; continue }
                workers.remove(at: i)
                if st == 0 { continue }   // retired, or the job is over
                if let why = restart(w, what: w.name) {
                    return fail(why + serversNotAnswering())
                }
                do { try startWorker(scene: w.scene, name: w.memberName) } catch { return fail("restarting \(w.name): \(error)") }
            }
            if Date().timeIntervalSince(lastReconcile) > 0.5 {
                lastReconcile = Date()
                reconcile()
                observe?.publish(self)
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    /// Partial recovery (docs/CHECKPOINTS.md): a dead server comes back with
    /// its shard of the latest complete checkpoint; the other servers and the
    /// workers go on (their requests to it are retried, and pushes it had
    /// applied before the cut are recognised as duplicates). The pushes it
    /// acknowledged after the cut are undone: that is the recovery debt,
    /// logged and kept in RUN_DIR/coordinator/supervisor.json for summary.json.
    /// nil when restarted; else why the job must stop.
    func restartServer(_ i: Int) -> String? {
        let s = servers[i]
        let how = Child.describe(s.exitStatus ?? -1)
        guard restartOnFailure else { return "server-\(i) \(how) while the job ran" }
        if plan.config.recovery == .global { return recoverGlobally(dead: i) }
        guard let latest = (try? CheckpointDirectory.list(checkpointDir))?.first(where: { $0.manifest != nil }),
              let m = latest.manifest else {
            return "server-\(i) \(how), and no checkpoint exists yet to restore its shard from (checkpoint.every_seconds in the config)"
        }
        if let why = restart(s, what: s.name) { return why }
        let age = Date().timeIntervalSince1970 - m.created_unix
        let undone = pushesUndone(deadServer: i, since: m)
        let debt = (undone.map { "\($0) pushes, " } ?? "") + String(format: "%.0f s of its pushes (since checkpoint %@)", age, latest.name)
        FileHandle.standardError.write(Data("local.sh: server-\(i) restores its shard from \(latest.path); recovery debt: \(debt) are undone\n".utf8))
        var e = ["process": "server-\(i)", "policy": "partial", "checkpoint": latest.name, "time": "\(Date().timeIntervalSince1970)",
                 "seconds_undone": String(format: "%.1f", age)]
        if let undone { e["pushes_undone"] = "\(undone)" }
        recoveries.append(e)
        writeSupervisorState()
        do { servers[i] = try startServer(i, restore: latest.path) } catch { return "restarting server-\(i): \(error)" }
        if let why = waitAnswer(servers[i], plan.servers[i], .heartbeat(Heartbeat()), seconds: 120) { return why }
        return nil
    }

    /// Global recovery (docs/CHECKPOINTS.md, "Recovery policy"): server `dead` died; every server rolls back
    /// to the latest complete checkpoint and the coordinator's data progress rewinds to it.
    ///  1. BEGIN to the coordinator: it leases no chunk and starts no checkpoint from now on; wait until a
    ///     checkpoint under way has ended (its cut is then the latest, or it failed);
    ///  2. choose the latest complete checkpoint; ask each live server how many pushes it applied (the debt:
    ///     those since the cut), stop it;
    ///  3. start every server with `--restore` of that checkpoint and wait until each answers;
    ///  4. REWIND to the coordinator: its progress becomes the checkpoint's, leases in flight are released.
    /// Servers first, rewind second: a chunk leased after the rewind is pushed into the restored state only,
    /// so no chunk counted done is ever lost (one done after the cut is trained again). Workers ride out the
    /// gap: their requests are retried, and the de-duplication windows are the checkpoint's, so a retried push
    /// the cut holds is not applied twice. nil when recovered; else why the job must stop.
    func recoverGlobally(dead i: Int) -> String? {
        let s = servers[i]
        let how = Child.describe(s.exitStatus ?? -1)
        let reason = "server-\(i) \(how)"
        let coordinatorCalls = link(plan.coordinator, "recovery", attempt: .seconds(1), patience: .seconds(5)).map(CoordinatorCalls.init)
        // 1. No new lease, no new checkpoint; a checkpoint under way ends first (bounded: its own timeouts).
        let beginBy = Date().addingTimeInterval(120)
        while Date() < beginBy {
            guard let r = try? coordinatorCalls?.recovery(RecoveryRequest(action: .begin, reason: reason)) else { break }
            if !r.checkpointing { break }
            Thread.sleep(forTimeInterval: 0.2)
        }
        // 2. The cut every server goes back to.
        guard let latest = (try? CheckpointDirectory.list(checkpointDir))?.first(where: { $0.manifest != nil }),
              let m = latest.manifest else {
            _ = try? coordinatorCalls?.recovery(RecoveryRequest(action: .abort, reason: "no checkpoint"))
            return "server-\(i) \(how), and no checkpoint exists yet to roll the servers back to (checkpoint.every_seconds in the config)"
        }
        if let why = restart(s, what: s.name) { return why }
        let age = Date().timeIntervalSince1970 - m.created_unix
        var undone: [Int: UInt64] = [:]
        undone[i] = pushesUndone(deadServer: i, since: m)
        for (j, ep) in plan.servers.enumerated() where j != i && servers[j].exitStatus == nil {
            let probe = CheckpointRequest(action: .status, name: "recovery-probe-\(getpid())")
            if case .checkpointReply(let r)? = try? link(ep, "debt-\(j)", attempt: .seconds(1), patience: .seconds(2))?.call(.checkpoint(probe)),
               m.shard_count == plan.servers.count, j < m.shards.count {
                undone[j] = r.appliedPushes >= m.shards[j].applied_pushes ? r.appliedPushes - m.shards[j].applied_pushes : 0
            }
        }
        FileHandle.standardError.write(Data("local.sh: \(reason); global recovery: every server rolls back to \(latest.path)\n".utf8))
        for (j, c) in servers.enumerated() where j != i { c.terminate() }
        let stopBy = Date().addingTimeInterval(10)
        while servers.enumerated().contains(where: { $0.offset != i && $0.element.exitStatus == nil }) && Date() < stopBy {
            Thread.sleep(forTimeInterval: 0.05)
        }
        for (j, c) in servers.enumerated() where j != i { c.kill() }
        while servers.enumerated().contains(where: { $0.offset != i && $0.element.exitStatus == nil }) && Date() < stopBy.addingTimeInterval(5) {
            Thread.sleep(forTimeInterval: 0.05)
        }
        // 3. Every server from the same cut.
        do {
            for j in plan.servers.indices { servers[j] = try startServer(j, restore: latest.path) }
        } catch { return "restarting the servers from \(latest.path): \(error)" }
        for (j, ep) in plan.servers.enumerated() {
            if let why = waitAnswer(servers[j], ep, .heartbeat(Heartbeat()), seconds: 120) { return why }
        }
        if ProcessInfo.processInfo.environment["SCENEPS_FAULT_SUPERVISOR"] == "kill-coordinator-before-rewind", let c = coordinator {
            // Fault point (tests): the coordinator dies between the servers' restore and the rewind.
            c.kill()
            let by = Date().addingTimeInterval(10)
            while c.exitStatus == nil && Date() < by { Thread.sleep(forTimeInterval: 0.05) }
        }
        // 4. The data progress back to the same cut: one request, resent under the same id until answered
        // (the coordinator applies it once: its reply cache). Should the coordinator process die meanwhile,
        // the wait is abandoned, the coordinator restarted here as the main loop would, and the request sent
        // to its successor (whose journal does not hold BEGIN: it may lease again until the rewind, which
        // then takes those chunks back too).
        guard let rewindLink = link(plan.coordinator, "rewind", attempt: .seconds(2), patience: .seconds(120)) else {
            return "cannot open a socket to the coordinator at \(plan.coordinator)"
        }
        let rewindCalls = CoordinatorCalls(rewindLink)
        var rewound: RecoveryReply?
        let rewindBy = Date().addingTimeInterval(120)
        while rewound == nil {
            if let c = coordinator, c.exitStatus != nil {
                if let why = restart(c, what: "the coordinator") { return why + " during the global recovery" }
                do { try startCoordinator() } catch { return "restarting the coordinator during the global recovery: \(error)" }
            }
            let watched = coordinator
            rewindLink.abandon = { watched?.exitStatus != nil }
            do {
                rewound = try rewindCalls.recovery(RecoveryRequest(action: .rewind, checkpoint: latest.path, reason: reason))
            } catch let e as CoordinatorError {
                return "the coordinator refused to rewind its data progress to \(latest.path): \(e)"
            } catch {
                guard Date() < rewindBy, watched?.exitStatus != nil else {
                    return "the coordinator did not answer the rewind to \(latest.path): \(error)"
                }
            }
        }
        let x = rewound!
        let now = Date().timeIntervalSince1970
        let debt = plan.servers.indices.map { j in "server-\(j): " + (undone[j].map { "\($0) pushes" } ?? "unknown") }
        FileHandle.standardError.write(Data(("local.sh: every server restored \(latest.name); recovery debt: \(String(format: "%.0f", age)) s of pushes since the cut (" +
            debt.joined(separator: ", ") + "); data progress rewound from epoch \(x.epochFrom) to \(x.epochTo): \(x.chunksUndone) chunks trained again, \(x.leasesReleased) leases released\n").utf8))
        for j in plan.servers.indices {
            var e = ["process": "server-\(j)", "policy": "global", "checkpoint": latest.name, "time": "\(now)",
                     "seconds_undone": String(format: "%.1f", age), "cause": reason]
            if let n = undone[j] { e["pushes_undone"] = "\(n)" }
            if j == i {
                e["chunks_rewound"] = "\(x.chunksUndone)"
                e["examples_rewound"] = "\(x.examplesUndone)"
                e["leases_released"] = "\(x.leasesReleased)"
                e["epoch_from"] = "\(x.epochFrom)"
                e["epoch_to"] = "\(x.epochTo)"
            }
            recoveries.append(e)
        }
        writeSupervisorState()
        return nil
    }

    var recoveries: [[String: String]] = []
    /// The checkpoint a resumed job starts from.
    var resume: String?

    /// `latest`, `latest-good` or a path → a checkpoint directory that will be restored; a clear error
    /// before anything starts when there is none or it is damaged.
    static func resolveCheckpoint(_ which: String, dir: String) throws -> String {
        if which == "latest" || which == "latest-good" {
            guard FileManager.default.fileExists(atPath: dir) else {
                throw ScenePSError(.checkpoint, "\(dir) does not exist: this run directory has no checkpoints to resume from")
            }
        }
        return try CheckpointRestore.resolve(which, dir: dir, logger: nil) { p in
            if which == "latest-good" { _ = try CheckpointRestore.verify(path: p) } else { _ = try CheckpointManifest.load(dir: p) }
        }
    }

    /// What only the supervisor knows, for the coordinator's summary.json: restarts of every process it
    /// started again, and each server recovery.
    func writeSupervisorState() {
        let state: [String: Any] = ["restarts": restarts, "recoveries": recoveries]
        if let d = try? JSONSerialization.data(withJSONObject: state, options: [.sortedKeys]) {
            try? FileManager.default.createDirectory(atPath: (runDir as NSString).appendingPathComponent("coordinator"),
                                                     withIntermediateDirectories: true)
            try? JSONFile.writeAtomically(d, to: (runDir as NSString).appendingPathComponent("coordinator/supervisor.json"))
        }
    }

    /// nil when `child` may be restarted (and counts it); else why not.
    func restart(_ child: Child, what: String) -> String? {
        let how = Child.describe(child.exitStatus ?? -1)
        guard restartOnFailure else { return "\(child.name) \(how)" }
        let n = restarts[child.name, default: 0]
        guard n < maxRestarts else { return "\(child.name) \(how), and was restarted \(n) times already (--max-restarts)" }
        restarts[child.name] = n + 1
        FileHandle.standardError.write(Data("local.sh: \(child.name) \(how); restarting it (\(n + 1) of \(maxRestarts))\n".utf8))
        return nil
    }

    /// A worker usually fails because a server stopped answering: name it.
    func serversNotAnswering() -> String {
        var silent: [String] = []
        for (i, ep) in plan.servers.enumerated() {
            guard let link = link(ep, "check-\(i)", attempt: .milliseconds(500), patience: .seconds(1)) else { continue }
            if (try? link.call(.heartbeat(Heartbeat()))) == nil { silent.append("server-\(i) (\(ep))") }
        }
        return silent.isEmpty ? "" : "; " + silent.joined(separator: ", ") + " does not answer"
    }

    /// Starts workers for scenes whose pool is larger than what runs.
    func reconcile() {
        guard let s = coordinatorStatus(), s.phase != "done" else { return }
        for sc in s.scenes where sc.target >= 0 {
            let running = workers.filter { $0.scene == sc.name && $0.exitStatus == nil }.count
            if running < Int(sc.target) {
                for _ in running..<Int(sc.target) {
                    do { try startWorker(scene: sc.name) } catch { say("local.sh: cannot start a worker of \(sc.name): \(error)") }
                }
                say("== scene \(sc.name): \(sc.target) workers")
            }
        }
    }

    func finish() -> Int32 {
        // Workers hear "job done" at their next lease request; give them time, then stop them.
        let end = Date().addingTimeInterval(30)
        while workers.contains(where: { $0.exitStatus == nil }) && Date() < end { Thread.sleep(forTimeInterval: 0.1) }
        for w in workers where w.exitStatus == nil { w.terminate() }
        for (i, ep) in plan.servers.enumerated() {
            _ = try? link(ep, "shutdown-\(i)", attempt: .seconds(1), patience: .seconds(2))?.call(.shutdown(reason: "the job is over"))
        }
        let stopBy = Date().addingTimeInterval(10)
        while servers.contains(where: { $0.exitStatus == nil }) && Date() < stopBy { Thread.sleep(forTimeInterval: 0.1) }
        stopAll()
        out.flush(children: servers + workers + [coordinator].compactMap { $0 })
        say("== done in \(Int(Date().timeIntervalSince(started))) s; results: \((runDir as NSString).appendingPathComponent("summary.json"))")
        return 0
    }

    /// How long a stop (Ctrl-C, SIGTERM) waits for its checkpoint.
    static let stopCheckpointSeconds = 20.0

    /// Asked to stop: an on-demand checkpoint of the job first (tagged `stop`), so `--resume` goes on
    /// from this moment rather than from the last periodic one. Bounded by `stopCheckpointSeconds`; a
    /// second signal, a coordinator that is gone or refuses, and the stop goes on without it (the
    /// latest complete checkpoint stays the latest).
    func checkpointBeforeStopping(_ signals: SignalWatch) {
        let first = signals.count
        let end = Date().addingTimeInterval(Self.stopCheckpointSeconds)
        func goOn() -> Bool { Date() < end && signals.count == first && coordinator?.exitStatus == nil }
        guard let calls = coordinatorCalls else { return }
        var ticket: UInt64?
        while ticket == nil && goOn() {
            do { ticket = try calls.checkpoint(CoordinatorCheckpointRequest(ticket: 0, tags: "stop")).ticket } catch let e as CoordinatorError {
                return say("== no checkpoint before stopping: \(e); the latest complete one stays")
            } catch { Thread.sleep(forTimeInterval: 0.1) }
        }
        while let t = ticket, goOn() {
            guard let r = try? calls.checkpoint(CoordinatorCheckpointRequest(ticket: t)) else { continue }
            switch r.state {
            case .done:
                return say("== checkpoint \(r.path) taken before stopping: cluster/local.sh --run-dir \(runDir) --resume goes on from it")
            case .failed:
                return say("== the checkpoint before stopping failed (\(r.message)); the latest complete one stays")
            case .pending:
                Thread.sleep(forTimeInterval: 0.1)
            }
        }
        say("== no checkpoint before stopping (\(signals.count != first ? "stopped at once" : "none within \(Int(Self.stopCheckpointSeconds)) s")); the latest complete one stays")
    }

    func stopAll() {
        let all = servers + workers + [coordinator].compactMap { $0 }
        for c in all where c.exitStatus == nil { c.terminate() }
        let end = Date().addingTimeInterval(5)
        while all.contains(where: { $0.exitStatus == nil }) && Date() < end { Thread.sleep(forTimeInterval: 0.05) }
        for c in all where c.exitStatus == nil { c.kill() }
        out.flush(children: all)
    }
}

/// One child process: its output goes, line by line and prefixed with its
/// name, to our stdout and to its log file.
final class Child: @unchecked Sendable {
    // @unchecked: `status` is behind `lock`; the rest is set once.
    let name: String
    let process = Process()
    var scene = ""
    var memberName = ""
    private let lock = NSLock()
    private var status: Int32?
    private var pumpDone = false

    init(name: String, executable: String, arguments: [String], log: String, out: PrefixedOutput) throws {
        self.name = name
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardInput = FileHandle.nullDevice
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.terminationHandler = { [weak self] p in
            // A signal shows as 128 + signal, as a shell reports it.
            let st = p.terminationReason == .uncaughtSignal ? 128 + p.terminationStatus : p.terminationStatus
            self?.lock.lock(); self?.status = st; self?.lock.unlock()
        }
        if !FileManager.default.fileExists(atPath: log) { FileManager.default.createFile(atPath: log, contents: nil) }
        let logHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        logHandle.seekToEndOfFile()
        try process.run()
        try? pipe.fileHandleForWriting.close()
        let fd = pipe.fileHandleForReading.fileDescriptor
        let prefix = "[\(name)] "
        Thread.detachNewThread { [self] in
            var pending = [UInt8]()
            var buf = [UInt8](repeating: 0, count: 65_536)
            while true {
                let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                logHandle.write(Data(buf[0..<n]))
                pending.append(contentsOf: buf[0..<n])
                if let last = pending.lastIndex(of: 10) {
                    out.lines(prefix: prefix, pending[...last])
                    pending.removeSubrange(...last)
                }
            }
            if !pending.isEmpty { out.lines(prefix: prefix, pending[...] + [10]) }
            try? logHandle.close()
            lock.lock(); pumpDone = true; lock.unlock()
            _ = pipe
        }
    }

    var exitStatus: Int32? { lock.lock(); defer { lock.unlock() }; return status }
    var outputDone: Bool { lock.lock(); defer { lock.unlock() }; return pumpDone }

    func terminate() { if exitStatus == nil { Glibc.kill(process.processIdentifier, SIGTERM) } }
    func kill() { if exitStatus == nil { Glibc.kill(process.processIdentifier, SIGKILL) } }

    static func describe(_ status: Int32) -> String {
        status > 128 ? "was killed by signal \(status - 128)" : "exited with status \(status)"
    }
}

/// Whole lines to stdout, never interleaved mid-line.
final class PrefixedOutput: @unchecked Sendable {
    private let lock = NSLock()

    func line(_ s: String) { write(Array((s + "\n").utf8)) }

    func lines(prefix: String, _ bytes: ArraySlice<UInt8>) {
        var out = [UInt8]()
        let p = Array(prefix.utf8)
        var start = bytes.startIndex
        while let nl = bytes[start...].firstIndex(of: 10) {
            out += p
            out += bytes[start...nl]
            start = nl + 1
        }
        write(out)
    }

    private func write(_ b: [UInt8]) {
        lock.lock(); defer { lock.unlock() }
        b.withUnsafeBytes { p in
            var off = 0
            while off < p.count {
                let n = Glibc.write(1, p.baseAddress! + off, p.count - off)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }
                off += n
            }
        }
    }

    /// Waits (bounded) until the children's output is all written.
    func flush(children: [Child]) {
        let end = Date().addingTimeInterval(3)
        while children.contains(where: { !$0.outputDone }) && Date() < end { Thread.sleep(forTimeInterval: 0.02) }
    }
}

/// SIGINT and SIGTERM, noticed by the supervisor's loop.
final class SignalWatch: @unchecked Sendable {
    private let lock = NSLock()
    private var sig: Int32?
    private var signals = 0
    private var sources: [DispatchSourceSignal] = []

    init() {
        for s in [SIGINT, SIGTERM] {
            signal(s, SIG_IGN)
            let src = DispatchSource.makeSignalSource(signal: s, queue: .global())
            src.setEventHandler { [weak self] in self?.lock.lock(); self?.sig = s; self?.signals += 1; self?.lock.unlock() }
            src.resume()
            sources.append(src)
        }
    }

    var received: Int32? { lock.lock(); defer { lock.unlock() }; return sig }
    /// Signals received so far (a second Ctrl-C stops at once).
    var count: Int { lock.lock(); defer { lock.unlock() }; return signals }
}
