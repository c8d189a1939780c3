import CZeroMQ
import Foundation
import Logging
import ScenePSCore
import ScenePSProtocol
import ScenePSTransport

/// The worker side of the parameter servers: pull, push and a few control
/// calls. One request per server per call, carrying every table's blocks;
/// all servers are asked in parallel (one DEALER each) and all answers are
/// awaited with a bounded timeout and retries under the same request id.
///
/// Not thread-safe: one thread uses one client (ZeroMQ sockets belong to one
/// thread).
public final class PSClient {
    public let endpoints: [String]
    public let sender: String
    public let options: PSClientOptions
    private let logger: Logger
    private let context: ZMQContext
    private var sockets: [ZMQSocket]
    private var nextRequestID: UInt64
    /// Pulls begun and not finished yet, and replies to them that arrived
    /// while another request was being collected (kept, not dropped).
    private var outstanding: Set<UInt64> = []
    private var early: [UInt64: [Int: Envelope]] = [:]
    /// Table schemas learned from `declare` or `hello`.
    public private(set) var tables: [UInt32: TableSpec] = [:]

    public init(endpoints: [String], sender: String, options: PSClientOptions = .init(), logger: Logger) throws {
        guard !endpoints.isEmpty else { throw ScenePSError.invalidArgument("PSClient needs at least one server endpoint") }
        guard options.retries >= 0, options.timeout > .zero, options.maxMessageBytes > 0 else {
            throw ScenePSError.invalidArgument("PSClient options need retries >= 0, timeout > 0 and maxMessageBytes > 0")
        }
        self.endpoints = endpoints
        self.sender = sender
        self.options = options
        self.logger = logger
        context = try ZMQContext(ioThreads: 1)
        sockets = []
        for e in endpoints {
            let s = try ZMQSocket(context, type: .dealer, lingerMilliseconds: 200)
            try s.setHighWaterMarks(send: options.highWaterMark, receive: options.highWaterMark)
            try s.setMaxMessageSize(Int64(options.maxMessageBytes) * 2)
            try s.connect(e)
            sockets.append(s)
        }
        // Ids grow from the wall clock, so a restarted client with the same
        // sender name never repeats an id the servers remember.
        nextRequestID = UInt64(max(1, Date().timeIntervalSince1970 * 1e6))
    }

    deinit {
        for s in sockets { s.close() }
    }

    public var serverCount: Int { endpoints.count }

    // MARK: control

    /// Greets every server; checks each reports the shard index it is listed
    /// at and the same shard count. Learns the servers' table schemas.
    public func hello(role: String, scene: String) throws -> [HelloReplyInfo] {
        let n = serverCount
        var bodies: [Int: Body] = [:]
        for i in 0..<n { bodies[i] = .hello(Hello(role: role, scene: scene, shardCount: UInt32(n), shardIndex: UInt32(i))) }
        let replies = try roundTrip(bodies, what: "hello")
        var out: [HelloReplyInfo] = []
        for i in 0..<n {
            guard case .helloReply(let h) = replies[i]! else { throw unexpected(replies[i]!, server: i, what: "hello") }
            guard Int(h.shardIndex) == i, Int(h.shardCount) == n else {
                throw ScenePSError.config("server at \(endpoints[i]) reports shard \(h.shardIndex) of \(h.shardCount), but it is listed at position \(i) of \(n) endpoints")
            }
            for t in h.tables { tables[t.id] = t }
            out.append(h)
        }
        return out
    }

