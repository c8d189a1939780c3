import Foundation
import Logging
import ScenePSCore
import ScenePSProtocol

/// Turns one request frame into one reply envelope. Thread-safe: the server
/// runs one per handler thread over shared tables.
///
/// Every request is validated whole before any of it is applied, so a bad
/// request leaves the state unchanged.
public final class RequestHandler: @unchecked Sendable {
    // @unchecked: shared state is the registry, dedup window and counters,
    // each guarded by its own lock.
    public static let serverVersion = "scene-ps-server 0.1.0"
    public let registry: TableRegistry
    public let maxMessageBytes: Int
    let dedup = DedupWindow()
    let logger: Logger
    private let counters = Lock()
    private var requests: UInt64 = 0
    private var errors: UInt64 = 0
    private let started = Date()
    /// Time spent applying pushes (ns), for the benchmark's breakdown.
    private var applyNanos: UInt64 = 0
    /// Time spent in `handle` (ns).
    private var handleNanos: UInt64 = 0
    /// Requests by handling time (`HandleHistogram`'s buckets), for StatsReply's p50/p99.
    private var handleBuckets = [UInt64](repeating: 0, count: HandleHistogram.bounds.count + 1)

    let checkpointer: Checkpointer
    /// Prometheus metrics (ps-server --metrics-port); nil: none kept. Set before the server starts.
    public var metrics: ServerMetrics?

    /// - logInterval: a peer's refusals are logged at most once per this many seconds, with a count.
    public init(registry: TableRegistry, maxMessageBytes: Int, logger: Logger, checkpointDir: String? = nil, logInterval: Double = 10) {
        refusalLog = LogLimiter(interval: logInterval)
        self.registry = registry
        self.maxMessageBytes = maxMessageBytes
        self.logger = logger
        checkpointer = Checkpointer(configuredDir: checkpointDir, logger: logger)
    }

    public struct Outcome {
        public var reply: Envelope
        /// The request was a Shutdown: the server should stop after replying.
        public var shutdown: Bool
        /// A push held by a checkpoint's cut: answered later (see `extra`), not now.
        public var deferred = false
        /// Replies to earlier, held pushes, to send now on any handler socket.
        public var extra: [DeferredReply] = []
        /// The request's type, for the metrics (`Body.kindName`; `undecodable`, `oversized`).
        public var kind = "undecodable"
        init(reply: Envelope, shutdown: Bool) {
            self.reply = reply
            self.shutdown = shutdown
        }
    }

    /// Handles one frame and encodes the reply (timed for `StatsReply`).
    /// `route` is the request's routing frames, kept with a held push so it
    /// can be answered later; `reply` is nil for a held push.
    /// `role` is what the peer's key may do (nil: CURVE named none: only replies to nothing).
    public func handleRouted(frame: UnsafeRawBufferPointer, peer: String, role: PeerRole? = .admin, route: [[UInt8]])
        -> (reply: MallocBuffer?, shutdown: Bool, extra: [DeferredReply]) {
        let t0 = DispatchTime.now().uptimeNanoseconds
        let outcome = handle(frame: frame, peer: peer, role: role, route: route)
        let bytes = outcome.deferred ? nil : WireCodec.encodeBuffer(outcome.reply)
        let dt = DispatchTime.now().uptimeNanoseconds &- t0
        let bucket = HandleHistogram.bucket(nanos: dt)
        counters.withLock { handleNanos &+= dt; handleBuckets[bucket] &+= 1 }
        if let m = metrics {
            let status: String
            if case .error(let e) = outcome.reply.body, !outcome.deferred { status = "\(e.status)" } else { status = "OK" }
            m.request(kind: outcome.kind, status: status, nanos: dt, bytesIn: frame.count, bytesOut: bytes?.count ?? 0)
        }
        return (bytes, outcome.shutdown, outcome.extra)
    }

    /// Work due without a request: releases a checkpoint hold whose driver
    /// went silent. Returns the replies of the pushes it applied.
    public func tick() -> [DeferredReply] {
        for (peer, held) in refusalLog.due() {
            logger.warning("requests rejected and not logged one by one", metadata: ["ps.peer": "\(peer)", "ps.held_back": "\(held)"])
        }
        return checkpointer.expireHold().map { $0.compactMap(applyHeld) } ?? []
    }

