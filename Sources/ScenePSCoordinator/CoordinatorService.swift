import CZeroMQ
import Foundation
import Logging
import ScenePSClient
import ScenePSCore
import ScenePSData
import ScenePSProtocol
import ScenePSTransport
import ScenePSWorker

/// Where a run directory keeps the coordinator's files.
public enum CoordinatorFiles {
    public static func dir(_ runDir: String) -> String { (runDir as NSString).appendingPathComponent("coordinator") }
    /// The journal: `CoordinatorJournal`, rewritten atomically after every change.
    public static func journal(_ runDir: String) -> String { (dir(runDir) as NSString).appendingPathComponent("state.json") }
    /// The endpoint the coordinator listens on (one line), for `psctl scale/status`.
    public static func endpoint(_ runDir: String) -> String { (dir(runDir) as NSString).appendingPathComponent("endpoint") }
    /// The servers' endpoints in shard order (one a line), for `psctl status` to ask them for their statistics.
    public static func servers(_ runDir: String) -> String { (dir(runDir) as NSString).appendingPathComponent("servers") }
    /// With CURVE on: the key directory the coordinator was started with (one line), so that
    /// `psctl status/scale/checkpoint --run-dir` find the admin key by themselves.
    public static func keys(_ runDir: String) -> String { (dir(runDir) as NSString).appendingPathComponent("keys") }
    /// The key directory of the job in `runDir`, when it runs with CURVE.
    public static func keysDir(_ runDir: String) -> String? {
        guard let text = try? String(contentsOfFile: keys(runDir), encoding: .utf8) else { return nil }
        let dir = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return dir.isEmpty ? nil : dir
    }
}

/// The coordinator process: a `Coordinator` behind a ROUTER socket, its
/// journal in the run directory, and the epoch evaluation on a thread of its
/// own (members keep being answered while it runs).
public final class CoordinatorService: @unchecked Sendable {
    // @unchecked: `coordinator` and the flags are only touched under `lock`.
    public struct Options: Sendable {
        public var bind: String
        /// The endpoint members connect to; nil: the bound one (a wildcard host replaced by this host's name).
        public var advertise: String?
        public var runDir: String
        public var dataDir: String
        public var servers: [String]
        public var membership = MembershipSettings()
        /// Where the servers write checkpoints (their --checkpoint-dir); nil: no checkpoints.
        public var checkpointDir: String?
        /// Resume: take the job's state from this checkpoint's manifest (its `progress`) instead of the journal.
        public var restoreProgress: String?
        /// After training is over, how long to wait for members to hear it.
        public var drainSeconds: Double = 20
        /// Who sizes each scene's pool: the config and `psctl scale` (launcher), or whoever registers.
        public var pools = PoolPolicy.launcher
        /// Each scene's pool size for a job without a journal (the launcher's plan, which flags may have
        /// changed); a scene not listed gets the config's size.
        public var workers: [String: Int] = [:]
        /// Accept only CURVE clients these keys list (docs/SECURITY.md); nil: plain TCP, every peer is admin.
        public var curve: CurveServerKeys?
        /// The admin client keys this coordinator reaches the servers with (checkpoints, snapshots, evaluation).
        public var clientCurve: CurveClientKeys?
        /// Where the keys came from (recorded for psctl in `CoordinatorFiles.keys`).
        public var keysDir: String?
        public init(bind: String, runDir: String, dataDir: String, servers: [String]) {
            self.bind = bind
            self.runDir = runDir
            self.dataDir = dataDir
            self.servers = servers
        }
    }

