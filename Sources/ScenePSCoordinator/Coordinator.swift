import Foundation
import Logging
import ScenePSCore
import ScenePSProtocol

/// What the coordinator leases: every scene's training chunks, in the order
/// of the prepared data set (docs/COORDINATOR.md).
public struct LeasePlan: Sendable, Equatable {
    public struct Chunk: Sendable, Equatable {
        public var file: String
        public var examples: Int
        public init(file: String, examples: Int) { self.file = file; self.examples = examples }
    }
    public struct Scene: Sendable, Equatable {
        public var name: String
        public var chunks: [Chunk]
        public init(name: String, chunks: [Chunk]) { self.name = name; self.chunks = chunks }
        public var examples: Int { chunks.reduce(0) { $0 + $1.examples } }
    }
    public var scenes: [Scene]
    /// Parameter-server endpoints, in shard order (sent to every member).
    public var servers: [String]
    /// Seeds each epoch's chunk order.
    public var seed: UInt64
    /// A scene waits while it is this fraction of its epoch ahead of the
    /// slowest scene that has workers (0 = off).
    public var maxProgressLead: Double
    public init(scenes: [Scene], servers: [String], seed: UInt64, maxProgressLead: Double) {
        self.scenes = scenes
        self.servers = servers
        self.seed = seed
        self.maxProgressLead = maxProgressLead
    }
}

/// Who decides how many workers a scene has (docs/COORDINATOR.md, "Pools").
public enum PoolPolicy: String, Sendable, CaseIterable {
    /// The coordinator holds a pool size per scene (the config's, changed by `psctl scale`); workers over it
    /// retire, and the launcher that owns the processes (`psctl supervise`) starts workers up to it.
    case launcher
    /// A scene's pool is whoever registers for it: an engine outside ScenePS owns the processes (a Kubernetes
    /// Deployment per scene, `kubectl scale`), so nobody is retired and `psctl scale` is refused with a pointer
    /// to that engine.
    case registered
}

/// Timing of membership.
public struct MembershipSettings: Sendable, Equatable {
    /// Members send a beat at least this often.
    public var heartbeatMs: UInt32 = 500
    /// A member silent this long is declared dead and its lease re-leased.
    public var deadAfterSeconds: Double = 3
    /// What a WAIT reply asks for.
    public var waitMs: UInt32 = 200
    public init() {}
    public init(heartbeatMs: UInt32, deadAfterSeconds: Double, waitMs: UInt32 = 200) {
        self.heartbeatMs = heartbeatMs
        self.deadAfterSeconds = deadAfterSeconds
        self.waitMs = waitMs
    }
}

/// The coordinator's durable state: everything it must know again after a
/// restart. Written to RUN_DIR/coordinator/state.json after every change a
/// reply depends on, before the reply is sent (`Coordinator.persist`).
public struct CoordinatorJournal: Codable, Sendable, Equatable {
    public static let formatVersion = 1

    public enum Phase: String, Codable, Sendable {
        case training, evaluating, done
    }

    public struct Member: Codable, Sendable, Equatable {
        public var id: UInt64
        public var name: String
        /// A scene name, or `*` for a member that trains every scene.
        public var scene: String
        public var incarnation: String
        public var registeredAt: Double
    }

    public struct Lease: Codable, Sendable, Equatable {
        public var id: UInt64
        public var scene: Int
        public var chunk: Int
        public var member: UInt64
        public var leasedAt: Double
    }

    /// Per epoch: how its chunks went. `released` counts leases taken back
    /// from dead members (their chunk was leased again).
    public struct EpochLeases: Codable, Sendable, Equatable {
        public var epoch: Int
        public var chunks: Int
        public var leased = 0
        public var done = 0
        public var released = 0
        public var examples = 0
        /// Examples of released leases that their dead members had reported
        /// trained (their last beat): trained again by the chunk's next worker.
        public var retrained = 0
        /// Chunks reported done and then undone by a global rollback (their leases count as released;
        /// their examples are in `retrained`). nil: none.
        public var rewound: Int?
        public var startedAt: Double
        public var finishedAt: Double?
        enum CodingKeys: String, CodingKey {
            case epoch, chunks, leased, done, released, examples, retrained, rewound
            case startedAt = "started_at", finishedAt = "finished_at"
        }
    }

    public struct ScalingEvent: Codable, Sendable, Equatable {
        public var time: Double
        public var scene: String
        public var workers: Int
        /// The pool size before (-1 = not set).
        public var from: Int
    }