    /// Applies a push that was held by a cut and encodes its reply; nil when
    /// a new hold began meanwhile and queued it again (answered at its release).
    private func applyHeld(_ h: Checkpointer.HeldPush) -> DeferredReply? {
        let outcome: Outcome
        if case .push(let b) = h.envelope.body {
            outcome = push(h.envelope, b, peer: "held", route: h.route, holdable: true, arrived: h.arrived)
            if outcome.deferred { return nil }
            metrics?.heldPushApplied(waitedNanos: Checkpointer.now() &- h.arrived)
        } else {
            outcome = fail(h.envelope.requestID, h.envelope.sender, .internalError, "held request is not a push", peer: "held")
        }
        return DeferredReply(route: h.route, bytes: WireCodec.encodeBuffer(outcome.reply))
    }

    /// Validates, de-duplicates and applies one push; while a checkpoint
    /// holds pushes (and `holdable`), queues it instead (`deferred`).
    private func push(_ request: Envelope, _ b: Blocks, peer: String, route: [[UInt8]], holdable: Bool,
                      arrived: UInt64? = nil) -> Outcome {
        let id = request.requestID
        let resolved: ResolvedPush
        switch validatePush(b) {
        case .success(let r): resolved = r
        case .failure(let e): return fail(id, request.sender, e.status, e.message, peer: peer)
        }
        if holdable {
            let held = Checkpointer.HeldPush(route: route, envelope: request, arrived: arrived ?? Checkpointer.now())
            if !checkpointer.enterOrHold(held) {
                var o = Outcome(reply: request, shutdown: false)
                o.deferred = true
                return o
            }
        } else {
            checkpointer.enterUnheld()
        }
        if id != 0, let prior = dedup.checkAndRecord(sender: request.sender, id: id, rows: resolved.rows) {
            checkpointer.leave(applied: false)
            logger.info("duplicate push acknowledged, not applied", metadata: [
                "ps.peer": "\(peer)", "ps.sender": "\(request.sender)", "ps.request": "\(id)",
            ])
            return Outcome(reply: Envelope(requestID: id, sender: senderName, body: .ack(Ack(appliedRows: prior, duplicate: true))), shutdown: false)
        }
        let t0 = DispatchTime.now().uptimeNanoseconds
        apply(b, resolved)
        let dt = DispatchTime.now().uptimeNanoseconds &- t0
        checkpointer.leave(applied: true)
        counters.withLock { applyNanos &+= dt }
        return Outcome(reply: Envelope(requestID: id, sender: senderName, body: .ack(Ack(appliedRows: resolved.rows))), shutdown: false)
    }

    /// Handles one frame from `peer` (a printable id of the connection).
    public func handle(frame: UnsafeRawBufferPointer, peer: String, role: PeerRole? = .admin, route: [[UInt8]] = []) -> Outcome {
        counters.withLock { requests &+= 1 }
        if frame.count > maxMessageBytes {
            let (_, id) = WireCodec.peekHeader(frame)
            var o = fail(id, "", .tooLarge,
                         "message of \(frame.count) bytes exceeds this server's limit of \(maxMessageBytes) bytes", peer: peer)
            o.kind = "oversized"
            return o
        }
        let request: Envelope
        do {
            request = try WireCodec.decode(frame)
        } catch {
            return fail(error.requestID, error.sender, error.status, error.message, peer: peer)
        }
        var o = dispatch(request, peer: peer, role: role, route: route)
        o.kind = request.body.kindName
        if let m = metrics { count(request, o, m) }
        return o
    }

    /// Keys pulled and pushed, and retried pushes answered from the de-duplication window.
    private func count(_ request: Envelope, _ o: Outcome, _ m: ServerMetrics) {
        if case .error = o.reply.body, !o.deferred { return }
        switch request.body {
        case .pull(let b):
            for blk in b.sparse { m.keys(table: blk.tableID, name: registry.table(blk.tableID)?.spec.name ?? "\(blk.tableID)", push: false, count: blk.keys.count) }
        case .push(let b):
            if case .ack(let a) = o.reply.body, a.duplicate { m.dedupHits.increment(); return }
            for blk in b.sparse { m.keys(table: blk.tableID, name: registry.table(blk.tableID)?.spec.name ?? "\(blk.tableID)", push: true, count: blk.keys.count) }
        default:
            break
        }
    }

