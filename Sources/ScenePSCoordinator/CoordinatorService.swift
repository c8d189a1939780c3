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
}

/// The coordinator process: a `Coordinator` behind a ROUTER socket, its
/// journal in the run directory, and the epoch evaluation on a thread of its
/// own (members keep being answered while it runs).
public final class CoordinatorService: @unchecked Sendable {
    // @unchecked: `coordinator` and the flags are only touched under `lock`.
    public struct Options: Sendable {
        public var bind: String
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
    private var fatal: String?
    public private(set) var endpoint = ""

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
            let m = try CheckpointManifest.load(dir: ckpt)
            do {
                journal = try JSONDecoder().decode(CoordinatorJournal.self, from: try JSONEncoder().encode(m.progress))
            } catch {
                throw ScenePSError(.checkpoint, "\(ckpt)/manifest.json: its progress is not a coordinator journal (\(error)); was it taken by psctl checkpoint without a job?")
            }
            guard journal.version == CoordinatorJournal.formatVersion else {
                throw ScenePSError(.checkpoint, "\(ckpt)/manifest.json: journal format \(journal.version), this coordinator reads \(CoordinatorJournal.formatVersion)")
            }
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
            for s in plan.scenes { journal.targets[s.name] = config.workers(forScene: s.name) }
        }
        coordinator = Coordinator(plan: plan, settings: options.membership, journal: journal, now: now, logger: logger)
        coordinator.persist = { j in try JSONFile.write(j, to: path, sync: false) }
        coordinator.deferPersist = true
        try coordinator.recordStart()
    }

    /// A journal must describe this data set: the same scenes and chunk counts.
    static func check(_ j: CoordinatorJournal, against plan: LeasePlan, path: String) throws {
        for (key, done) in j.done {
            guard let s = Int(key), plan.scenes.indices.contains(s), done.allSatisfy({ plan.scenes[s].chunks.indices.contains($0) }) else {
                throw ScenePSError.config("\(path): chunks done of scene \(key) do not exist in this data set (another data set's journal?)")
            }
        }
        for l in j.leases where !plan.scenes.indices.contains(l.scene) || !plan.scenes[l.scene].chunks.indices.contains(l.chunk) {
            throw ScenePSError.config("\(path): lease \(l.id) names chunk \(l.chunk) of scene \(l.scene), which this data set lacks")
        }
    }

    /// Serves until training is over and the members heard it (returns 0),
    /// or an unrecoverable error (returns 1, logged).
    public func run() throws -> Int32 {
        let context = try ZMQContext(ioThreads: 1)
        let socket = try ZMQSocket(context, type: .router, lingerMilliseconds: 500)
        defer { socket.close() }
        try socket.setHighWaterMarks(send: 10_000, receive: 10_000)
        try socket.setMaxMessageSize(1 << 20)
        try socket.bind(options.bind)
        endpoint = try socket.lastEndpoint()
        try JSONFile.writeAtomically(Data((endpoint + "\n").utf8), to: CoordinatorFiles.endpoint(options.runDir))
        if resumedAtBest {
            var quiet = logger
            quiet.logLevel = .warning
            let client = try PSClient.forModel(endpoints: options.servers, sender: "coordinator-resume-\(getpid())",
                                               config: config, role: "psctl", scene: "", logger: quiet)
            try client.snapshot(.save, name: LearningRateSchedule.bestSnapshot)
        }
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
                    let reply = payload.withUnsafeBytes { handle($0) }
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
            }
            let now = Date().timeIntervalSince1970
            if now - lastTick >= 0.1 {
                lastTick = now
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
                if let c = checkpointDue(now: now, phase: phase) { startCheckpoint(dir: c.dir, tags: c.tags) }
                if phase == .done {
                    doneSince = doneSince ?? now
                    let checkpointPending = lock.withLock { checkpointing || epochCheckpoint != nil }
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

    private func handle(_ frame: UnsafeRawBufferPointer) -> [UInt8] {
        let request: Envelope
        do {
            request = try WireCodec.decode(frame)
        } catch {
            logger.warning("bad request", metadata: ["error": "\(error.message)", "sender": "\(error.sender)"])
            return WireCodec.encode(Envelope(requestID: error.requestID, sender: "coordinator",
                                             body: .error(ErrorReply(status: error.status, message: error.message))))
        }
        // A retry (same sender, same request id) gets the reply the first
        // attempt got: registrations, leases and reports apply once.
        if let cached = lastReply[request.sender], cached.id == request.requestID { return cached.bytes }
        let now = Date().timeIntervalSince1970
        let body = lock.withLock { coordinator.handle(request.body, now: now) }
        if case .error(let e) = body {
            logger.warning("request refused", metadata: ["kind": "\(request.body.kindName)", "sender": "\(request.sender)",
                                                         "status": "\(e.status)", "error": "\(e.message)"])
        }
        let bytes = WireCodec.encode(Envelope(requestID: request.requestID, sender: "coordinator", body: body))
        if !request.sender.isEmpty {
            if lastReply.count > 10_000 { lastReply.removeAll() }
            lastReply[request.sender] = (request.requestID, bytes)
        }
        return bytes
    }

    /// Per sender, its last request id and the reply (the socket thread only).
    private var lastReply: [String: (id: UInt64, bytes: [UInt8])] = [:]

    /// A checkpoint to take now, if one is due and none is under way: after
    /// an epoch's evaluation, or every `checkpoint.every_seconds` while training.
    private func checkpointDue(now: Double, phase: CoordinatorJournal.Phase) -> (dir: String, tags: [String])? {
        guard let dir = options.checkpointDir else { return nil }
        return lock.withLock { () -> (dir: String, tags: [String])? in
            guard !checkpointing, !evaluating else { return nil }
            if let e = epochCheckpoint {
                epochCheckpoint = nil
                checkpointing = true
                return (dir, ["epoch-\(e.epoch)"] + (e.best ? ["best"] : []))
            }
            let every = config.checkpoint.everySeconds
            guard phase == .training, every > 0, now - lastCheckpoint >= every else { return nil }
            checkpointing = true
            return (dir, [])
        }
    }

    /// One cut across the servers (docs/CHECKPOINTS.md), on a thread of its
    /// own. Its `progress` is the journal as it is just before the cut: a
    /// chunk reported done had all its pushes acknowledged before, so it is in
    /// the cut; chunks in flight are not done in it and are trained again
    /// after a restore. A failure (disk full, a server away) is logged and
    /// training goes on; the previous checkpoint stays the latest.
    private func startCheckpoint(dir: String, tags: [String]) {
        let t = Thread { [self] in
            let started = Date().timeIntervalSince1970
            let (journal, epoch, done) = lock.withLock { (coordinator.journal, coordinator.epoch, coordinator.chunksDone) }
            do {
                let data = try JSONEncoder().encode(journal)
                var o = CheckpointDriver.Options(dir: dir)
                o.keep = config.checkpoint.keep
                o.tags = tags
                o.progress = try JSONDecoder().decode(JSONValue.self, from: data)
                var quiet = logger
                quiet.logLevel = .warning
                let driver = try CheckpointDriver(endpoints: options.servers, sender: "coordinator-checkpoint-\(getpid())", logger: quiet)
                let r = try driver.checkpoint(o)
                lock.withLock {
                    coordinator.recordCheckpoint(.init(name: (r.path as NSString).lastPathComponent, path: r.path, time: started,
                                                       epoch: epoch, chunksDone: done, pushStallMs: r.pushStallMs, bytes: r.bytes,
                                                       seconds: Date().timeIntervalSince1970 - started, tags: tags))
                }
            } catch {
                logger.error("checkpoint failed; training goes on, the previous checkpoint stays the latest",
                             metadata: ["error": "\(error)"])
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
            let (journal, workers) = lock.withLock { () -> (CoordinatorJournal, [String: Int]) in
                var w: [String: Int] = [:]
                for m in coordinator.journal.members { w[m.scene, default: 0] += 1 }
                return (coordinator.journal, w)
            }
            logger.notice("evaluating", metadata: ["epoch": "\(epoch)"])
            do {
                let eval = EpochEvaluation(config: config, dataDir: options.dataDir, runDir: options.runDir,
                                           servers: options.servers, logger: logger)
                let out = try eval.run(epoch: epoch, journal: journal, workers: workers)
                FileHandle.standardOutput.write(Data((out.text + "\n").utf8))
                let outcome = out.stop ? "stopped after epoch \(epoch): \(out.decision)" : ""
                try lock.withLock {
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