    /// A checkpoint the coordinator took (its manifest's `progress` is this journal as it was just before the cut).
    public struct CheckpointRecord: Codable, Sendable, Equatable {
        public var name: String
        public var path: String
        public var time: Double
        public var epoch: Int
        public var chunksDone: Int
        public var pushStallMs: Double
        public var bytes: UInt64
        public var seconds: Double
        public var tags: [String]
        enum CodingKeys: String, CodingKey {
            case name, path, time, epoch, tags, bytes, seconds
            case chunksDone = "chunks_done", pushStallMs = "push_stall_ms"
        }
    }

    /// A global rollback: data progress rewound to a checkpoint's after a server died.
    public struct RewindRecord: Codable, Sendable, Equatable {
        public var time: Double
        public var checkpoint: String
        public var epochFrom: Int
        public var epochTo: Int
        public var chunksUndone: Int
        public var examplesUndone: Int
        public var leasesReleased: Int
        public var reason: String
        enum CodingKeys: String, CodingKey {
            case time, checkpoint, reason
            case epochFrom = "epoch_from", epochTo = "epoch_to", chunksUndone = "chunks_undone"
            case examplesUndone = "examples_undone", leasesReleased = "leases_released"
        }
    }

    public var version = CoordinatorJournal.formatVersion
    public var epoch = 1
    public var phase = Phase.training
    /// Scene index (as a string: JSON keys) → chunks done in this epoch.
    public var done: [String: [Int]] = [:]
    public var leases: [Lease] = []
    public var members: [Member] = []
    public var nextLeaseID: UInt64 = 1
    public var nextMemberID: UInt64 = 1
    /// Scene name → pool size asked for. A scene not here uses every worker that registers.
    public var targets: [String: Int] = [:]
    public var schedule = LearningRateSchedule()
    public var epochs: [EpochLeases] = []
    public var scaling: [ScalingEvent] = []
    /// Process name → times it was restarted (a new incarnation registered
    /// under a known name; the coordinator counts its own starts).
    public var restarts: [String: Int] = [:]
    /// Names whose process was declared dead and has not registered again.
    public var died: [String] = []
    public var coordinatorStarts = 0
    /// Checkpoints this job was resumed from (`local.sh --resume`), in order.
    public var resumedFrom: [String] = []
    /// Checkpoints taken, oldest first (pruned ones included: this is a record).
    public var checkpoints: [CheckpointRecord] = []
    /// Global rollbacks, oldest first (nil: none; optional so that older journals still load).
    public var rewinds: [RewindRecord]?
    public var startedAt: Double
    /// Why training ended (set with phase `done`).
    public var outcome: String?

    public init(startedAt: Double) { self.startedAt = startedAt }
}

/// The coordinator's logic without sockets: messages in, replies out, time
/// given by the caller (the transport seam: `CoordinatorService` puts it
/// behind a ROUTER socket, tests call it directly). Not thread-safe.
public final class Coordinator {
    public let plan: LeasePlan
    public let settings: MembershipSettings
    public private(set) var journal: CoordinatorJournal
    /// Called with the journal after every change, before the reply leaves.
    public var persist: (CoordinatorJournal) throws -> Void = { _ in }
    /// Group commit: when set, changes only mark the journal dirty and the
    /// caller runs `flush()` once after a batch of requests, before sending
    /// any of their replies (the service does; one write per batch).
    public var deferPersist = false
    private var dirty = false

    /// Writes the journal if a change is pending.
    public func flush() throws {
        guard dirty else { return }
        try persist(journal)
        dirty = false
    }
    private let logger: Logger
    /// Not durable: reset to the load time after a restart.
    private var lastSeen: [UInt64: Double] = [:]
    private var leaseExamples: [UInt64: Int] = [:]
    private var lastDoneLease: [UInt64: UInt64] = [:]
    /// Each member's latest report of where its time went (cumulative since it started; kept after it
    /// leaves, so the job's totals include workers that died or retired). Not durable: a restarted
    /// coordinator counts from the members' next reports (theirs are cumulative, a dead one's are lost).
    private var memberTimes: [UInt64: [String: Double]] = [:]