    /// Answers one decoded request.
    private func dispatch(_ request: Envelope, peer: String, role: PeerRole?, route: [[UInt8]]) -> Outcome {
        let id = request.requestID
        // Checked before anything is looked at or applied: a refused request changes nothing.
        guard let role, request.body.allowed(for: role) else {
            return fail(id, request.sender, .permissionDenied, request.body.refusal(for: role), peer: peer)
        }
        func reply(_ body: Body) -> Outcome {
            Outcome(reply: Envelope(requestID: id, sender: senderName, body: body), shutdown: false)
        }
        switch request.body {
        case .hello(let h):
            if h.shardCount != 0 && (Int(h.shardCount) != registry.shardCount || Int(h.shardIndex) != registry.shardIndex) {
                logger.warning("peer has a different view of the shards", metadata: [
                    "ps.peer": "\(peer)", "ps.sender": "\(request.sender)",
                    "ps.expected": "\(h.shardIndex)/\(h.shardCount)",
                    "ps.actual": "\(registry.shardIndex)/\(registry.shardCount)",
                ])
            }
            return reply(.helloReply(HelloReply(shardIndex: UInt32(registry.shardIndex), shardCount: UInt32(registry.shardCount),
                                                serverVersion: RequestHandler.serverVersion,
                                                tables: registry.all().map(\.spec))))
        case .declare(let d):
            if let e = registry.declare(d) { return fail(id, request.sender, e.status, e.message, peer: peer) }
            logger.debug("tables declared", metadata: ["ps.peer": "\(peer)", "ps.tables": "\(d.tables.map(\.name))"])
            for spec in d.tables where spec.kind == .sparse {
                if case .sparse(let t)? = registry.table(spec.id), counters.withLock({ capsLogged.insert(spec.id).inserted }) {
                    logger.info("row cap", metadata: ["ps.table": "\(spec.name)", "ps.max_rows_here": "\(registry.rowCap(t).map(String.init) ?? "none")",
                                                      "ps.bytes_per_row": "\(RowLimits.bytesPerRow(dim: t.dim, stateWidth: t.optimizer.stateWidth))"])
                }
            }
            return reply(.ack(Ack(appliedRows: UInt64(d.tables.count))))
        case .pull(let b):
            switch pull(b) {
            case .success(let r): return reply(.pullReply(r))
            case .failure(let e): return fail(id, request.sender, e.status, e.message, peer: peer)
            }
        case .push(let b):
            // Without a route (a direct caller) a push cannot be answered later: it waits for the hold to end.
            return push(request, b, peer: peer, route: route, holdable: !route.isEmpty)
        case .stats:
            return reply(.statsReply(stats()))
        case .heartbeat:
            // Liveness only: progress alignment is the coordinator's (its MemberBeat).
            return reply(.heartbeat(Heartbeat()))
        case .snapshot(let r):
            guard !r.name.isEmpty else { return fail(id, request.sender, .badRequest, "snapshot needs a name", peer: peer) }
            switch r.action {
            case .save:
                let rows = registry.saveSnapshot(r.name)
                logger.info("snapshot saved", metadata: ["ps.peer": "\(peer)", "ps.snapshot": "\(r.name)", "ps.rows": "\(rows)"])
                return reply(.ack(Ack(appliedRows: rows)))
            case .restore:
                switch registry.restoreSnapshot(r.name) {
                case .success(let rows):
                    logger.info("snapshot restored", metadata: ["ps.peer": "\(peer)", "ps.snapshot": "\(r.name)", "ps.rows": "\(rows)"])
                    return reply(.ack(Ack(appliedRows: rows)))
                case .failure(let e):
                    return fail(id, request.sender, e.status, e.message, peer: peer)
                }
            }
        case .shutdown(let reason):
            logger.notice("shutdown requested", metadata: ["ps.peer": "\(peer)", "ps.sender": "\(request.sender)", "ps.reason": "\(reason)"])
            var o = reply(.ack(Ack(appliedRows: 0)))
            o.shutdown = true
            return o
        case .checkpoint(let r):
            var extra: [DeferredReply] = []
            let result = checkpointer.handle(r, registry: registry, dedup: dedup) { held in extra = held.compactMap(applyHeld) }
            var o: Outcome
            switch result {
            case .reply(let rep):
                logger.info("checkpoint request", metadata: [
                    "ps.peer": "\(peer)", "ps.action": "\(r.action)", "ps.checkpoint": "\(r.name)", "ps.state": "\(rep.state)",
                    "ps.held_pushes": "\(rep.heldPushes)", "ps.hold_ms": "\(String(format: "%.3f", rep.holdMs))",
                ])
                o = reply(.checkpointReply(rep))
            case .error(let status, let message):
                o = fail(id, request.sender, status, message, peer: peer)
            }
            o.extra = extra
            return o
        case .register, .leaseRequest, .memberBeat, .scale, .leave, .status, .coordinatorCheckpoint, .recovery:
            return fail(id, request.sender, .badRequest, "a \(request.body.kindName) is a coordinator request; this is a parameter server", peer: peer)
        case .helloReply, .pullReply, .ack, .error, .statsReply, .registerReply, .leaseReply, .memberBeatReply, .statusReply, .checkpointReply,
             .coordinatorCheckpointReply, .recoveryReply:
            return fail(id, request.sender, .badRequest, "a \(request.body.kindName) is a reply, not a request", peer: peer)
        }
    }