    let options: Options
    let config: ClusterConfig
    let logger: Logger
    let coordinator: Coordinator
    private let lock = NSLock()
    private var evaluating = false
    private var resumedAtBest = false
    private var checkpointing = false
    private var lastCheckpoint = Date().timeIntervalSince1970
    /// Set after an epoch's evaluation: checkpoint now (tagged best when it was the best epoch).
    private var epochCheckpoint: (epoch: Int, best: Bool)?
    private var evaluationFailures = 0
    /// On-demand checkpoints (`psctl checkpoint --run-dir`): ticket → its state; the queue waits for the next start.
    private var tickets: [UInt64: CoordinatorCheckpointReply] = [:]
    /// Starts at the clock (ms) so that a restarted coordinator never hands out a ticket its predecessor did.
    private var nextTicket = UInt64(Date().timeIntervalSince1970 * 1000)
    private var onDemandQueue: [(ticket: UInt64, tags: [String])] = []
    /// Fault point for tests (`SCENEPS_FAULT_COORDINATOR=kill-after-on-demand-reply`): SIGKILL this
    /// process right after answering an on-demand checkpoint request, before the checkpoint starts
    /// (once per run directory: RUN_DIR/coordinator/fault-fired).
    private var faultKillPending = false
    /// Bumped by every global rewind: an evaluation or checkpoint begun before one is stale.
    private var rewindGeneration = 0
    /// After a rewind to a checkpoint tagged best: the restored servers save it as the best model again.
    private var bestSavePending = false
    private var fatal: String?
    public private(set) var endpoint = ""
    /// Prometheus metrics (coordinator --metrics-port); nil: none kept. Set before `run`.
    public private(set) var metrics: CoordinatorMetrics?

    /// Keeps metrics in `registry`; `onScrape` runs their state read before each scrape.
    public func attachMetrics(_ m: CoordinatorMetrics, onScrape: (@escaping @Sendable () -> Void) -> Void) {
        metrics = m
        onScrape { [self] in
            lock.withLock { m.publish(coordinator, checkpointing: checkpointing, now: Date().timeIntervalSince1970) }
        }
    }

    public init(options: Options, config: ClusterConfig, logger: Logger) throws {
        self.options = options
        self.config = config
        self.logger = logger
        let manifest = try DatasetManifest.load(directory: options.dataDir)
        let plan = LeasePlan(
            scenes: manifest.scenes.sorted { $0.index < $1.index }.map { s in
                .init(name: s.name, chunks: s.train.map { .init(file: $0.file, examples: $0.count) })
            },
            servers: options.servers, seed: config.seed, maxProgressLead: config.training.maxProgressLead)
        try FileManager.default.createDirectory(atPath: CoordinatorFiles.dir(options.runDir), withIntermediateDirectories: true)
        let path = CoordinatorFiles.journal(options.runDir)
        let now = Date().timeIntervalSince1970
        var journal: CoordinatorJournal
        if let ckpt = options.restoreProgress {
            // The servers restore the same cut: data progress rewinds to it. Chunks in flight at the cut are not
            // done in it, so they are leased again; the members of then are gone.
            let m: CheckpointManifest
            (m, journal) = try CoordinatorJournal.fromCheckpoint(ckpt)
            try Self.check(journal, against: plan, path: ckpt + "/manifest.json")
            // Leases in flight at the cut are taken back: their chunks are leased again (counted as released).
            if !journal.epochs.isEmpty { journal.epochs[journal.epochs.count - 1].released += journal.leases.count }
            journal.members = []
            journal.leases = []
            journal.resumedFrom.append(ckpt)
            // A checkpoint taken right after the best epoch holds its model: the servers keep it as the best again.
            resumedAtBest = m.tags.contains("best")
            logger.notice("resuming from a checkpoint", metadata: [
                "checkpoint": "\(ckpt)", "epoch": "\(journal.epoch)", "phase": "\(journal.phase.rawValue)",
                "chunks_done": "\(journal.done.values.reduce(0) { $0 + $1.count })",
            ])
        } else if FileManager.default.fileExists(atPath: path) {
            journal = try JSONFile.read(CoordinatorJournal.self, from: path)
            guard journal.version == CoordinatorJournal.formatVersion else {
                throw ScenePSError.config("\(path): journal format \(journal.version), this coordinator reads \(CoordinatorJournal.formatVersion); remove the run directory's coordinator/ to start afresh")
            }
            try Self.check(journal, against: plan, path: path)
            logger.notice("restarting from the journal", metadata: [
                "epoch": "\(journal.epoch)", "phase": "\(journal.phase.rawValue)", "members": "\(journal.members.count)",
                "leases": "\(journal.leases.count)", "chunks_done": "\(journal.done.values.reduce(0) { $0 + $1.count })",
            ])
        } else {
            journal = CoordinatorJournal(startedAt: now)
            for name in options.workers.keys.sorted() where !plan.scenes.contains(where: { $0.name == name }) {
                throw ScenePSError.config("--workers: the data set has no scene '\(name)' (its scenes: \(plan.scenes.map(\.name).joined(separator: ", ")))")
            }
            let rows = Dictionary(uniqueKeysWithValues: plan.scenes.map { ($0.name, $0.examples) })
            for s in plan.scenes { journal.targets[s.name] = options.workers[s.name] ?? config.workers(forScene: s.name, sceneRows: rows) }
        }
        coordinator = Coordinator(plan: plan, settings: options.membership, journal: journal, now: now, logger: logger,
                                  pools: options.pools)
        coordinator.persist = { j in try JSONFile.write(j, to: path, sync: false) }
        coordinator.deferPersist = true
        try coordinator.recordStart()
    }

