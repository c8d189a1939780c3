import Foundation
import Logging
import ScenePSCore
import ScenePSProtocol
import ScenePSTransport

/// The worker side of the parameter servers, ps-lite's three calls:
/// `pull` and `push` send at once and return a ticket; `wait` collects the
/// answers. One request per server per call, carrying every table's blocks;
/// every server is asked in parallel and answered within a bounded timeout,
/// retried under the same request id (the servers apply a push once). A
/// few control calls (`hello`, `declare`, snapshots, stats, shutdown) round
/// out what a worker, psctl and the coordinator need (docs/ARCHITECTURE.md,
/// "The client").
///
/// Table widths come from the schema learned by `hello` or `declare`; keys
/// of a table in one call are distinct. Errors are `PSClientError`.
///
/// Not thread-safe: one thread uses one client (the transport's sockets
/// belong to one thread).
public final class PSClient {
    public let sender: String
    public let options: PSClientOptions
    private let transport: ServerTransport
    private let logger: Logger
    private var nextRequestID: UInt64
    /// Requests sent and not collected yet, and replies to them that arrived
    /// while another request was being collected (kept, not dropped).
    private var outstanding: Set<UInt64> = []
    private var early: [UInt64: [Int: Envelope]] = [:]
    /// Table schemas learned from `declare` or `hello`.
    public private(set) var tables: [UInt32: TableSpec] = [:]
    /// Prometheus metrics of this client's requests; nil: none kept.
    public var metrics: ClientMetrics?

    /// A client over any transport (`InProcessTransport` in tests).
    public init(transport: ServerTransport, sender: String, options: PSClientOptions = .init(), logger: Logger) throws {
        guard !transport.endpoints.isEmpty else { throw PSClientError.invalidArgument("PSClient needs at least one server") }
        guard options.retries >= 0, options.timeout > .zero, options.maxMessageBytes > 0 else {
            throw PSClientError.invalidArgument("PSClient options need retries >= 0, timeout > 0 and maxMessageBytes > 0")
        }
        self.transport = transport
        self.sender = sender
        self.options = options
        self.logger = logger
        // Ids grow from the wall clock, so a restarted client with the same
        // sender name never repeats an id the servers remember.
        nextRequestID = UInt64(max(1, Date().timeIntervalSince1970 * 1e6))
    }

    /// A client of servers at ZeroMQ `endpoints`, in shard order.
    public convenience init(endpoints: [String], sender: String, options: PSClientOptions = .init(), logger: Logger) throws {
        guard !endpoints.isEmpty else { throw PSClientError.invalidArgument("PSClient needs at least one server endpoint") }
        let t = try ZMQServerTransport(endpoints: endpoints, maxMessageBytes: options.maxMessageBytes * 2,
                                       highWaterMark: options.highWaterMark, curve: options.curve)
        try self.init(transport: t, sender: sender, options: options, logger: logger)
    }

    public var endpoints: [String] { transport.endpoints }
    public var serverCount: Int { transport.endpoints.count }

    // MARK: pull, push, wait

    /// A pull on its way: `wait` returns its rows.
    public struct PullTicket {
        fileprivate let request: Request
        fileprivate let routes: [KeyRouting]
        fileprivate let pulls: [SparsePull]
        fileprivate let dims: [Int]
        fileprivate let dense: [UInt32]
    }

    /// A push on its way: `wait` returns once every server acknowledged it.
    public struct PushTicket {
        fileprivate let request: Request
    }

    /// Sends a pull of the rows of `sparse` and of the whole vectors of the
    /// `dense` tables. Other calls may run before its `wait` (a worker pushes
    /// batch k while the pull of batch k+1 is under way).
    public func pull(_ sparse: [SparsePull], dense: [UInt32] = []) throws -> PullTicket {
        let n = serverCount
        var dims: [Int] = []
        var routes: [KeyRouting] = []
        var perServer = Array(repeating: Blocks(), count: n)
        for p in sparse {
            let spec = try knownTable(p.tableID, kind: .sparse)
            let route = try routing(spec, p.keys)
            for s in 0..<n where !route.serverKeys[s].isEmpty {
                perServer[s].sparse.append(SparseBlock(tableID: p.tableID, keys: route.serverKeys[s]))
            }
            dims.append(Int(spec.dim))
            routes.append(route)
        }
        for id in dense {
            let spec = try knownTable(id, kind: .dense)
            for s in 0..<n {
                let r = Sharding.denseRange(size: Int(spec.denseSize), server: s, servers: n)
                if !r.isEmpty { perServer[s].dense.append(DenseBlock(tableID: id, offset: UInt64(r.lowerBound), count: UInt64(r.count))) }
            }
        }
        let request = try send(perServer.map { $0.sparse.isEmpty && $0.dense.isEmpty ? nil : Body.pull($0) }, what: "pull")
        return PullTicket(request: request, routes: routes, pulls: sparse, dims: dims, dense: dense)
    }