    /// Declares tables on every server. `denseInitial` holds full initial
    /// vectors of dense tables (each server gets its slice; used only when
    /// the table is created).
    public func declare(_ specs: [TableSpec], denseInitial: [UInt32: [Float]] = [:]) throws {
        for (id, v) in denseInitial {
            guard let s = specs.first(where: { $0.id == id }), s.kind == .dense else {
                throw ScenePSError.invalidArgument("initial values given for table \(id), which is not a dense table of this declaration")
            }
            guard v.count == Int(s.denseSize) else {
                throw ScenePSError.invalidArgument("initial values of dense table \(id) '\(s.name)' have \(v.count) floats, expected \(s.denseSize)")
            }
        }
        let n = serverCount
        var bodies: [Int: Body] = [:]
        for i in 0..<n {
            var initial: [DenseBlock] = []
            for s in specs where s.kind == .dense {
                guard let v = denseInitial[s.id] else { continue }
                let r = Sharding.denseRange(size: Int(s.denseSize), server: i, servers: n)
                initial.append(DenseBlock(tableID: s.id, offset: UInt64(r.lowerBound), count: UInt64(r.count), values: Array(v[r])))
            }
            bodies[i] = .declare(DeclareTables(tables: specs, initial: initial))
        }
        let replies = try roundTrip(bodies, what: "declare")
        for i in 0..<n {
            guard case .ack = replies[i]! else { throw unexpected(replies[i]!, server: i, what: "declare") }
        }
        for s in specs { tables[s.id] = s }
    }

    public func stats() throws -> [StatsReplyInfo] {
        var bodies: [Int: Body] = [:]
        for i in 0..<serverCount { bodies[i] = .stats }
        let replies = try roundTrip(bodies, what: "stats")
        return try (0..<serverCount).map { i in
            guard case .statsReply(let s) = replies[i]! else { throw unexpected(replies[i]!, server: i, what: "stats") }
            return s
        }
    }

    /// Checks every server answers (bounded by the timeout and retries).
    public func heartbeat() throws {
        var bodies: [Int: Body] = [:]
        for i in 0..<serverCount { bodies[i] = .heartbeat(Heartbeat()) }
        let replies = try roundTrip(bodies, what: "heartbeat")
        for i in 0..<serverCount {
            guard case .heartbeat = replies[i]! else { throw unexpected(replies[i]!, server: i, what: "heartbeat") }
        }
    }

    /// Saves or restores snapshot `name` on every server; returns the sparse
    /// rows copied, summed over the servers.
    @discardableResult
    public func snapshot(_ action: SnapshotRequest.Action, name: String) throws -> UInt64 {
        var bodies: [Int: Body] = [:]
        for i in 0..<serverCount { bodies[i] = .snapshot(SnapshotRequest(action: action, name: name)) }
        let what = action == .save ? "snapshot save" : "snapshot restore"
        let replies = try roundTrip(bodies, what: what)
        var rows: UInt64 = 0
        for i in 0..<serverCount {
            guard case .ack(let a) = replies[i]! else { throw unexpected(replies[i]!, server: i, what: what) }
            rows += a.appliedRows
        }
        return rows
    }

    public func shutdownServers(reason: String) throws {
        var bodies: [Int: Body] = [:]
        for i in 0..<serverCount { bodies[i] = .shutdown(reason: reason) }
        let replies = try roundTrip(bodies, what: "shutdown")
        for i in 0..<serverCount {
            guard case .ack = replies[i]! else { throw unexpected(replies[i]!, server: i, what: "shutdown") }
        }
    }

    // MARK: pull

    /// A pull that has been sent and not yet collected (`beginPull` /
    /// `finishPull` let a caller compute while the servers answer).
    public struct PendingPull {
        fileprivate let requestID: UInt64
        fileprivate let bodies: [Int: Body]
        fileprivate let routes: [KeyRouting]
        fileprivate let requests: [SparsePull]
        fileprivate let dims: [Int]
        fileprivate let dense: [UInt32]
        fileprivate var sentAt: ContinuousClock.Instant
    }

    public func pull(_ requests: [SparsePull], dense: [UInt32] = []) throws -> PullResult {
        try finishPull(beginPull(requests, dense: dense))
    }

