import Foundation
import Logging
import ScenePSCore
import ScenePSProtocol

/// A reply to send later on any handler socket: the routing frames of the
/// request it answers, and the encoded envelope (malloc'd; the sender owns it).
public struct DeferredReply {
    public var route: [[UInt8]]
    public var bytes: MallocBuffer
}

/// The server's side of the two-phase cut (docs/CHECKPOINTS.md).
///
/// The push gate: a push enters (counted in `applying`) unless the gate is
/// held, in which case it is queued unanswered. PREPARE closes the gate and
/// waits until no push is being applied; from then on the tables do not
/// change. COMMIT takes the cut (`SparseTable.beginCut`, copies of the dense
/// slices and the de-duplication window: no row is copied), reopens the gate,
/// applies the queued pushes and answers them, and starts the writer thread.
final class Checkpointer: @unchecked Sendable {
    // @unchecked: all mutable state under `cond`.
    struct HeldPush {
        var route: [[UInt8]]
        var envelope: Envelope
        var arrived: UInt64
    }
    enum Phase {
        case idle
        case held(name: String, dir: String, since: UInt64, deadline: UInt64)
        case writing(name: String)
    }
    private let cond = NSCondition()
    private var phase = Phase.idle
    private var applying = 0
    private var queue: [HeldPush] = []
    /// Non-duplicate pushes applied since start (or since the restored cut).
    private(set) var appliedPushes: UInt64 = 0
    private var reports: [String: CheckpointReply] = [:]
    private var reportOrder: [String] = []
    /// When this server last wrote its shard of a checkpoint (Unix time), for the metrics.
    private var lastWrittenAt: Double?
    let configuredDir: String?
    let logger: Logger

    init(configuredDir: String?, logger: Logger) {
        // Absolute, so a relative --checkpoint-dir and the absolute directory a driver names compare equal.
        self.configuredDir = configuredDir.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
        self.logger = logger
    }

    static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    /// When this server last wrote its shard of a checkpoint (Unix time); nil: not since it started.
    var lastCommittedAt: Double? { cond.lock(); defer { cond.unlock() }; return lastWrittenAt }

    // MARK: the push gate

    /// Enters the gate, or queues the push (returns false) while it is held.
    func enterOrHold(_ push: @autoclosure () -> HeldPush) -> Bool {
        cond.lock(); defer { cond.unlock() }
        if case .held = phase { queue.append(push()); return false }
        applying += 1
        return true
    }

    /// Enters the gate for a caller that cannot be answered later (no route):
    /// waits while a hold lasts (bounded by its timeout).
    func enterUnheld() {
        cond.lock()
        while case .held = phase { _ = cond.wait(until: Date().addingTimeInterval(0.05)) }
        applying += 1
        cond.unlock()
    }

    func leave(applied: Bool) {
        cond.lock()
        applying -= 1
        if applied { appliedPushes &+= 1; pushCounter?.store(appliedPushes) }
        if applying == 0 { cond.broadcast() }
        let first = applied && !firstPushLogged
        if first { firstPushLogged = true }
        cond.unlock()
        // Once per process: when training reached it (tools/bench_elastic.py measures a recovery by it).
        if first {
            logger.notice("first push applied", metadata: ["unix_time": "\(String(format: "%.3f", Date().timeIntervalSince1970))"])
        }
    }
    private var firstPushLogged = false

    func setAppliedPushes(_ n: UInt64) { cond.lock(); appliedPushes = n; pushCounter?.store(n); cond.unlock() }

    /// Mirrors `appliedPushes` into a file that outlives the process (`ps-server --push-counter`).
    func attach(_ counter: PushCounterFile) { cond.lock(); pushCounter = counter; counter.store(appliedPushes); cond.unlock() }
    private var pushCounter: PushCounterFile?

    // MARK: requests

    enum Outcome {
        case reply(CheckpointReply)
        case error(Status, String)
    }