    /// Every member's time report summed (`StepTimes` names), for summary.json.
    public var workerTimes: [String: Double] {
        var out: [String: Double] = [:]
        for t in memberTimes.values { for (k, v) in t { out[k, default: 0] += v } }
        return out
    }
    /// The chunk order of the current epoch, per scene.
    private var order: [[Int]] = []
    /// The last notable event, for `psctl status`.
    public private(set) var lastEvent = ""
    /// Set by a recovery BEGIN (a server died, the supervisor is rolling every server back): no chunk is
    /// leased and no checkpoint started until the REWIND (or ABORT, or `recoveryTimeout`). Not durable: a
    /// restarted coordinator leases again, and the supervisor's REWIND works without a BEGIN.
    public private(set) var recoveringSince: Double?
    public var recoveryTimeout = 300.0
    public let pools: PoolPolicy

    /// With `pools: .registered` the journal's pool sizes are dropped (a scene without one takes every
    /// worker that registers); they come back only through a coordinator started with `.launcher`.
    public init(plan: LeasePlan, settings: MembershipSettings, journal: CoordinatorJournal, now: Double, logger: Logger,
                pools: PoolPolicy = .launcher) {
        self.plan = plan
        self.settings = settings
        self.journal = journal
        self.logger = logger
        self.pools = pools
        if pools == .registered { self.journal.targets = [:] }
        for m in journal.members { lastSeen[m.id] = now }
        if self.journal.epochs.isEmpty { startEpochStats(now: now) }
        computeOrder()
    }

    // MARK: queries

    public var phase: CoordinatorJournal.Phase { journal.phase }
    public var epoch: Int { journal.epoch }

    public func sceneIndex(_ name: String) -> Int? { plan.scenes.firstIndex { $0.name == name } }

    func doneSet(_ scene: Int) -> Set<Int> { Set(journal.done[String(scene)] ?? []) }

    /// Fraction of scene `s`'s epoch trained: chunks done plus the examples
    /// members reported of their current leases.
    public func progress(scene s: Int) -> Double {
        let total = plan.scenes[s].examples
        guard total > 0 else { return 1 }
        var ex = doneSet(s).reduce(0) { $0 + plan.scenes[s].chunks[$1].examples }
        for l in journal.leases where l.scene == s { ex += min(leaseExamples[l.id] ?? 0, plan.scenes[s].chunks[l.chunk].examples) }
        return Double(ex) / Double(total)
    }

    func members(of s: Int) -> [CoordinatorJournal.Member] {
        journal.members.filter { $0.scene == plan.scenes[s].name || $0.scene == "*" }
    }

    /// The smallest progress over the scenes that have chunks left and a member to train them.
    public func minProgress() -> Double {
        var m = 1.0
        for s in plan.scenes.indices where !members(of: s).isEmpty {
            let p = progress(scene: s)
            if p < 1 { m = min(m, p) }
        }
        return m
    }

    func available(_ s: Int) -> Int? {
        let done = doneSet(s)
        let leased = Set(journal.leases.filter { $0.scene == s }.map(\.chunk))
        return order[s].first { !done.contains($0) && !leased.contains($0) }
    }

    public var epochComplete: Bool {
        plan.scenes.indices.allSatisfy { doneSet($0).count == plan.scenes[$0].chunks.count }
    }

    public func status(now: Double) -> StatusReply {
        let scenes = plan.scenes.indices.map { s -> SceneStatus in
            let live = members(of: s).count
            let done = doneSet(s).count
            return SceneStatus(name: plan.scenes[s].name, target: Int32(journal.targets[plan.scenes[s].name] ?? -1),
                               liveWorkers: UInt32(live), chunks: UInt32(plan.scenes[s].chunks.count),
                               chunksDone: UInt32(done), chunksLeased: UInt32(journal.leases.filter { $0.scene == s }.count),
                               waiting: journal.phase == .training && live == 0 && done < plan.scenes[s].chunks.count)
        }
        let memberList = journal.members.map { m -> MemberStatus in
            MemberStatus(memberID: m.id, name: m.name, scene: m.scene, retiring: false,
                         silentSeconds: now - (lastSeen[m.id] ?? now),
                         leaseID: journal.leases.first { $0.member == m.id }?.id ?? 0)
        }
        return StatusReply(epoch: UInt32(journal.epoch), phase: journal.phase.rawValue, scenes: scenes, members: memberList,
                           message: lastEvent)
    }

    // MARK: messages