    static func check(_ j: CoordinatorJournal, against plan: LeasePlan, path: String) throws {
        try Coordinator.check(j, against: plan, path: path)
    }

    /// Serves until training is over and the members heard it (returns 0),
    /// or an unrecoverable error (returns 1, logged).
    public func run() throws -> Int32 {
        let context = try ZMQContext(ioThreads: 1)
        let socket = try ZMQSocket(context, type: .router, lingerMilliseconds: 500)
        // The ZAP handler is bound before the socket, and stopped after it closed (defers run in reverse).
        let zap = try options.curve.map { try ZAPHandler(context: context, keys: $0, logger: logger) }
        defer { zap?.stop() }
        defer { socket.close() }
        if let curve = options.curve { try socket.makeCurveServer(curve) }
        try socket.setHighWaterMarks(send: 10_000, receive: 10_000)
        try socket.setMaxMessageSize(1 << 20)
        try socket.bind(options.bind)
        endpoint = Endpoint.advertised(bound: try socket.lastEndpoint(), advertise: options.advertise)
        if let k = options.keysDir {
            let abs = URL(fileURLWithPath: k).standardizedFileURL.path
            try JSONFile.writeAtomically(Data((abs + "\n").utf8), to: CoordinatorFiles.keys(options.runDir))
        } else {
            try? FileManager.default.removeItem(atPath: CoordinatorFiles.keys(options.runDir))
        }
        try JSONFile.writeAtomically(Data((endpoint + "\n").utf8), to: CoordinatorFiles.endpoint(options.runDir))
        try JSONFile.writeAtomically(Data(options.servers.map { $0 + "\n" }.joined().utf8), to: CoordinatorFiles.servers(options.runDir))
        if resumedAtBest { try saveBestSnapshot() }
        logger.notice("ready", metadata: ["endpoint": "\(endpoint)", "epoch": "\(coordinator.epoch)",
                                          "scenes": "\(coordinator.plan.scenes.map(\.name).joined(separator: ","))"])
        var doneSince: Double?
        var lastTick = 0.0
        var messages = 0
        let started = Date()
        while true {
            let ready = try ZMQPoll.readable([socket], timeoutMilliseconds: 100)
            if ready[0] {
                // Group commit: every request waiting now is handled, the
                // journal written once, then the replies go out.
                var outgoing: [[ZMQOutgoingFrame]] = []
                while outgoing.count < 256, let frames = try socket.receive(dontWait: true) {
                    guard frames.count >= 2, let payload = frames.last else { continue }
                    let role: PeerRole? = options.curve == nil ? .admin : payload.userID.flatMap(PeerRole.init(rawValue:))
                    let peer = frames[0].withUnsafeBytes { b in b.map { String(format: "%02x", $0) }.joined() }
                    let reply = payload.withUnsafeBytes { handle($0, role: role, peer: peer) }
                    var out: [ZMQOutgoingFrame] = frames.dropLast().map { .bytes($0.bytes) }
                    out.append(.bytes(reply))
                    outgoing.append(out)
                }
                do { try lock.withLock { try coordinator.flush() } } catch {
                    // Replies are held back: the members retry, and the write is tried again.
                    logger.error("cannot write the coordinator journal; not answering until it can be", metadata: ["error": "\(error)"])
                    lastReply.removeAll()
                    continue
                }
                for out in outgoing { _ = try socket.send(out, dontWait: true) }
                messages += outgoing.count
                if lock.withLock({ faultKillPending }) {
                    // Fault point (tests): die once the reply is on its way, before the checkpoint can start.
                    usleep(200_000)
                    kill(getpid(), SIGKILL)
                }
            }
            let now = Date().timeIntervalSince1970
            if now - lastTick >= 0.1 {
                lastTick = now
                for (peer, held) in refusalLog.due() {
                    logger.warning("requests refused and not logged one by one", metadata: ["peer": "\(peer)", "held_back": "\(held)"])
                }
                let (evaluate, phase, members, fatal) = lock.withLock { () -> (Int?, CoordinatorJournal.Phase, Int, String?) in
                    coordinator.tick(now: now)
                    let e = !evaluating ? coordinator.epochToEvaluate : nil
                    if e != nil { evaluating = true }
                    return (e, coordinator.phase, coordinator.journal.members.count, self.fatal)
                }
                if let fatal {
                    logger.critical("stopping", metadata: ["error": "\(fatal)"])
                    FileHandle.standardError.write(Data("coordinator: error: \(fatal)\n".utf8))
                    return 1
                }
                if let evaluate { startEvaluation(epoch: evaluate) }
                if let c = checkpointDue(now: now, phase: phase) { startCheckpoint(dir: c.dir, tags: c.tags, tickets: c.tickets) }
                if lock.withLock({ () -> Bool in defer { bestSavePending = false }; return bestSavePending }) {
                    Thread.detachNewThread { [self] in
                        do { try saveBestSnapshot() } catch {
                            logger.error("cannot keep the restored checkpoint's model as the best epoch's", metadata: ["error": "\(error)"])
                        }
                    }
                }
                if phase == .done {
                    doneSince = doneSince ?? now
                    let checkpointPending = lock.withLock { checkpointing || epochCheckpoint != nil || !onDemandQueue.isEmpty }
                    if (members == 0 && !checkpointPending) || now - doneSince! > options.drainSeconds + (checkpointPending ? 600 : 0) {
                        let secs = Date().timeIntervalSince(started)
                        logger.notice("done", metadata: ["messages": "\(messages)",
                                                         "messages_per_sec": "\(Int(Double(messages) / max(secs, 1e-9)))",
                                                         "outcome": "\(coordinator.journal.outcome ?? "")"])
                        return 0
                    }
                }
            }
        }
    }