    public func beginPull(_ requests: [SparsePull], dense: [UInt32] = []) throws -> PendingPull {
        let n = serverCount
        var dims: [Int] = []
        var routes: [KeyRouting] = []
        var perServer = Array(repeating: Blocks(), count: n)
        for r in requests {
            let spec = try knownTable(r.tableID, kind: .sparse)
            dims.append(Int(spec.dim))
            let route = r.keys.withUnsafeBufferPointer {
                KeyRouting(table: r.tableID, keys: $0, servers: n, unique: r.keysAreUnique)
            }
            for s in 0..<n where !route.serverKeys[s].isEmpty {
                perServer[s].sparse.append(SparseBlock(tableID: r.tableID, keys: route.serverKeys[s]))
            }
            routes.append(route)
        }
        for id in dense {
            let spec = try knownTable(id, kind: .dense)
            for s in 0..<n {
                let r = Sharding.denseRange(size: Int(spec.denseSize), server: s, servers: n)
                if !r.isEmpty { perServer[s].dense.append(DenseBlock(tableID: id, offset: UInt64(r.lowerBound), count: UInt64(r.count))) }
            }
        }
        var bodies: [Int: Body] = [:]
        for s in 0..<n where !perServer[s].sparse.isEmpty || !perServer[s].dense.isEmpty {
            bodies[s] = .pull(perServer[s])
        }
        let id = takeRequestID()
        try send(bodies, requestID: id)
        outstanding.insert(id)
        return PendingPull(requestID: id, bodies: bodies, routes: routes, requests: requests, dims: dims, dense: dense,
                           sentAt: .now)
    }

    public func finishPull(_ p: PendingPull) throws -> PullResult {
        defer { outstanding.remove(p.requestID); early[p.requestID] = nil }
        let replies = try collect(p.bodies, requestID: p.requestID, what: "pull", firstSentAt: p.sentAt)
        // Check every reply's shape before scattering.
        var blocks: [Int: Blocks] = [:]
        for (s, env) in replies {
            guard case .pullReply(let b) = env.body else { throw unexpected(env.body, server: s, what: "pull") }
            guard case .pull(let asked) = p.bodies[s]!, b.sparse.count == asked.sparse.count, b.dense.count == asked.dense.count else {
                throw ScenePSError(.protocolError, "server \(s) (\(endpoints[s])) answered a pull with the wrong number of blocks")
            }
            for (a, r) in zip(asked.sparse, b.sparse) {
                let dim = Int(tables[a.tableID]!.dim)
                guard r.tableID == a.tableID, r.values.count == a.keys.count * dim else {
                    throw ScenePSError(.protocolError, "server \(s) (\(endpoints[s])) answered table \(a.tableID) with \(r.values.count) values for \(a.keys.count) keys of dim \(dim)")
                }
            }
            for (a, r) in zip(asked.dense, b.dense) {
                guard r.tableID == a.tableID, r.offset == a.offset, r.values.count == Int(a.count) else {
                    throw ScenePSError(.protocolError, "server \(s) (\(endpoints[s])) answered dense table \(a.tableID) with a wrong slice")
                }
            }
            blocks[s] = b
        }
        // Each server's blocks appear in request order; track the next one per server.
        var nextSparse = [Int](repeating: 0, count: serverCount)
        var sparseOut: [[Float]] = []
        for (ri, r) in p.requests.enumerated() {
            let dim = p.dims[ri], route = p.routes[ri]
            var source: [Int: Int] = [:]   // server -> block index
            for s in 0..<serverCount where !route.serverKeys[s].isEmpty {
                source[s] = nextSparse[s]
                nextSparse[s] += 1
            }
            let n = r.keys.count
            let out = [Float](unsafeUninitializedCapacity: n * dim) { buf, count in
                route.server.withUnsafeBufferPointer { srv in
                    route.position.withUnsafeBufferPointer { pos in
                        for (s, bi) in source {
                            blocks[s]!.sparse[bi].values.withUnsafeBufferPointer { src in
                                let s32 = Int32(s)
                                for i in 0..<n where srv[i] == s32 {
                                    (buf.baseAddress! + i * dim).update(from: src.baseAddress! + Int(pos[i]) * dim, count: dim)
                                }
                            }
                        }
                    }
                }
                count = n * dim
            }
            sparseOut.append(out)
        }
        var denseOut: [UInt32: [Float]] = [:]
        for id in p.dense {
            let spec = tables[id]!
            var full = [Float](repeating: 0, count: Int(spec.denseSize))
            for s in 0..<serverCount {
                let r = Sharding.denseRange(size: Int(spec.denseSize), server: s, servers: serverCount)
                if r.isEmpty { continue }
                guard let b = blocks[s]?.dense.first(where: { $0.tableID == id }) else {
                    throw ScenePSError(.protocolError, "server \(s) (\(endpoints[s])) did not return dense table \(id)")
                }
                full.replaceSubrange(r, with: b.values)
            }
            denseOut[id] = full
        }
        return PullResult(sparse: sparseOut, dense: denseOut)
    }