    /// Answers one request. Bad requests get an ErrorReply and change nothing.
    public func handle(_ body: Body, now: Double) -> Body {
        expire(now: now)
        switch body {
        case .register(let r): return register(r, now: now)
        case .leaseRequest(let r): return lease(r, now: now)
        case .memberBeat(let b): return beat(b, now: now)
        case .scale(let s): return scale(s, now: now)
        case .leave(let l): return leave(l, now: now)
        case .status: return .statusReply(status(now: now))
        case .heartbeat: return .heartbeat(Heartbeat())
        default:
            return error(.badRequest, "a \(body.kindName) is not a coordinator request")
        }
    }

    /// Declares members dead that have been silent too long; their leases go back to the queue.
    public func tick(now: Double) {
        expire(now: now)
        if let since = recoveringSince, now - since > recoveryTimeout {
            recoveringSince = nil
            note(String(format: "recovery begun %.0f s ago had no rewind: leasing again", now - since), .warning)
        }
    }

    private func error(_ status: Status, _ message: String) -> Body {
        .error(ErrorReply(status: status, message: message))
    }

    private func note(_ message: String, _ level: Logger.Level = .info) {
        lastEvent = message
        logger.log(level: level, "\(message)")
    }

    private func save() throws {
        if deferPersist { dirty = true } else { try persist(journal) }
    }

    /// Applies `change` to a copy and keeps it only when it could be persisted.
    private func commit(_ change: (inout CoordinatorJournal) -> Void) -> Error? {
        var j = journal
        change(&j)
        let old = journal
        journal = j
        do { try save(); return nil } catch {
            journal = old
            logger.error("cannot write the coordinator journal", metadata: ["error": "\(error)"])
            return error
        }
    }

    private func register(_ r: Register, now: Double) -> Body {
        guard !r.name.isEmpty, !r.incarnation.isEmpty else {
            return error(.badRequest, "register needs a name and an incarnation")
        }
        guard r.scene == "*" || sceneIndex(r.scene) != nil else {
            return error(.badRequest, "scene '\(r.scene)' is not in the data set (its scenes: \(plan.scenes.map(\.name).joined(separator: ", ")), or * for every scene)")
        }
        if let old = journal.members.first(where: { $0.name == r.name }) {
            if old.incarnation == r.incarnation {
                return error(.conflict, "\(r.name) (incarnation \(r.incarnation)) is already registered as member \(old.id)")
            }
            // The same process started again (a restart): its old self is dead.
            drop(old.id, reason: "replaced by a new incarnation", now: now)
        }
        let id = journal.nextMemberID
        // A restart: this name's earlier process died (or was replaced above).
        let restarted = journal.died.contains(r.name)
        if let e = commit({ j in
            j.nextMemberID += 1
            j.members.append(.init(id: id, name: r.name, scene: r.scene, incarnation: r.incarnation, registeredAt: now))
            if restarted {
                j.restarts[r.name, default: 0] += 1
                j.died.removeAll { $0 == r.name }
            }
        }) { return error(.internalError, "cannot record the registration: \(e)") }
        lastSeen[id] = now
        note("\(r.name) joined scene \(r.scene) as member \(id)\(restarted ? " (restarted)" : "")")
        return .registerReply(RegisterReply(memberID: id, servers: plan.servers, heartbeatMs: settings.heartbeatMs,
                                            deadAfterMs: UInt32(settings.deadAfterSeconds * 1000)))
    }

    private func member(_ id: UInt64) -> CoordinatorJournal.Member? { journal.members.first { $0.id == id } }

    private func unknownMember(_ id: UInt64) -> Body {
        error(.unknownMember, "member \(id) is not registered (declared dead after \(settings.deadAfterSeconds) s of silence, retired, or never registered): register again")
    }