    /// Sends gradients of distinct rows and of whole dense tables; each
    /// server gets one request with all its blocks. `lrScale` multiplies
    /// every table's learning rate for this push (the schedule; 1 = the
    /// configured rates).
    public func push(_ sparse: [SparseGradient], dense: [DenseGradient] = [], lrScale: Float = 1) throws -> PushTicket {
        guard lrScale.isFinite, lrScale > 0 else {   // 0 is the wire's "unset" (= 1): never send it
            throw PSClientError.invalidArgument("lrScale must be a positive finite number, got \(lrScale)")
        }
        let n = serverCount
        var perServer = Array(repeating: Blocks(lrScale: lrScale), count: n)
        for g in sparse {
            let spec = try knownTable(g.tableID, kind: .sparse)
            let dim = Int(spec.dim)
            guard g.values.count == g.keys.count * dim else {
                throw PSClientError.wrongSize(table: g.tableID, name: spec.name, values: g.values.count,
                                              expected: g.keys.count * dim, what: "gradient of \(g.keys.count) keys")
            }
            let route = try routing(spec, g.keys)
            if n == 1 {   // nothing to split: send the caller's values as they are
                if !g.keys.isEmpty { perServer[0].sparse.append(SparseBlock(tableID: g.tableID, keys: g.keys, values: g.values)) }
                continue
            }
            var split = (0..<n).map { [Float](repeating: 0, count: route.serverKeys[$0].count * dim) }
            g.values.withUnsafeBufferPointer { v in
                for s in 0..<n where !split[s].isEmpty {
                    split[s].withUnsafeMutableBufferPointer { out in
                        for i in 0..<g.keys.count where Int(route.server[i]) == s {
                            (out.baseAddress! + Int(route.position[i]) * dim).update(from: v.baseAddress! + i * dim, count: dim)
                        }
                    }
                }
            }
            for s in 0..<n where !route.serverKeys[s].isEmpty {
                perServer[s].sparse.append(SparseBlock(tableID: g.tableID, keys: route.serverKeys[s], values: split[s]))
            }
        }
        for g in dense {
            let spec = try knownTable(g.tableID, kind: .dense)
            guard g.values.count == Int(spec.denseSize) else {
                throw PSClientError.wrongSize(table: g.tableID, name: spec.name, values: g.values.count,
                                              expected: Int(spec.denseSize), what: "dense gradient")
            }
            for s in 0..<n {
                let r = Sharding.denseRange(size: Int(spec.denseSize), server: s, servers: n)
                if r.isEmpty { continue }
                perServer[s].dense.append(DenseBlock(tableID: g.tableID, offset: UInt64(r.lowerBound), count: UInt64(r.count),
                                                     values: Array(g.values[r])))
            }
        }
        let request = try send(perServer.map { $0.sparse.isEmpty && $0.dense.isEmpty ? nil : Body.push($0) }, what: "push")
        return PushTicket(request: request)
    }