    /// Refusals and bad frames logged at most once per peer per interval, with a count.
    private let refusalLog = LogLimiter(interval: 10)

    private func logRefusal(_ message: Logger.Message, peer: String, _ metadata: Logger.Metadata) {
        guard case .log(let held) = refusalLog.admit(peer) else { return }
        logger.warning(message, metadata: metadata.merging(["peer": "\(peer)", "held_back": "\(held)"]) { a, _ in a })
    }

    private func handle(_ frame: UnsafeRawBufferPointer, role: PeerRole?, peer: String) -> [UInt8] {
        let request: Envelope
        do {
            request = try WireCodec.decode(frame)
        } catch {
            logRefusal("bad request", peer: peer, ["error": "\(error.message)", "sender": "\(error.sender)"])
            return WireCodec.encode(Envelope(requestID: error.requestID, sender: "coordinator",
                                             body: .error(ErrorReply(status: error.status, message: error.message))))
        }
        // A retry (same sender, same request id) gets the reply the first
        // attempt got: registrations, leases and reports apply once.
        // Checked before anything: a refused request changes nothing (and is not cached as another's reply).
        guard let role, request.body.allowed(for: role) else {
            let message = request.body.refusal(for: role)
            logRefusal("request refused", peer: peer, ["kind": "\(request.body.kindName)", "sender": "\(request.sender)",
                                                      "status": "\(Status.permissionDenied)", "error": "\(message)"])
            return WireCodec.encode(Envelope(requestID: request.requestID, sender: "coordinator",
                                             body: .error(ErrorReply(status: .permissionDenied, message: message))))
        }
        if let cached = lastReply[request.sender], cached.id == request.requestID { return cached.bytes }
        let now = Date().timeIntervalSince1970
        let body = lock.withLock { serviceRequest(request.body, now: now) ?? coordinator.handle(request.body, now: now) }
        if let m = metrics {
            if case .error(let e) = body { m.request(kind: request.body.kindName, status: "\(e.status)") }
            else { m.request(kind: request.body.kindName, status: "OK") }
        }
        if case .error(let e) = body {
            logRefusal("request refused", peer: peer, ["kind": "\(request.body.kindName)", "sender": "\(request.sender)",
                                                      "status": "\(e.status)", "error": "\(e.message)"])
        }
        let bytes = WireCodec.encode(Envelope(requestID: request.requestID, sender: "coordinator", body: body))
        if !request.sender.isEmpty {
            if lastReply.count > 10_000 { lastReply.removeAll() }
            lastReply[request.sender] = (request.requestID, bytes)
        }
        return bytes
    }