    var senderName: String { "ps-server-\(registry.shardIndex)" }

    /// Refusals logged at most once per peer per interval (a flood of garbage costs a line per peer, not per frame).
    let refusalLog: LogLimiter
    /// Tables whose cap was logged (the first declaration; the handler threads share it under `counters`).
    private var capsLogged = Set<UInt32>()

    private func fail(_ id: UInt64, _ sender: String, _ status: Status, _ message: String, peer: String) -> Outcome {
        counters.withLock { errors &+= 1 }
        if case .log(let held) = refusalLog.admit(peer) {
            logger.warning("request rejected", metadata: [
                "ps.peer": "\(peer)", "ps.sender": "\(sender)", "ps.request": "\(id)",
                "ps.status": "\(status)", "ps.reason": "\(message)", "ps.held_back": "\(held)",
            ])
        }
        return Outcome(reply: Envelope(requestID: id, sender: senderName, body: .error(ErrorReply(status: status, message: message))),
                       shutdown: false)
    }

    // MARK: pull

    private func pull(_ b: Blocks) -> Result<Blocks, ErrorReply> {
        // Validate all blocks first.
        var sparse: [SparseTable] = []
        for blk in b.sparse {
            guard let t = registry.table(blk.tableID) else { return .failure(unknown(blk.tableID)) }
            guard case .sparse(let s) = t else {
                return .failure(ErrorReply(status: .badRequest, message: "table \(blk.tableID) '\(t.spec.name)' is dense; pull it with a dense block"))
            }
            if !blk.values.isEmpty {
                return .failure(ErrorReply(status: .badRequest, message: "pull of table \(blk.tableID) '\(s.spec.name)' carries \(blk.values.count) values; a pull carries keys only"))
            }
            if let e = overCap(s, blk.keys, "this pull") { return .failure(e) }
            sparse.append(s)
        }
        var dense: [DenseTable] = []
        for blk in b.dense {
            switch denseTable(blk) {
            case .failure(let e): return .failure(e)
            case .success(let d): dense.append(d)
            }
        }
        var out = Blocks()
        out.sparse.reserveCapacity(b.sparse.count)
        for (blk, t) in zip(b.sparse, sparse) {
            let n = blk.keys.count * t.dim
            let values = [Float](unsafeUninitializedCapacity: n) { buf, count in
                blk.keys.withUnsafeBufferPointer { t.pull(keys: $0, into: buf.baseAddress!) }
                count = n
            }
            out.sparse.append(SparseBlock(tableID: blk.tableID, keys: [], values: values))
        }
        for (blk, t) in zip(b.dense, dense) {
            let n = Int(blk.count)
            let values = [Float](unsafeUninitializedCapacity: n) { buf, count in
                if n > 0 { t.pull(offset: Int(blk.offset), count: n, into: buf.baseAddress!) }
                count = n
            }
            out.dense.append(DenseBlock(tableID: blk.tableID, offset: blk.offset, count: blk.count, values: values))
        }
        return .success(out)
    }