    /// Waits for a pull's rows (bounded by the timeout and retries).
    public func wait(_ t: PullTicket) throws -> PullResult {
        let replies = try collect(t.request)
        // Check every reply's shape before scattering.
        var blocks: [Int: Blocks] = [:]
        for (s, body) in replies {
            guard case .pullReply(let b) = body else { throw unexpected(body, server: s, what: "pull") }
            guard case .pull(let asked) = t.request.bodies[s]!, b.sparse.count == asked.sparse.count, b.dense.count == asked.dense.count else {
                throw badReply(s, "pull", "the wrong number of blocks")
            }
            for (a, r) in zip(asked.sparse, b.sparse) {
                let dim = Int(tables[a.tableID]!.dim)
                guard r.tableID == a.tableID, r.values.count == a.keys.count * dim else {
                    throw badReply(s, "pull", "table \(a.tableID) came with \(r.values.count) values for \(a.keys.count) keys of dim \(dim)")
                }
            }
            for (a, r) in zip(asked.dense, b.dense) {
                guard r.tableID == a.tableID, r.offset == a.offset, r.values.count == Int(a.count) else {
                    throw badReply(s, "pull", "dense table \(a.tableID) came with a wrong slice")
                }
            }
            blocks[s] = b
        }
        // Each server's blocks appear in request order; track the next one per server.
        let n = serverCount
        var nextSparse = [Int](repeating: 0, count: n)
        var sparseOut: [[Float]] = []
        for (pi, p) in t.pulls.enumerated() {
            let dim = t.dims[pi], route = t.routes[pi]
            var source: [(server: Int, block: Int)] = []
            for s in 0..<n where !route.serverKeys[s].isEmpty {
                source.append((s, nextSparse[s]))
                nextSparse[s] += 1
            }
            let count = p.keys.count
            if source.count == 1 && n == 1 {   // one server: its block is the result
                sparseOut.append(blocks[0]!.sparse[source[0].block].values)
                continue
            }
            let out = [Float](unsafeUninitializedCapacity: count * dim) { buf, filled in
                route.server.withUnsafeBufferPointer { srv in
                    route.position.withUnsafeBufferPointer { pos in
                        for (s, bi) in source {
                            blocks[s]!.sparse[bi].values.withUnsafeBufferPointer { src in
                                let s32 = Int32(s)
                                for i in 0..<count where srv[i] == s32 {
                                    (buf.baseAddress! + i * dim).initialize(from: src.baseAddress! + Int(pos[i]) * dim, count: dim)
                                }
                            }
                        }
                    }
                }
                filled = count * dim
            }
            sparseOut.append(out)
        }
        var denseOut: [UInt32: [Float]] = [:]
        for id in t.dense {
            let spec = tables[id]!
            var full = [Float](repeating: 0, count: Int(spec.denseSize))
            for s in 0..<n {
                let r = Sharding.denseRange(size: Int(spec.denseSize), server: s, servers: n)
                if r.isEmpty { continue }
                guard let b = blocks[s]?.dense.first(where: { $0.tableID == id }) else {
                    throw badReply(s, "pull", "dense table \(id) is missing")
                }
                full.replaceSubrange(r, with: b.values)
            }
            denseOut[id] = full
        }
        return PullResult(sparse: sparseOut, dense: denseOut)
    }

    /// Waits until every server acknowledged the push.
    public func wait(_ t: PushTicket) throws {
        for (s, body) in try collect(t.request) {
            guard case .ack = body else { throw unexpected(body, server: s, what: "push") }
        }
    }

    // MARK: control

    /// Greets every server; checks each reports the shard index it is listed
    /// at and the same shard count. Learns the servers' table schemas.
    @discardableResult
    public func hello(role: String, scene: String) throws -> [HelloReply] {
        let n = serverCount
        let replies = try roundTrip((0..<n).map { .hello(Hello(role: role, scene: scene, shardCount: UInt32(n), shardIndex: UInt32($0))) },
                                    what: "hello")
        return try (0..<n).map { i in
            guard case .helloReply(let h) = replies[i]! else { throw unexpected(replies[i]!, server: i, what: "hello") }
            guard Int(h.shardIndex) == i, Int(h.shardCount) == n else {
                throw PSClientError.wrongShard(server: i, endpoint: endpoints[i], reportedIndex: h.shardIndex,
                                               reportedCount: h.shardCount, listed: n)
            }
            for t in h.tables { tables[t.id] = t }
            return h
        }
    }

    /// Declares tables on every server. `denseInitial` holds full initial
    /// vectors of dense tables (each server gets its slice; used only when
    /// the table is created).
    public func declare(_ specs: [TableSpec], denseInitial: [UInt32: [Float]] = [:]) throws {
        for (id, v) in denseInitial {
            guard let s = specs.first(where: { $0.id == id }), s.kind == .dense else {
                throw PSClientError.invalidArgument("initial values given for table \(id), which is not a dense table of this declaration")
            }
            guard v.count == Int(s.denseSize) else {
                throw PSClientError.wrongSize(table: id, name: s.name, values: v.count, expected: Int(s.denseSize),
                                              what: "initial values")
            }
        }
        let n = serverCount
        let bodies: [Body?] = (0..<n).map { i in
            var initial: [DenseBlock] = []
            for s in specs where s.kind == .dense {
                guard let v = denseInitial[s.id] else { continue }
                let r = Sharding.denseRange(size: Int(s.denseSize), server: i, servers: n)
                initial.append(DenseBlock(tableID: s.id, offset: UInt64(r.lowerBound), count: UInt64(r.count), values: Array(v[r])))
            }
            return .declare(DeclareTables(tables: specs, initial: initial))
        }
        try expectAcks(roundTrip(bodies, what: "declare"), "declare")
        for s in specs { tables[s.id] = s }
    }