    private func lease(_ r: LeaseRequest, now: Double) -> Body {
        guard let m = member(r.memberID) else { return unknownMember(r.memberID) }
        lastSeen[m.id] = now
        if !r.times.isEmpty { memberTimes[m.id] = r.times }
        var accepted = false
        if r.doneLease != 0 {
            if lastDoneLease[m.id] == r.doneLease {
                accepted = true   // a retried request: already counted
            } else if let l = journal.leases.first(where: { $0.id == r.doneLease }) {
                guard l.member == m.id else {
                    return error(.badRequest, "lease \(r.doneLease) belongs to member \(l.member), not \(m.id)")
                }
                let expected = plan.scenes[l.scene].chunks[l.chunk].examples
                guard r.doneExamples == UInt64(expected) else {
                    return error(.badRequest, "lease \(r.doneLease) (chunk \(l.chunk) of scene \(plan.scenes[l.scene].name)) has \(expected) examples, the report says \(r.doneExamples)")
                }
                if let e = commit({ j in
                    j.leases.removeAll { $0.id == l.id }
                    j.done[String(l.scene), default: []].append(l.chunk)
                    j.epochs[j.epochs.count - 1].done += 1
                    j.epochs[j.epochs.count - 1].examples += expected
                }) { return error(.internalError, "cannot record the lease: \(e)") }
                leaseExamples[l.id] = nil
                lastDoneLease[m.id] = l.id
                accepted = true
                if epochComplete && journal.phase == .training { endEpoch(now: now) }
            } else {
                // Taken back (the member was thought dead) or of an earlier coordinator epoch: not counted.
                note("lease \(r.doneLease) reported done by \(m.name) was taken back earlier; its chunk counts once, from the worker it was re-leased to", .warning)
            }
        }
        var reply = next(for: m, now: now)
        reply.doneAccepted = accepted
        return .leaseReply(reply)
    }

    private func next(for m: CoordinatorJournal.Member, now: Double) -> LeaseReply {
        func wait(_ why: String) -> LeaseReply {
            var w = LeaseReply(kind: .wait)
            w.waitMs = settings.waitMs
            w.reason = why
            return w
        }
        switch journal.phase {
        case .done:
            var d = LeaseReply(kind: .jobDone)
            d.reason = journal.outcome ?? "training is over"
            drop(m.id, reason: "told the job is over", now: now, retired: true)
            return d
        case .evaluating:
            return wait("epoch \(journal.epoch) is being evaluated")
        case .training:
            break
        }
        // A retried request while it holds a lease: the same lease again.
        if let held = journal.leases.first(where: { $0.member == m.id }) { return chunkReply(held) }
        if recoveringSince != nil { return wait("the servers are being rolled back to a checkpoint (global recovery)") }
        let candidates = m.scene == "*" ? Array(plan.scenes.indices) : [sceneIndex(m.scene)!]
        if m.scene != "*", let target = journal.targets[m.scene], members(of: candidates[0]).filter({ $0.scene == m.scene }).count > target {
            drop(m.id, reason: "retired: scene \(m.scene)'s pool is \(target)", now: now, retired: true)
            var r = LeaseReply(kind: .retire)
            r.reason = "scene \(m.scene)'s pool was scaled to \(target) workers"
            return r
        }
        let lead = plan.maxProgressLead
        let floor = minProgress()
        // The least advanced scene first (for members of every scene).
        let ranked = candidates.sorted { progress(scene: $0) < progress(scene: $1) }
        var aheadOf: String?
        for s in ranked {
            guard let c = available(s) else { continue }
            if lead > 0 && progress(scene: s) > floor + lead {
                aheadOf = plan.scenes[s].name
                continue
            }
            let id = journal.nextLeaseID
            let l = CoordinatorJournal.Lease(id: id, scene: s, chunk: c, member: m.id, leasedAt: now)
            if let e = commit({ j in
                j.nextLeaseID += 1
                j.leases.append(l)
                j.epochs[j.epochs.count - 1].leased += 1
            }) { return wait("cannot record a lease (\(e)); retrying") }
            return chunkReply(l)
        }
        if let aheadOf { return wait("scene \(aheadOf) is more than \(lead) of its epoch ahead of the slowest scene") }
        let starving = plan.scenes.indices.filter { s in members(of: s).isEmpty && doneSet(s).count < plan.scenes[s].chunks.count }
        if !starving.isEmpty {
            let names = starving.map { plan.scenes[$0].name }.joined(separator: ", ")
            return wait("epoch \(journal.epoch) waits for scene(s) \(names), which have chunks left and no worker (psctl scale --scene NAME --workers N)")
        }
        return wait("the chunks of epoch \(journal.epoch) are all leased or done; waiting for the epoch to end")
    }