    /// TABLE_FULL when `keys` would create rows past the table's cap on this server (nothing is created then).
    private func overCap(_ s: SparseTable, _ keys: [UInt64], _ what: String) -> ErrorReply? {
        guard let cap = registry.rowCap(s), let over = s.wouldPass(cap: cap, keys: keys) else { return nil }
        let limits = registry.limits
        let perRow = RowLimits.bytesPerRow(dim: s.dim, stateWidth: s.optimizer.stateWidth)
        let origin: String
        if let total = limits.explicit[s.spec.name] {
            origin = "max_rows \(total) over \(registry.shardCount) server(s)"
        } else {
            let mib = (limits.budgetBytes ?? 0) >> 20
            origin = "the default: an equal share of this server's \(mib) MiB memory budget, \(perRow) B a row, twice (the best epoch's copy)"
        }
        return ErrorReply(status: .tableFull, message:
            "table \(s.spec.id) '\(s.spec.name)' is full on server \(registry.shardIndex): \(what) would create \(over.new) new rows past its cap of \(cap) rows (it holds \(over.rows)); the cap is \(origin); set tables.\(s.spec.name).max_rows higher (about \(perRow) B a row) or run more servers")
    }

    private func unknown(_ id: UInt32) -> ErrorReply {
        ErrorReply(status: .unknownTable, message: "unknown table \(id) (declare it first)")
    }

    /// The dense table of a block whose range lies inside this server's slice.
    private func denseTable(_ blk: DenseBlock) -> Result<DenseTable, ErrorReply> {
        guard let t = registry.table(blk.tableID) else { return .failure(unknown(blk.tableID)) }
        guard case .dense(let d) = t else {
            return .failure(ErrorReply(status: .badRequest, message: "table \(blk.tableID) '\(t.spec.name)' is sparse; use a sparse block"))
        }
        let r = d.range
        let (end, overflow) = blk.offset.addingReportingOverflow(blk.count)
        if overflow || blk.offset < UInt64(r.lowerBound) || end > UInt64(r.upperBound) {
            return .failure(ErrorReply(status: .wrongDimension, message:
                "dense slice [\(blk.offset), +\(blk.count)) of table \(blk.tableID) '\(d.spec.name)' is outside this server's range [\(r.lowerBound), \(r.upperBound))"))
        }
        return .success(d)
    }

    // MARK: push

    struct ResolvedPush {
        var sparse: [SparseTable]
        var dense: [DenseTable]
        var rows: UInt64
    }