    public func stats() throws -> [StatsReply] {
        let replies = try roundTrip(Array(repeating: .stats, count: serverCount), what: "stats")
        return try (0..<serverCount).map { i in
            guard case .statsReply(let s) = replies[i]! else { throw unexpected(replies[i]!, server: i, what: "stats") }
            return s
        }
    }

    /// Checks every server answers (bounded by the timeout and retries).
    public func heartbeat() throws {
        let replies = try roundTrip(Array(repeating: .heartbeat(Heartbeat()), count: serverCount), what: "heartbeat")
        for (s, body) in replies {
            guard case .heartbeat = body else { throw unexpected(body, server: s, what: "heartbeat") }
        }
    }

    /// Saves or restores snapshot `name` on every server; returns the sparse
    /// rows copied, summed over the servers.
    @discardableResult
    public func snapshot(_ action: SnapshotRequest.Action, name: String) throws -> UInt64 {
        let what = action == .save ? "snapshot save" : "snapshot restore"
        let replies = try roundTrip(Array(repeating: .snapshot(SnapshotRequest(action: action, name: name)), count: serverCount),
                                    what: what)
        var rows: UInt64 = 0
        for (s, body) in replies {
            guard case .ack(let a) = body else { throw unexpected(body, server: s, what: what) }
            rows += a.appliedRows
        }
        return rows
    }

    /// Asks every server to stop (each exits 0 after answering).
    public func shutdownServers(reason: String) throws {
        try expectAcks(roundTrip(Array(repeating: .shutdown(reason: reason), count: serverCount), what: "shutdown"), "shutdown")
    }

    /// `shutdownServers` from a short-lived client of its own.
    public static func shutdown(endpoints: [String], reason: String, curve: CurveClientKeys? = nil, logger: Logger) throws {
        var options = PSClientOptions()
        options.curve = curve
        options.timeout = .seconds(5)
        options.retries = 1
        try PSClient(endpoints: endpoints, sender: "psctl-shutdown", options: options, logger: logger)
            .shutdownServers(reason: reason)
    }

    // MARK: plumbing

    /// A request sent to some servers: what each was sent, under one id.
    fileprivate struct Request {
        let id: UInt64
        let what: String
        let bodies: [Int: Body]
        let sentAt: ContinuousClock.Instant
        /// Each server's `connectionLosses` when the request was sent.
        let losses: [Int: UInt64]
    }

    private func knownTable(_ id: UInt32, kind: TableKind) throws -> TableSpec {
        guard let spec = tables[id] else { throw PSClientError.unknownTable(id) }
        guard spec.kind == kind else { throw PSClientError.wrongKind(table: id, name: spec.name, kind: spec.kind, expected: kind) }
        return spec
    }

    private func routing(_ spec: TableSpec, _ keys: [UInt64]) throws -> KeyRouting {
        var repeated: UInt64?
        guard let r = KeyRouting(table: spec.id, keys: keys, servers: serverCount, duplicate: &repeated) else {
            throw PSClientError.duplicateKey(table: spec.id, name: spec.name, key: repeated!)
        }
        return r
    }

    private func unexpected(_ body: Body, server: Int, what: String) -> PSClientError {
        badReply(server, what, "a \(body.kindName) reply")
    }

    private func badReply(_ server: Int, _ what: String, _ detail: String) -> PSClientError {
        .badReply(server: server, endpoint: endpoints[server], request: what, detail: detail)
    }

    private func expectAcks(_ replies: [Int: Body], _ what: String) throws {
        for (s, body) in replies {
            guard case .ack = body else { throw unexpected(body, server: s, what: what) }
        }
    }

    private func roundTrip(_ bodies: [Body?], what: String) throws -> [Int: Body] {
        try collect(send(bodies, what: what))
    }

    /// Sends `bodies[s]` to each server `s` that has one, under a new id.
    private func send(_ bodies: [Body?], what: String) throws -> Request {
        nextRequestID &+= 1
        var map: [Int: Body] = [:]
        for (s, b) in bodies.enumerated() { if let b { map[s] = b } }
        let losses = Dictionary(uniqueKeysWithValues: map.keys.map { ($0, transport.connectionLosses(of: $0)) })
        let r = Request(id: nextRequestID, what: what, bodies: map, sentAt: .now, losses: losses)
        try transmit(r, to: map.keys.sorted())
        if !map.isEmpty { outstanding.insert(r.id) }
        return r
    }