    private func chunkReply(_ l: CoordinatorJournal.Lease) -> LeaseReply {
        let scene = plan.scenes[l.scene]
        var r = LeaseReply(kind: .chunk)
        r.leaseID = l.id
        r.epoch = UInt32(journal.epoch)
        r.scene = scene.name
        r.chunkFile = scene.chunks[l.chunk].file
        r.chunkIndex = UInt32(l.chunk)
        r.chunkExamples = UInt64(scene.chunks[l.chunk].examples)
        // Warm-up position: the examples of the scene's epoch already trained or in flight.
        let before = progress(scene: l.scene) * Double(scene.examples) - Double(min(leaseExamples[l.id] ?? 0, scene.chunks[l.chunk].examples))
        r.sceneExamplesBefore = UInt64(max(0, before.rounded()))
        r.sceneEpochExamples = UInt64(scene.examples)
        r.lrLevel = UInt32(journal.schedule.level(ofEpoch: journal.epoch))
        return r
    }

    private func beat(_ b: MemberBeat, now: Double) -> Body {
        guard let m = member(b.memberID) else { return unknownMember(b.memberID) }
        lastSeen[m.id] = now
        var valid = true
        var sceneProgress = 0.0
        if b.leaseID != 0 {
            if let l = journal.leases.first(where: { $0.id == b.leaseID && $0.member == m.id }) {
                leaseExamples[l.id] = Int(b.leaseExamples)
                sceneProgress = progress(scene: l.scene)
            } else {
                valid = false
            }
        } else if m.scene != "*", let s = sceneIndex(m.scene) {
            sceneProgress = progress(scene: s)
        }
        return .memberBeatReply(MemberBeatReply(sceneProgress: sceneProgress, minProgress: minProgress(), leaseValid: valid))
    }

    private func scale(_ r: ScaleRequest, now: Double) -> Body {
        guard pools == .launcher else {
            return error(.badRequest, "scene \(r.scene)'s pool is whoever registers for it (coordinator --pools registered): the engine that starts the workers sizes it, e.g. kubectl scale deployment/worker-\(r.scene) --replicas=\(r.workers)")
        }
        guard sceneIndex(r.scene) != nil else {
            return error(.badRequest, "scene '\(r.scene)' is not in the data set (its scenes: \(plan.scenes.map(\.name).joined(separator: ", ")))")
        }
        guard r.workers >= 0 else { return error(.badRequest, "a pool cannot have \(r.workers) workers: give 0 or more") }
        let from = journal.targets[r.scene] ?? -1
        if let e = commit({ j in
            j.targets[r.scene] = Int(r.workers)
            j.scaling.append(.init(time: now, scene: r.scene, workers: Int(r.workers), from: from))
        }) { return error(.internalError, "cannot record the scaling: \(e)") }
        note("scene \(r.scene): pool scaled from \(from < 0 ? "unset" : String(from)) to \(r.workers) workers")
        return .ack(Ack(appliedRows: 0))
    }

    private func leave(_ r: LeaveRequest, now: Double) -> Body {
        guard member(r.memberID) != nil else { return unknownMember(r.memberID) }
        drop(r.memberID, reason: "left: \(r.reason)", now: now, retired: true)
        return .ack(Ack(appliedRows: 0))
    }

    private func expire(now: Double) {
        for m in journal.members where now - (lastSeen[m.id] ?? now) > settings.deadAfterSeconds {
            drop(m.id, reason: String(format: "declared dead after %.1f s of silence", now - (lastSeen[m.id] ?? now)), now: now)
        }
    }

    /// Removes a member; its lease goes back to the queue (counted as released unless it left cleanly).
    private func drop(_ id: UInt64, reason: String, now: Double, retired: Bool = false) {
        guard let m = member(id) else { return }
        let held = journal.leases.filter { $0.member == id }
        let partial = held.reduce(0) { $0 + min(leaseExamples[$1.id] ?? 0, plan.scenes[$1.scene].chunks[$1.chunk].examples) }
        _ = commit { j in
            j.members.removeAll { $0.id == id }
            j.leases.removeAll { $0.member == id }
            if !held.isEmpty {
                j.epochs[j.epochs.count - 1].released += held.count
                j.epochs[j.epochs.count - 1].retrained += partial
            }
            if !retired && !j.died.contains(m.name) { j.died.append(m.name) }
        }
        for l in held { leaseExamples[l.id] = nil }
        lastSeen[id] = nil
        lastDoneLease[id] = nil
        let back = held.map { "chunk \($0.chunk) of \(plan.scenes[$0.scene].name)" }.joined(separator: ", ")
        note("\(m.name) (member \(id)) \(reason)" + (held.isEmpty ? "" : "; \(back) back in the queue"),
             retired ? .info : .warning)
    }

    // MARK: epochs