    private func validatePush(_ b: Blocks) -> Result<ResolvedPush, ErrorReply> {
        var r = ResolvedPush(sparse: [], dense: [], rows: 0)
        guard b.lrScale.isFinite, b.lrScale > 0, b.lrScale <= 1000 else {
            return .failure(ErrorReply(status: .badRequest, message: "lr_scale \(b.lrScale) is not in (0, 1000]"))
        }
        for blk in b.sparse {
            guard let t = registry.table(blk.tableID) else { return .failure(unknown(blk.tableID)) }
            guard case .sparse(let s) = t else {
                return .failure(ErrorReply(status: .badRequest, message: "table \(blk.tableID) '\(t.spec.name)' is dense; push it with a dense block"))
            }
            if s.spec.frozen {
                return .failure(ErrorReply(status: .frozen, message: "table \(blk.tableID) '\(s.spec.name)' is frozen: pull only"))
            }
            let (expected, overflow) = blk.keys.count.multipliedReportingOverflow(by: s.dim)
            if overflow || blk.values.count != expected {
                return .failure(ErrorReply(status: .wrongDimension, message:
                    "push to table \(blk.tableID) '\(s.spec.name)': \(blk.keys.count) keys × dim \(s.dim) needs \(blk.keys.count &* s.dim) values, got \(blk.values.count)"))
            }
            if !allFinite(blk.values) {
                return .failure(ErrorReply(status: .nonFinite, message: "push to table \(blk.tableID) '\(s.spec.name)' has NaN or Inf in its gradient"))
            }
            if let e = overCap(s, blk.keys, "this push") { return .failure(e) }
            r.sparse.append(s)
            r.rows += UInt64(blk.keys.count)
        }
        // Each row gets one optimiser step per push: a key listed twice for a
        // table (in one block or across its blocks) is refused, not stepped twice.
        var tablesSeen = Set<UInt32>(), repeatedTables = Set<UInt32>()
        for blk in b.sparse where !tablesSeen.insert(blk.tableID).inserted { repeatedTables.insert(blk.tableID) }
        for (i, blk) in b.sparse.enumerated() where !repeatedTables.contains(blk.tableID) || b.sparse.firstIndex(where: { $0.tableID == blk.tableID }) == i {
            let keys = repeatedTables.contains(blk.tableID) ? b.sparse.filter { $0.tableID == blk.tableID }.flatMap(\.keys) : blk.keys
            if let k = KeyHash.firstRepeat(in: keys) {
                return .failure(ErrorReply(status: .badRequest, message:
                    "push to table \(blk.tableID) '\(r.sparse[i].spec.name)': key \(k) is listed twice (each row takes one step per push: sum its gradients first)"))
            }
        }
        for blk in b.dense {
            let d: DenseTable
            switch denseTable(blk) {
            case .failure(let e): return .failure(e)
            case .success(let t): d = t
            }
            if d.spec.frozen {
                return .failure(ErrorReply(status: .frozen, message: "table \(blk.tableID) '\(d.spec.name)' is frozen: pull only"))
            }
            if UInt64(blk.values.count) != blk.count {
                return .failure(ErrorReply(status: .wrongDimension, message:
                    "push to dense table \(blk.tableID) '\(d.spec.name)': count \(blk.count) but \(blk.values.count) values"))
            }
            if !allFinite(blk.values) {
                return .failure(ErrorReply(status: .nonFinite, message: "push to dense table \(blk.tableID) '\(d.spec.name)' has NaN or Inf in its gradient"))
            }
            r.dense.append(d)
            r.rows += 1
        }
        return .success(r)
    }

    private func apply(_ b: Blocks, _ r: ResolvedPush) {
        for (blk, t) in zip(b.sparse, r.sparse) {
            blk.keys.withUnsafeBufferPointer { k in
                blk.values.withUnsafeBufferPointer { v in
                    if let base = v.baseAddress { t.push(keys: k, gradients: base, lrScale: b.lrScale) }
                }
            }
        }
        for (blk, t) in zip(b.dense, r.dense) where blk.count > 0 {
            blk.values.withUnsafeBufferPointer { t.push(offset: Int(blk.offset), gradient: $0, lrScale: b.lrScale) }
        }
    }

    // MARK: stats

    public func stats() -> StatsReply {
        let tables: [TableStats] = registry.all().map { t in
            switch t {
            case .sparse(let s):
                let m = s.memory(), c = s.counts()
                return TableStats(id: s.spec.id, name: s.spec.name, rows: UInt64(m.rows), bytes: UInt64(m.totalBytes),
                                  pulls: c.pulls, pushes: c.pushes)
            case .dense(let d):
                let c = d.counts()
                return TableStats(id: d.spec.id, name: d.spec.name, rows: UInt64(d.range.count), bytes: UInt64(d.bytes),
                                  pulls: c.pulls, pushes: c.pushes)
            }
        }
        let (req, err, handle, apply, buckets) = counters.withLock { (requests, errors, handleNanos, applyNanos, handleBuckets) }
        return StatsReply(shardIndex: UInt32(registry.shardIndex), tables: tables, requests: req, errors: err,
                          uptimeSeconds: Date().timeIntervalSince(started),
                          handleSeconds: Double(handle) / 1e9, pushApplySeconds: Double(apply) / 1e9,
                          handleBucketBounds: HandleHistogram.bounds, handleBucketCounts: buckets)
    }

    /// Total time spent applying pushes (optimiser + lookup), in seconds.
    public var pushApplySeconds: Double { counters.withLock { Double(applyNanos) / 1e9 } }
}