    /// Encodes every server's request first and sends only when all fit:
    /// a request too large for one server sends nothing to any.
    private func transmit(_ r: Request, to servers: [Int]) throws {
        let messages = try servers.map { s in
            let m = WireCodec.encodeBuffer(Envelope(requestID: r.id, sender: sender, body: r.bodies[s]!))
            guard m.count <= options.maxMessageBytes else {
                throw PSClientError.tooLarge(server: s, endpoint: endpoints[s], request: r.what, bytes: m.count,
                                             limit: options.maxMessageBytes)
            }
            return m
        }
        // A message that cannot be queued now counts as lost: the retry resends it.
        for (s, m) in zip(servers, messages) { _ = try transport.send(m, to: s) }
    }

    /// Waits for the reply to `r` from every server it went to, resending to
    /// the silent ones after each timeout, and at once to one whose
    /// connection was lost meanwhile (a server killed and restarted: what it
    /// had been sent is gone; the copy sent now waits in ZeroMQ's queue for
    /// the replacement) — once per server per attempt, so a flapping
    /// connection cannot make it send without end. The servers answer a
    /// request id they already applied from memory, never applying it twice.
    /// An ErrorReply → `.rejected`.
    private func collect(_ r: Request) throws -> [Int: Body] {
        guard let m = metrics else { return try collectReplies(r) }
        let t0 = ContinuousClock.now
        do {
            let replies = try collectReplies(r)
            m.completed(r.what, sentAt: r.sentAt, waitFrom: t0, outcome: "ok")
            return replies
        } catch {
            let outcome: String
            switch error as? PSClientError {
            case .rejected?: outcome = "rejected"
            case .timedOut?: outcome = "timeout"
            default: outcome = "error"
            }
            m.completed(r.what, sentAt: r.sentAt, waitFrom: t0, outcome: outcome)
            throw error
        }
    }

    private func collectReplies(_ r: Request) throws -> [Int: Body] {
        defer { outstanding.remove(r.id); early[r.id] = nil }
        var replies: [Int: Body] = [:]
        func accept(_ s: Int, _ env: Envelope) throws {
            if case .error(let e) = env.body {
                throw PSClientError.rejected(server: s, endpoint: endpoints[s], request: r.what, status: e.status, message: e.message)
            }
            replies[s] = env.body
        }
        for (s, env) in early[r.id] ?? [:] { try accept(s, env) }
        var pending = Set(r.bodies.keys).subtracting(replies.keys)
        var attempt = 0
        var deadline = r.sentAt + options.timeout
        var losses = r.losses
        var resent: Set<Int> = []   // this attempt
        while !pending.isEmpty {
            let lost = pending.filter { transport.connectionLosses(of: $0) != losses[$0] }
            if !lost.isEmpty {
                for s in lost { losses[s] = transport.connectionLosses(of: s) }
                let again = lost.subtracting(resent).sorted()
                resent.formUnion(again)
                if !again.isEmpty {
                    metrics?.retried(r.what)
                    logger.warning("connection lost, sending the request again", metadata: [
                        "ps.request": "\(r.id)", "ps.kind": "\(r.what)", "ps.servers": "\(again.map { endpoints[$0] })",
                    ])
                    try transmit(r, to: again)
                }
            }
            let now = ContinuousClock.now
            if now >= deadline {
                if attempt >= options.retries {
                    let s = pending.min()!
                    throw PSClientError.timedOut(server: s, endpoint: endpoints[s], request: r.what, requestID: r.id,
                                                 attempts: attempt + 1, timeout: options.timeout)
                }
                attempt += 1
                metrics?.retried(r.what)
                logger.warning("request timed out, retrying", metadata: [
                    "ps.request": "\(r.id)", "ps.kind": "\(r.what)", "ps.attempt": "\(attempt)",
                    "ps.servers": "\(pending.sorted().map { endpoints[$0] })",
                ])
                try transmit(r, to: pending.sorted())
                deadline = ContinuousClock.now + options.timeout
                resent.removeAll()
                continue
            }
            try transport.receive(from: pending.sorted(), timeout: deadline - now) { s, payload in
                let env: Envelope
                do {
                    env = try WireCodec.decode(payload)
                } catch {
                    throw badReply(s, r.what, "an undecodable reply (\(error))")
                }
                guard env.requestID == r.id else {
                    if outstanding.contains(env.requestID) {   // a request sent earlier: kept for its wait
                        early[env.requestID, default: [:]][s] = env
                    } else {
                        logger.debug("stale reply dropped", metadata: ["ps.request": "\(env.requestID)", "ps.server": "\(endpoints[s])"])
                    }
                    return
                }
                guard pending.contains(s) else { return }   // a second answer to a retried request
                try accept(s, env)
                pending.remove(s)
            }
        }
        return replies
    }
}