    private func startEpochStats(now: Double) {
        journal.epochs.append(.init(epoch: journal.epoch, chunks: plan.scenes.reduce(0) { $0 + $1.chunks.count }, startedAt: now))
    }

    private func computeOrder() {
        order = plan.scenes.indices.map { s in
            var rng = SplitMix64(seed: plan.seed ^ KeyHash.mix64(UInt64(journal.epoch)) ^ KeyHash.idKey(plan.scenes[s].name))
            return Array(plan.scenes[s].chunks.indices).shuffled(using: &rng)
        }
    }

    private func endEpoch(now: Double) {
        _ = commit { j in
            j.phase = .evaluating
            j.epochs[j.epochs.count - 1].finishedAt = now
        }
        note("epoch \(journal.epoch): every chunk trained; evaluating")
    }

    /// The epoch waiting for evaluation, if any.
    public var epochToEvaluate: Int? { journal.phase == .evaluating ? journal.epoch : nil }

    /// Records the evaluated epoch's decision: next epoch, or done. `schedule`
    /// is the schedule after recording the epoch.
    public func epochEvaluated(schedule: LearningRateSchedule, stop: Bool, outcome: String, now: Double) throws {
        precondition(journal.phase == .evaluating)
        var j = journal
        j.schedule = schedule
        if stop {
            j.phase = .done
            j.outcome = outcome
        } else {
            j.phase = .training
            j.epoch += 1
            j.done = [:]
            j.leases = []
            j.epochs.append(.init(epoch: j.epoch, chunks: plan.scenes.reduce(0) { $0 + $1.chunks.count }, startedAt: now))
        }
        try persist(j)
        journal = j
        leaseExamples = [:]
        computeOrder()
        note(stop ? "training is over: \(outcome)" : "epoch \(journal.epoch) begins")
    }

    /// Records a checkpoint taken.
    public func recordCheckpoint(_ c: CoordinatorJournal.CheckpointRecord) {
        _ = commit { $0.checkpoints.append(c) }
        note(String(format: "checkpoint %@: epoch %d, %d chunks done, push stall %.1f ms, %.1f MB in %.1f s",
                    c.name, c.epoch, c.chunksDone, c.pushStallMs, Double(c.bytes) / 1e6, c.seconds))
    }

    // MARK: global recovery

    /// BEGIN: stop leasing chunks until `rewind` (or `endRecovery`).
    public func beginRecovery(reason: String, now: Double) {
        if recoveringSince == nil { recoveringSince = now }
        note("global recovery begun (\(reason)): no chunk is leased until the servers are back at one checkpoint", .warning)
    }

    /// ABORT: leasing resumes without a rewind.
    public func endRecovery(reason: String) {
        guard recoveringSince != nil else { return }
        recoveringSince = nil
        note("global recovery ended without a rewind: \(reason)", .warning)
    }

    public struct RewindResult: Sendable, Equatable {
        public var epochFrom: Int
        public var epochTo: Int
        public var chunksUndone: Int
        public var examplesUndone: Int
        public var leasesReleased: Int
    }

    /// A journal must describe this data set: the same scenes and chunk counts. `path` names the file in errors.
    public static func check(_ j: CoordinatorJournal, against plan: LeasePlan, path: String) throws {
        for (key, done) in j.done {
            guard let s = Int(key), plan.scenes.indices.contains(s), done.allSatisfy({ plan.scenes[s].chunks.indices.contains($0) }) else {
                throw ScenePSError.config("\(path): chunks done of scene \(key) do not exist in this data set (another data set's journal?)")
            }
        }
        for l in j.leases where !plan.scenes.indices.contains(l.scene) || !plan.scenes[l.scene].chunks.indices.contains(l.chunk) {
            throw ScenePSError.config("\(path): lease \(l.id) names chunk \(l.chunk) of scene \(l.scene), which this data set lacks")
        }
        let chunks = plan.scenes.reduce(0) { $0 + $1.chunks.count }
        if let e = j.epochs.first(where: { $0.chunks != chunks }) {
            throw ScenePSError.config("\(path): epoch \(e.epoch) has \(e.chunks) chunks, this data set \(chunks) (another data set's journal?)")
        }
    }