    /// PREPARE, COMMIT, ABORT or STATUS. `release` receives the queued pushes
    /// to apply and answer (COMMIT, ABORT) and is run after the state change.
    func handle(_ r: CheckpointRequest, registry: TableRegistry, dedup: DedupWindow,
                release: ([HeldPush]) -> Void) -> Outcome {
        guard !r.name.isEmpty, !r.name.contains("/"), r.name != ".", r.name != ".." else {
            return .error(.badRequest, "checkpoint name '\(r.name)' must be non-empty and not contain '/'")
        }
        var base = reply(.unknown, r.name, registry)
        switch r.action {
        case .status:
            cond.lock(); defer { cond.unlock() }
            if let rep = reports[r.name] { return .reply(rep) }
            // Not one of its checkpoints: the pushes applied so far (a supervisor's recovery debt).
            base.appliedPushes = appliedPushes
            if case .held(let n, _, _, _) = phase, n == r.name { base.state = .held; return .reply(base) }
            return .reply(base)
        case .prepare:
            let dir: String
            switch resolveDir(r.dir) {
            case .success(let d): dir = d
            case .failure(let e): return .error(.badRequest, e.message)
            }
            cond.lock()
            switch phase {
            case .held(let n, _, _, _):
                cond.unlock()
                return .error(.conflict, "checkpoint '\(n)' is already held on this server; abort it first")
            case .writing(let n):
                cond.unlock()
                return .error(.conflict, "checkpoint '\(n)' is still being written on this server; try again when it is done")
            case .idle:
                break
            }
            if reports[r.name] != nil {
                cond.unlock()
                return .error(.conflict, "checkpoint '\(r.name)' was already taken on this server; choose a new name")
            }
            let t = Checkpointer.now()
            let timeout = UInt64(r.holdTimeoutMs == 0 ? 2000 : min(r.holdTimeoutMs, 10_000)) * 1_000_000   // never hold for long
            phase = .held(name: r.name, dir: dir, since: t, deadline: t + timeout)
            while applying > 0 { cond.wait() }   // pushes being applied finish; no new one starts
            base.state = .held
            base.appliedPushes = appliedPushes
            cond.unlock()
            return .reply(base)
        case .abort:
            cond.lock()
            guard case .held(let n, _, let since, _) = phase, n == r.name else {
                cond.unlock()
                return .reply(base)   // nothing held under that name: aborting is idempotent
            }
            let held = queue
            queue = []
            phase = .idle
            base.state = .aborted
            base.message = "aborted by the driver"
            base.heldPushes = UInt64(held.count)
            base.holdMs = Double(Checkpointer.now() - since) / 1e6
            remember(base)
            cond.unlock()
            release(held)
            return .reply(base)
        case .commit:
            cond.lock()
            guard case .held(let n, let dir, let since, _) = phase, n == r.name else {
                let why: String
                if let rep = reports[r.name], rep.state == .aborted { why = "its hold was released (\(rep.message))" }
                else { why = "it was not prepared on this server" }
                cond.unlock()
                return .error(.badRequest, "cannot commit checkpoint '\(r.name)': \(why)")
            }
            // No push is being applied and none starts until the gate reopens.
            let cut = takeCut(name: n, dir: dir, registry: registry, dedup: dedup)
            let held = queue
            queue = []
            phase = .writing(name: n)
            let released = Checkpointer.now()
            base.state = .writing
            base.appliedPushes = cut.appliedPushes
            base.heldPushes = UInt64(held.count)
            base.holdMs = Double(released - since) / 1e6
            base.rows = cut.sparseRows
            base.pushStallMs = Double(held.map { released - $0.arrived }.max() ?? 0) / 1e6
            base.tableRows = cut.tables.map { t in
                switch t {
                case .sparse(let s, let rows): return TableStats(id: s.spec.id, name: s.spec.name, rows: UInt64(rows), bytes: 0, pulls: 0, pushes: 0)
                case .dense(let d, _, _, _): return TableStats(id: d.spec.id, name: d.spec.name, rows: UInt64(d.range.count), bytes: 0, pulls: 0, pushes: 0)
                }
            }
            remember(base)
            cond.unlock()
            // Apply the held pushes in arrival order; their wait until they start counts as stall.
            let t0 = Checkpointer.now()
            release(held)
            let drain = Checkpointer.now() - t0
            if !held.isEmpty {
                base.pushStallMs += Double(drain) / 1e6   // the last held push also waited for the ones before it
                cond.lock(); reports[n]?.pushStallMs = base.pushStallMs; cond.unlock()
            }
            startWriter(cut, base: base)
            return .reply(base)
        }
    }

    private func reply(_ state: CheckpointReply.State, _ name: String, _ registry: TableRegistry) -> CheckpointReply {
        var r = CheckpointReply(state: state, name: name)
        r.shardIndex = UInt32(registry.shardIndex)
        r.shardCount = UInt32(registry.shardCount)
        r.tables = registry.all().map(\.spec)
        return r
    }

