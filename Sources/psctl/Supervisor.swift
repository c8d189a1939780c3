import ArgumentParser
import Foundation
import Logging
import ScenePSClient
import ScenePSCore
import ScenePSTransport
import ScenePSProtocol
import ScenePSServer
#if canImport(Glibc)
import Glibc
#endif

/// The supervisor's state and how it starts and reaches its processes; its loop is in
/// Supervisor+Loop.swift, server recovery in Supervisor+Recovery.swift, the child processes
/// themselves in ChildProcess.swift.
///
/// Signals and children are plain threads and Foundation.Process, not swift-service-lifecycle's
/// ServiceGroup or swift-subprocess: both are async/await APIs, and the supervisor is one synchronous
/// polling loop (it waits on sockets with ZMQCoordinatorLink, which blocks a thread); adopting them would
/// rewrite the loop as structured concurrency for no change in behaviour, and add two packages to every
/// CI build. The loop polls each child's exit status and the signal flag every 50 ms instead.
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
    /// The allocation's process count (`--slots`); nil: unbounded.
    var slots: Int?
    /// With CURVE: the key directory every child gets (`--keys`), and the supervisor's own admin keys.
    var keysDir: String?
    var curve: CurveClientKeys?
    var keysArguments: [String] { keysDir.map { ["--keys", $0] } ?? [] }
    /// Every server's row caps (`RowCapPlan`).
    var serverArguments: [String] = []
    /// Seconds of silence after which a running server is declared dead (ServerWatch).
    var serverDeadAfter = 10.0
    /// Heartbeats to the servers while the job runs (set once they are all up).
    var watch: ServerWatch?
    /// Why a server was declared dead while its process ran (its silence), for the recovery's messages.
    var silenced: [Int: String] = [:]
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
        if coordinator != nil { writeReport() }   // what it trained before it failed
        return 1
    }

    /// `exe` of the bin directory started on `host` (the same path there: docs/DEPLOY.md).
    func start(_ name: String, _ exe: String, _ args: [String], on host: HostsFile.Host) throws -> Child {
        try Child(name: name, command: host.command([(bin as NSString).appendingPathComponent(exe)] + args + (observe?.arguments(for: name) ?? [])),
                  host: host,
                  log: (logsDir as NSString).appendingPathComponent("\(name).log"), out: out)
    }

    /// Server i, restoring its shard from checkpoint `restore` (a path or `latest`) when given.
    func startServer(_ i: Int, restore: String?) throws -> Child {
        try FileManager.default.createDirectory(atPath: checkpointDir, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: (runDir as NSString).appendingPathComponent("servers"), withIntermediateDirectories: true)
        watch?.reset(i)
        return try start("server-\(i)", "ps-server", [
            "--shard-index", "\(i)", "--shard-count", "\(plan.servers.count)", "--bind", plan.serverBinds[i],
            "--advertise", plan.servers[i], "--checkpoint-dir", checkpointDir, "--push-counter", pushCounterPath(i),
        ] + (restore.map { ["--restore", $0] } ?? []) + keysArguments + serverArguments, on: plan.hosts.serverHost(i))
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
            "--bind", plan.coordinatorBind, "--advertise", plan.coordinator, "--dead-after", "\(deadAfter)",
            "--checkpoint-dir", checkpointDir, "--workers", plan.scenes.map { "\($0.0)=\($0.1)" }.joined(separator: ","),
        ] + (resume.map { ["--restore-progress", $0] } ?? []) + keysArguments, on: plan.hosts.coordinatorHost)
        resume = nil   // a restarted coordinator continues from its journal
    }

    /// A new worker of `scene` (the next index, on the hosts file's next host for the scene), or the
    /// restart of worker `name` on `host`, the one it ran on.
    func startWorker(scene: String, name: String? = nil, on host: HostsFile.Host? = nil) throws {
        let n: String
        let h: HostsFile.Host
        if let name, let host { n = name; h = host } else {
            let k = nextIndex[scene, default: 0]
            nextIndex[scene] = k + 1
            n = "\(scene)-\(k)"
            h = plan.hosts.workerHost(scene: scene, index: k)
        }
        // Workers sharing h's cores: the plan's on that host, or more when pools grew.
        let planned = plan.scenes.reduce(0) { sum, sc in sum + (0..<sc.1).filter { plan.hosts.workerHost(scene: sc.0, index: $0) == h }.count }
        let total = max(planned, workers.filter { $0.host == h && $0.exitStatus == nil }.count + 1)
        workers.append(try start("worker-\(n)", "worker", [
            "--config", configPath, "--data", dataDir, "--coordinator", plan.coordinator, "--scene", scene, "--name", n,
            "--host-workers", "\(total)", "--progress-file", progressPath(n),
        ] + keysArguments, on: h))
        workers[workers.count - 1].scene = scene
        workers[workers.count - 1].memberName = n
    }

    /// Where worker `name` appends its progress (JSON lines, for psctl report); the same file across restarts.
    func progressPath(_ name: String) -> String { (runDir as NSString).appendingPathComponent("workers/\(name).jsonl") }

    /// One request/reply socket to any ScenePS peer (servers answer a Heartbeat and a Shutdown too).
    func link(_ endpoint: String, _ purpose: String, attempt: Duration, patience: Duration) -> ZMQCoordinatorLink? {
        var logger = Logger(label: "supervise")
        logger.logLevel = .critical
        return try? ZMQCoordinatorLink(endpoint: endpoint, sender: "supervise-\(purpose)-\(getpid())",
                                       attemptTimeout: attempt, patience: patience, curve: curve, logger: logger)
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
        if child.host.via.isEmpty { return "\(child.name) did not answer at \(endpoint) within \(Int(seconds)) s" }
        return "\(child.name) runs on host \(child.host.name) but nobody answers at its advertised endpoint \(endpoint) within \(Int(seconds)) s: "
            + "check that \(child.host.address) (the hosts file's address) reaches that host from here and from every other host, and that the port is open"
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

    var recoveries: [[String: String]] = []
    /// Every restart of a process, in order: `process`, `time` (Unix seconds), `why` (how it ended).
    var restartEvents: [[String: Any]] = []
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
        let state: [String: Any] = ["restarts": restarts, "recoveries": recoveries, "restart_events": restartEvents]
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
        restartEvents.append(["process": child.name, "time": Date().timeIntervalSince1970, "why": how])
        writeSupervisorState()
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
}