    /// The requests the service answers itself (they involve checkpoints on disk and threads), under `lock`;
    /// nil for the coordinator's own.
    private func serviceRequest(_ body: Body, now: Double) -> Body? {
        func refuse(_ status: Status, _ message: String) -> Body { .error(ErrorReply(status: status, message: message)) }
        switch body {
        case .coordinatorCheckpoint(let r):
            if r.ticket != 0 {
                // `psctl checkpoint --run-dir` recognises this refusal by its status (UNKNOWN_TICKET) and
                // looks for the checkpoint on disk, or asks again: tickets are not journaled.
                guard let t = tickets[r.ticket] else { return refuse(.unknownTicket, "checkpoint ticket \(r.ticket) is not known to this coordinator (it was restarted, or the ticket is wrong)") }
                return .coordinatorCheckpointReply(t)
            }
            guard options.checkpointDir != nil else {
                return refuse(.badRequest, "this job takes no checkpoints: its coordinator was started without --checkpoint-dir")
            }
            let t = nextTicket
            nextTicket += 1
            let tags = ["on-demand"] + r.tags.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty && $0 != "on-demand" }
            var reply = CoordinatorCheckpointReply(state: .pending, ticket: t)
            reply.message = checkpointing ? "queued: a checkpoint is under way; this one starts after it" : "queued"
            tickets[t] = reply
            onDemandQueue.append((t, tags))
            if ProcessInfo.processInfo.environment["SCENEPS_FAULT_COORDINATOR"] == "kill-after-on-demand-reply" {
                // Once per job: the restarted coordinator must live.
                let marker = (options.runDir as NSString).appendingPathComponent("coordinator/fault-fired")
                if !FileManager.default.fileExists(atPath: marker) {
                    FileManager.default.createFile(atPath: marker, contents: Data())
                    faultKillPending = true
                }
            }
            logger.notice("on-demand checkpoint asked for", metadata: ["ticket": "\(t)", "tags": "\(tags.joined(separator: ","))"])
            return .coordinatorCheckpointReply(reply)
        case .recovery(let r):
            var reply = RecoveryReply()
            switch r.action {
            case .begin:
                coordinator.beginRecovery(reason: r.reason, now: now)
                reply.checkpointing = checkpointing
                reply.message = checkpointing ? "a checkpoint is under way: ask again" : "no chunk is leased until the rewind"
            case .abort:
                coordinator.endRecovery(reason: r.reason)
                reply.message = "leasing again"
            case .rewind:
                let file = (r.checkpoint as NSString).appendingPathComponent("manifest.json")
                do {
                    let (m, progress) = try CoordinatorJournal.fromCheckpoint(r.checkpoint)
                    let x = try coordinator.rewind(to: progress, checkpoint: m.name, path: file, reason: r.reason, now: now)
                    rewindGeneration += 1
                    // The evaluation of a rewound epoch is trained and evaluated again.
                    evaluating = false
                    epochCheckpoint = nil
                    lastCheckpoint = now
                    if m.tags.contains("best") { bestSavePending = true }
                    reply.epochFrom = UInt32(x.epochFrom)
                    reply.epochTo = UInt32(x.epochTo)
                    reply.chunksUndone = UInt64(x.chunksUndone)
                    reply.examplesUndone = UInt64(x.examplesUndone)
                    reply.leasesReleased = UInt64(x.leasesReleased)
                    reply.message = "rewound to \(m.name)"
                } catch {
                    return refuse(.badRequest, "cannot rewind to \(r.checkpoint): \(error)")
                }
            }
            return .recoveryReply(reply)
        default:
            return nil
        }
    }

    /// The servers keep the model they hold now as the best epoch's (in memory, for the schedule's rollback).
    private func saveBestSnapshot() throws {
        var quiet = logger
        quiet.logLevel = .warning
        let client = try PSClient.forModel(endpoints: options.servers,
                                           sender: "coordinator-best-\(getpid())-\(UInt32.random(in: 0...UInt32.max))",
                                           config: config, role: "psctl", scene: "", curve: options.clientCurve, logger: quiet)
        try client.snapshot(.save, name: LearningRateSchedule.bestSnapshot)
    }

    /// Per sender, its last request id and the reply (the socket thread only).
    private var lastReply: [String: (id: UInt64, bytes: [UInt8])] = [:]

    /// A checkpoint to take now, if one is due and none is under way: after
    /// an epoch's evaluation, or every `checkpoint.every_seconds` while training.
    private func checkpointDue(now: Double, phase: CoordinatorJournal.Phase) -> (dir: String, tags: [String], tickets: [UInt64])? {
        guard let dir = options.checkpointDir else { return nil }
        return lock.withLock { () -> (dir: String, tags: [String], tickets: [UInt64])? in
            guard !checkpointing, !evaluating, coordinator.recoveringSince == nil else { return nil }
            // On-demand requests waiting join the next checkpoint (one serves every request made before it starts).
            let waiting = onDemandQueue
            onDemandQueue = []
            var extra: [String] = []
            for w in waiting { for t in w.tags where !extra.contains(t) { extra.append(t) } }
            if let e = epochCheckpoint {
                epochCheckpoint = nil
                checkpointing = true
                return (dir, ["epoch-\(e.epoch)"] + (e.best ? ["best"] : []) + extra, waiting.map(\.ticket))
            }
            if !waiting.isEmpty {
                checkpointing = true
                return (dir, extra, waiting.map(\.ticket))
            }
            let every = config.checkpoint.everySeconds
            guard phase == .training, every > 0, now - lastCheckpoint >= every else { return nil }
            checkpointing = true
            return (dir, [], [])
        }
    }

    /// One cut across the servers (docs/CHECKPOINTS.md), on a thread of its
    /// own. Its `progress` is the journal as it is just before the cut: a
    /// chunk reported done had all its pushes acknowledged before, so it is in
    /// the cut; chunks in flight are not done in it and are trained again
    /// after a restore. A failure (disk full, a server away) is logged and
    /// training goes on; the previous checkpoint stays the latest.
    private func startCheckpoint(dir: String, tags: [String], tickets waiting: [UInt64]) {
        let t = Thread { [self] in
            let started = Date().timeIntervalSince1970
            let (journal, epoch, done, generation) = lock.withLock {
                (coordinator.journal, coordinator.epoch, coordinator.chunksDone, rewindGeneration)
            }
            func answer(_ change: (inout CoordinatorCheckpointReply) -> Void) {
                for k in waiting { if var r = tickets[k] { change(&r); tickets[k] = r } }
            }
            do {
                var o = CheckpointDriver.Options(dir: dir)
                o.keep = config.checkpoint.keep
                o.tags = tags
                o.progress = try journal.checkpointProgress
                var quiet = logger
                quiet.logLevel = .warning
                let driver = try CheckpointDriver(endpoints: options.servers, sender: "coordinator-checkpoint-\(getpid())",
                                                  curve: options.clientCurve, logger: quiet)
                let r = try driver.checkpoint(o)
                let name = (r.path as NSString).lastPathComponent
                let stale = lock.withLock { () -> Bool in
                    guard generation == rewindGeneration else { return true }
                    let secs = Date().timeIntervalSince1970 - started
                    coordinator.recordCheckpoint(.init(name: name, path: r.path, time: started,
                                                       epoch: epoch, chunksDone: done, pushStallMs: r.pushStallMs, bytes: r.bytes,
                                                       seconds: secs, tags: tags))
                    answer { t in
                        t.state = .done
                        t.name = name
                        t.path = r.path
                        t.epoch = UInt32(epoch)
                        t.chunksDone = UInt64(done)
                        t.pushStallMs = r.pushStallMs
                        t.bytes = r.bytes
                        t.seconds = secs
                        t.message = ""
                    }
                    return false
                }
                if stale {
                    // A global rewind happened while it was taken: its progress is of before the rollback, the
                    // servers' cut may be of after it. Never leave such a checkpoint to be chosen as the latest.
                    try? FileManager.default.removeItem(atPath: r.path)
                    throw ScenePSError(.checkpoint, "checkpoint \(name) straddled a global rewind; removed")
                }
            } catch {
                logger.error("checkpoint failed; training goes on, the previous checkpoint stays the latest",
                             metadata: ["error": "\(error)"])
                lock.withLock { answer { t in t.state = .failed; t.message = "\(error)" } }
            }
            lock.withLock {
                checkpointing = false
                lastCheckpoint = Date().timeIntervalSince1970
            }
        }
        t.name = "coordinator-checkpoint"
        t.start()
    }

    private func startEvaluation(epoch: Int) {
        let t = Thread { [self] in
            let (journal, workers, times) = lock.withLock { () -> (CoordinatorJournal, [String: Int], [String: Double]) in
                var w: [String: Int] = [:]
                for m in coordinator.journal.members { w[m.scene, default: 0] += 1 }
                return (coordinator.journal, w, coordinator.workerTimes)
            }
            let generation = lock.withLock { rewindGeneration }
            logger.notice("evaluating", metadata: ["epoch": "\(epoch)"])
            do {
                var eval = EpochEvaluation(config: config, dataDir: options.dataDir, runDir: options.runDir,
                                           servers: options.servers, logger: logger)
                eval.curve = options.clientCurve
                let out = try eval.run(epoch: epoch, journal: journal, workers: workers, workerTimes: times)
                FileHandle.standardOutput.write(Data((out.text + "\n").utf8))
                let outcome = out.stop ? "stopped after epoch \(epoch): \(out.decision)" : ""
                try lock.withLock {
                    guard generation == rewindGeneration else {
                        logger.warning("epoch \(epoch)'s evaluation ended after a global rewind: discarded (the epoch is trained again)")
                        return
                    }
                    try coordinator.epochEvaluated(schedule: out.schedule, stop: out.stop, outcome: outcome,
                                                   now: Date().timeIntervalSince1970)
                    evaluating = false
                    evaluationFailures = 0
                    if config.checkpoint.atEpochEnd { epochCheckpoint = (epoch, out.schedule.bestEpoch == epoch) }
                }
            } catch {
                logger.error("evaluation failed", metadata: ["epoch": "\(epoch)", "error": "\(error)"])
                Thread.sleep(forTimeInterval: 2)
                lock.withLock {
                    guard generation == rewindGeneration else { return }
                    evaluationFailures += 1
                    if evaluationFailures >= 3 { fatal = "evaluating epoch \(epoch) failed 3 times: \(error)" }
                    evaluating = false
                }
            }
        }
        t.name = "coordinator-evaluate"
        t.start()
    }
}