    /// REWIND (global recovery): every server restored the checkpoint whose `progress` is `to`; the data
    /// progress goes back to it. Epoch, phase, chunks done, schedule and outcome become the checkpoint's;
    /// every lease in flight is released (its member's report will not count; the chunk is leased again);
    /// chunks reported done after the cut are undone (trained again: `rewound`, their examples in
    /// `retrained`, their leases counted as released so that leased = done + released still holds).
    /// Members, pools, restarts and the record of checkpoints stay. A `to` that does not fit this job
    /// (another data set, a later epoch, another journal format) is refused naming `path`; nothing changes.
    @discardableResult
    public func rewind(to p: CoordinatorJournal, checkpoint: String, path: String, reason: String, now: Double) throws -> RewindResult {
        guard p.version == CoordinatorJournal.formatVersion else {
            throw ScenePSError(.checkpoint, "\(path): journal format \(p.version), this coordinator reads \(CoordinatorJournal.formatVersion)")
        }
        try Self.check(p, against: plan, path: path)
        guard p.epoch >= 1, p.epoch <= journal.epoch else {
            throw ScenePSError(.checkpoint, "\(path): its progress is at epoch \(p.epoch), this job at epoch \(journal.epoch): not a checkpoint of this job")
        }
        var j = journal
        let from = j.epoch
        let inFlight = j.leases
        let partial = inFlight.reduce(0) { $0 + min(leaseExamples[$1.id] ?? 0, plan.scenes[$1.scene].chunks[$1.chunk].examples) }
        // Chunks done now (in the checkpoint's epoch) that the checkpoint does not have.
        var undone = 0, undoneExamples = 0
        for s in plan.scenes.indices {
            let now = p.epoch == from ? Set(j.done[String(s)] ?? []) : Set(plan.scenes[s].chunks.indices)
            let then = Set(p.done[String(s)] ?? [])
            for c in now.subtracting(then) {
                undone += 1
                undoneExamples += plan.scenes[s].chunks[c].examples
            }
        }
        // Later epochs' work is undone whole (their lease records go: the epoch is trained again).
        var laterChunks = 0, laterExamples = 0
        for e in j.epochs where e.epoch > p.epoch {
            laterChunks += e.done
            laterExamples += e.examples
        }
        j.epochs.removeAll { $0.epoch > p.epoch }
        if let i = j.epochs.lastIndex(where: { $0.epoch == p.epoch }) {
            j.epochs[i].done -= undone
            j.epochs[i].examples -= undoneExamples
            j.epochs[i].released += undone + (p.epoch == from ? inFlight.count : 0)
            j.epochs[i].retrained += undoneExamples + (p.epoch == from ? partial : 0)
            j.epochs[i].rewound = (j.epochs[i].rewound ?? 0) + undone
            if p.phase == .training { j.epochs[i].finishedAt = nil }
        } else {
            j.epochs.append(.init(epoch: p.epoch, chunks: plan.scenes.reduce(0) { $0 + $1.chunks.count }, startedAt: now))
        }
        j.epoch = p.epoch
        j.phase = p.phase
        j.done = p.done
        j.schedule = p.schedule
        j.outcome = p.outcome
        j.leases = []
        j.nextLeaseID = max(j.nextLeaseID, p.nextLeaseID)
        let result = RewindResult(epochFrom: from, epochTo: p.epoch, chunksUndone: undone + laterChunks,
                                  examplesUndone: undoneExamples + laterExamples, leasesReleased: inFlight.count)
        j.rewinds = (j.rewinds ?? []) + [.init(time: now, checkpoint: checkpoint, epochFrom: from, epochTo: p.epoch,
                                               chunksUndone: result.chunksUndone, examplesUndone: result.examplesUndone,
                                               leasesReleased: inFlight.count, reason: reason)]
        try persist(j)
        journal = j
        dirty = false
        leaseExamples = [:]
        recoveringSince = nil
        computeOrder()
        note("rewound to checkpoint \(checkpoint) (\(reason)): epoch \(from) -> \(p.epoch), \(result.chunksUndone) chunks done since the cut are trained again, \(inFlight.count) leases in flight released", .warning)
        return result
    }

    /// Chunks reported done in the current epoch.
    public var chunksDone: Int { journal.done.values.reduce(0) { $0 + $1.count } }

    /// Records the coordinator's own start (a restart when the journal existed).
    public func recordStart() throws {
        var j = journal
        j.coordinatorStarts += 1
        if j.coordinatorStarts > 1 { j.restarts["coordinator", default: 0] += 1 }
        try persist(j)
        journal = j
    }
}