    private func resolveDir(_ requested: String) -> Result<String, ScenePSError> {
        if requested.isEmpty {
            guard let d = configuredDir else {
                return .failure(ScenePSError(.checkpoint, "no checkpoint directory: the request names none and this server was started without --checkpoint-dir"))
            }
            return .success(d)
        }
        if let d = configuredDir, d != URL(fileURLWithPath: requested).standardizedFileURL.path {
            return .failure(ScenePSError(.checkpoint, "checkpoint directory '\(requested)' is not this server's --checkpoint-dir '\(d)'"))
        }
        return .success(requested)
    }

    private func remember(_ r: CheckpointReply) {
        if reports[r.name] == nil { reportOrder.append(r.name) }
        reports[r.name] = r
        while reportOrder.count > 16 { reports[reportOrder.removeFirst()] = nil }
    }

    /// Called with the gate held and nothing applying: O(stripes + chunks).
    private func takeCut(name: String, dir: String, registry: TableRegistry, dedup: DedupWindow) -> CheckpointCut {
        var tables: [CheckpointCut.Table] = []
        for t in registry.all() {
            switch t {
            case .sparse(let s): tables.append(.sparse(s, rows: s.beginCut()))
            case .dense(let d):
                let (w, st, step) = d.snapshot()   // Swift arrays: copied by the next push, not here
                tables.append(.dense(d, weights: w, state: st, step: step))
            }
        }
        return CheckpointCut(name: name, dir: dir, shardIndex: registry.shardIndex, shardCount: registry.shardCount,
                             appliedPushes: appliedPushes, tables: tables, dedup: dedup.snapshot())
    }

    private func startWriter(_ cut: CheckpointCut, base: CheckpointReply) {
        let thread = Thread { [self] in
            // Below the handler threads: on a busy machine pushes preempt the writer, not the reverse.
            #if canImport(Glibc)
            _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 10)   // Linux: who 0 = this thread
            #endif
            let t0 = Checkpointer.now()
            var r = base
            do {
                let (file, bytes, sum) = try cut.write()
                r.state = .done
                r.file = file
                r.bytes = bytes
                r.checksum = XXH64.format(sum)
            } catch {
                r.state = .failed
                r.message = "\(error)"
            }
            r.writeSeconds = Double(Checkpointer.now() - t0) / 1e9
            var preserveMax: UInt64 = 0, preserved = 0
            for t in cut.tables { if case .sparse(let s, _) = t { let p = s.cutPreserveStats(); preserveMax = max(preserveMax, p.maxNanos); preserved += p.rows } }
            r.preservedRows = UInt64(preserved)
            cond.lock()
            r.pushStallMs = max(reports[r.name]?.pushStallMs ?? 0, base.pushStallMs) + Double(preserveMax) / 1e6
            remember(r)
            if r.state == .done { lastWrittenAt = Date().timeIntervalSince1970 }
            phase = .idle
            cond.unlock()
            if r.state == .done {
                logger.info("checkpoint shard written", metadata: [
                    "ps.checkpoint": "\(r.name)", "ps.file": "\(r.file)", "ps.bytes": "\(r.bytes)",
                    "ps.seconds": "\(String(format: "%.3f", r.writeSeconds))", "ps.push_stall_ms": "\(String(format: "%.3f", r.pushStallMs))",
                ])
            } else {
                logger.error("checkpoint write failed; training goes on", metadata: ["ps.checkpoint": "\(r.name)", "ps.error": "\(r.message)"])
            }
        }
        thread.name = "ps-checkpoint-writer"
        thread.start()
    }

    /// Releases a hold whose driver went silent (past `hold_timeout_ms`).
    /// Returns the queued pushes to apply, or nil when nothing expired.
    func expireHold() -> [HeldPush]? {
        cond.lock(); defer { cond.unlock() }
        guard case .held(let n, _, let since, let deadline) = phase, Checkpointer.now() >= deadline else { return nil }
        let held = queue
        queue = []
        phase = .idle
        var r = CheckpointReply(state: .aborted, name: n)
        r.message = "hold timed out after \(Double(Checkpointer.now() - since) / 1e6) ms without COMMIT"
        r.heldPushes = UInt64(held.count)
        remember(r)
        logger.warning("checkpoint hold released: no commit in time", metadata: ["ps.checkpoint": "\(n)", "ps.held_pushes": "\(held.count)"])
        return held
    }

    /// How many pushes wait in the current hold (tests: to wait for a push to be held, not for a time).
    func queuedPushes() -> Int { cond.lock(); defer { cond.unlock() }; return queue.count }

    /// The newest report of `name` (tests, tools).
    func report(_ name: String) -> CheckpointReply? { cond.lock(); defer { cond.unlock() }; return reports[name] }
}