    // MARK: push

    /// Pushes gradients: duplicate keys are summed, each server gets one
    /// request with all its blocks. A retry after a timeout reuses the request
    /// id, so the servers apply it once. `lrScale` multiplies every table's
    /// learning rate for this push (a schedule; 1 = the configured rates).
    public func push(_ sparse: [SparseGradient], dense: [DenseGradient] = [], lrScale: Float = 1) throws {
        let n = serverCount
        var perServer = Array(repeating: Blocks(lrScale: lrScale), count: n)
        for g in sparse {
            let spec = try knownTable(g.tableID, kind: .sparse)
            let dim = Int(spec.dim)
            guard g.values.count == g.keys.count * dim else {
                throw ScenePSError.invalidArgument("gradient of table \(g.tableID) '\(spec.name)' has \(g.values.count) values for \(g.keys.count) keys of dim \(dim)")
            }
            let route = g.keys.withUnsafeBufferPointer {
                KeyRouting(table: g.tableID, keys: $0, servers: n, unique: g.keysAreUnique)
            }
            if g.keysAreUnique && n == 1 {   // nothing to sum or split: send the caller's values as they are
                perServer[0].sparse.append(SparseBlock(tableID: g.tableID, keys: route.serverKeys[0], values: g.values))
                continue
            }
            var sums = (0..<n).map { [Float](repeating: 0, count: route.serverKeys[$0].count * dim) }
            g.values.withUnsafeBufferPointer { v in
                for s in 0..<n where !sums[s].isEmpty {
                    sums[s].withUnsafeMutableBufferPointer { out in
                        for i in 0..<g.keys.count where Int(route.server[i]) == s {
                            let dst = out.baseAddress! + Int(route.position[i]) * dim
                            let src = v.baseAddress! + i * dim
                            for j in 0..<dim { dst[j] += src[j] }
                        }
                    }
                }
            }
            for s in 0..<n where !route.serverKeys[s].isEmpty {
                perServer[s].sparse.append(SparseBlock(tableID: g.tableID, keys: route.serverKeys[s], values: sums[s]))
            }
        }
        for g in dense {
            let spec = try knownTable(g.tableID, kind: .dense)
            guard g.values.count == Int(spec.denseSize) else {
                throw ScenePSError.invalidArgument("dense gradient of table \(g.tableID) '\(spec.name)' has \(g.values.count) floats, expected \(spec.denseSize)")
            }
            for s in 0..<n {
                let r = Sharding.denseRange(size: Int(spec.denseSize), server: s, servers: n)
                if r.isEmpty { continue }
                perServer[s].dense.append(DenseBlock(tableID: g.tableID, offset: UInt64(r.lowerBound), count: UInt64(r.count),
                                                     values: Array(g.values[r])))
            }
        }
        var bodies: [Int: Body] = [:]
        for s in 0..<n where !perServer[s].sparse.isEmpty || !perServer[s].dense.isEmpty {
            bodies[s] = .push(perServer[s])
        }
        if bodies.isEmpty { return }
        let replies = try roundTrip(bodies, what: "push")
        for (s, env) in replies {
            guard case .ack = env else { throw unexpected(env, server: s, what: "push") }
        }
    }

    // MARK: plumbing

    private func knownTable(_ id: UInt32, kind: TableKind) throws -> TableSpec {
        guard let spec = tables[id] else {
            throw ScenePSError.invalidArgument("table \(id) is not known to this client: declare it or call hello first")
        }
        guard spec.kind == kind else {
            throw ScenePSError.invalidArgument("table \(id) '\(spec.name)' is \(spec.kind), not \(kind)")
        }
        return spec
    }

    private func takeRequestID() -> UInt64 {
        nextRequestID &+= 1
        return nextRequestID
    }

    private func unexpected(_ body: Body, server: Int, what: String) -> ScenePSError {
        ScenePSError(.protocolError, "server \(server) (\(endpoints[server])) answered \(what) with \(body.kindName)")
    }

    private func roundTrip(_ bodies: [Int: Body], what: String) throws -> [Int: Body] {
        let id = takeRequestID()
        try send(bodies, requestID: id)
        return try collect(bodies, requestID: id, what: what, firstSentAt: .now).mapValues(\.body)
    }

    private func send(_ bodies: [Int: Body], requestID: UInt64) throws {
        for (s, body) in bodies {
            let env = Envelope(requestID: requestID, sender: sender, body: body)
            let buf = WireCodec.encodeMalloc(env)
            if buf.count > options.maxMessageBytes {
                free(buf.baseAddress)
                throw ScenePSError.invalidArgument("\(body.kindName) for server \(s) (\(endpoints[s])) is \(buf.count) bytes, over the limit of \(options.maxMessageBytes); send fewer keys per call")
            }
            // EAGAIN (queue full) counts as a lost message: the retry resends it.
            try sockets[s].send([.adopt(buf)], dontWait: true)
        }
    }

    /// Waits for the reply to `requestID` from every server in `bodies`,
    /// resending to the silent ones after each timeout. ErrorReply → `.remote`.
    private func collect(_ bodies: [Int: Body], requestID: UInt64, what: String,
                         firstSentAt: ContinuousClock.Instant) throws -> [Int: Envelope] {
        var replies: [Int: Envelope] = early.removeValue(forKey: requestID) ?? [:]
        for (s, env) in replies {
            if case .error(let e) = env.body {
                throw ScenePSError(.remote, "server \(s) (\(endpoints[s])) rejected \(what): status=\(e.status): \(e.message)")
            }
        }
        var pending = Set(bodies.keys).subtracting(replies.keys)
        var attempt = 0
        var deadline = firstSentAt + options.timeout
        while !pending.isEmpty {
            let now = ContinuousClock.now
            if now >= deadline {
                if attempt >= options.retries {
                    let s = pending.min()!
                    throw ScenePSError(.timeout, "server \(s) (\(endpoints[s])) did not answer \(what) request \(requestID) within \(options.timeout) after \(attempt + 1) attempts")
                }
                attempt += 1
                logger.warning("request timed out, retrying", metadata: [
                    "ps.request": "\(requestID)", "ps.kind": "\(what)", "ps.attempt": "\(attempt)",
                    "ps.servers": "\(pending.sorted().map { endpoints[$0] })",
                ])
                try send(bodies.filter { pending.contains($0.key) }, requestID: requestID)
                deadline = ContinuousClock.now + options.timeout
                continue
            }
            let order = pending.sorted()
            let left = deadline - now
            let ms = max(1, Int(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000))
            let ready = try ZMQPoll.readable(order.map { sockets[$0] }, timeoutMilliseconds: ms)
            for (k, s) in order.enumerated() where ready[k] {
                while let frames = try sockets[s].receive(dontWait: true) {
                    guard let payload = frames.last else { continue }
                    let env: Envelope
                    do {
                        env = try payload.withUnsafeBytes { b throws(WireDecodingError) in try WireCodec.decode(b) }
                    } catch {
                        throw ScenePSError(.protocolError, "server \(s) (\(endpoints[s])) sent an undecodable reply to \(what): \(error)")
                    }
                    guard env.requestID == requestID else {
                        if outstanding.contains(env.requestID) {   // a pull begun earlier: keep it for its finishPull
                            early[env.requestID, default: [:]][s] = env
                        } else {
                            logger.debug("stale reply dropped", metadata: ["ps.request": "\(env.requestID)", "ps.server": "\(endpoints[s])"])
                        }
                        continue
                    }
                    if case .error(let e) = env.body {
                        throw ScenePSError(.remote, "server \(s) (\(endpoints[s])) rejected \(what): status=\(e.status): \(e.message)")
                    }
                    replies[s] = env
                    pending.remove(s)
                }
            }
        }
        return replies
    }
}
