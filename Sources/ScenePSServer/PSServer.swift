import CZeroMQ
import Foundation
import Logging
import ScenePSCore
import ScenePSProtocol
import ScenePSTransport

public struct PSServerOptions: Sendable {
    public var shardIndex: Int
    public var shardCount: Int
    /// ZeroMQ endpoint to bind, e.g. `tcp://127.0.0.1:7000` or `tcp://127.0.0.1:*`.
    public var bind: String
    /// Handler threads (each decodes, applies and encodes requests).
    public var threads: Int = 2
    /// Requests larger than this get STATUS_TOO_LARGE; libzmq drops peers
    /// that send more than twice this (ZMQ_MAXMSGSIZE).
    public var maxMessageBytes: Int = 64 << 20
    /// Messages queued per peer before ROUTER drops (ZMQ_SNDHWM/RCVHWM).
    public var highWaterMark: Int32 = 1000
    /// log2 of lock stripes per sparse table.
    public var stripeBits: Int = 4
    /// Where checkpoints go when a request names no directory (and the only
    /// directory a request may name); nil: requests must name one.
    public var checkpointDir: String?
    /// A file the server keeps its count of applied pushes in, memory-mapped so
    /// that it survives a kill -9 (a supervisor's recovery debt); nil: none.
    public var pushCounterPath: String?
    /// Accept only CURVE clients whose keys these list, each with its role
    /// (docs/SECURITY.md); nil: plain TCP, every peer is admin.
    public var curve: CurveServerKeys?
    /// Row caps per sparse table (`RowLimits`); unlimited by default here, `ps-server` sets a budget.
    public var rowLimits = RowLimits.unlimited
    /// A peer's bad frames and refused requests are logged at most once per this many seconds, with a count.
    public var logIntervalSeconds: Double = 10

    public init(shardIndex: Int, shardCount: Int, bind: String) {
        self.shardIndex = shardIndex
        self.shardCount = shardCount
        self.bind = bind
    }
}

/// One parameter server: a ROUTER frontend thread that moves frames between
/// the network and an inproc DEALER, and `threads` handler threads that each
/// own a DEALER connected to it (with one thread, the handler owns the ROUTER). Socket loops run on their own threads,
/// never in Swift concurrency (docs/ARCHITECTURE.md §7).
public final class PSServer: @unchecked Sendable {
    // @unchecked: mutable state is `stopping`/`threadsDone` under `lock`;
    // each socket is used by exactly one thread.
    public let options: PSServerOptions
    public let handler: RequestHandler
    public let registry: TableRegistry
    private let logger: Logger
    private let context: ZMQContext
    private let lock = Lock()
    private var stopping = false
    private var started = false
    private let done = DispatchGroup()
    private static let pollMilliseconds = 50
    /// Decides CURVE handshakes (with `options.curve`).
    private var zap: ZAPHandler?
    private static let serial = Lock()
    nonisolated(unsafe) private static var nextID = 0
    /// The endpoint actually bound (after `start`).
    public private(set) var endpoint = ""

    public init(options: PSServerOptions, logger: Logger) throws {
        precondition(options.shardCount > 0 && options.shardIndex >= 0 && options.shardIndex < options.shardCount)
        precondition(options.threads > 0 && options.maxMessageBytes > 0)
        self.options = options
        self.logger = logger
        registry = TableRegistry(shardIndex: options.shardIndex, shardCount: options.shardCount, stripeBits: options.stripeBits)
        registry.limits = options.rowLimits
        handler = RequestHandler(registry: registry, maxMessageBytes: options.maxMessageBytes, logger: logger,
                                 checkpointDir: options.checkpointDir, logInterval: options.logIntervalSeconds)
        if let path = options.pushCounterPath {
            handler.checkpointer.attach(try PushCounterFile(path: path, shard: options.shardIndex, shards: options.shardCount))
        }
        context = try ZMQContext(ioThreads: 1)
    }

    public var isStopping: Bool { lock.withLock { stopping } }

    /// Binds and starts the threads; returns the bound endpoint.
    @discardableResult
    public func start() throws -> String {
        try lock.withLock {
            precondition(!started, "start() called twice")
            started = true
            let id = PSServer.serial.withLock { PSServer.nextID += 1; return PSServer.nextID }
            let backendAddress = "inproc://ps-backend-\(ProcessInfo.processInfo.processIdentifier)-\(id)"

            let frontend = try ZMQSocket(context, type: .router, lingerMilliseconds: 500)
            if let curve = options.curve {
                zap = try ZAPHandler(context: context, keys: curve, logger: logger)
                try frontend.makeCurveServer(curve)
            }
            try frontend.setHighWaterMarks(send: options.highWaterMark, receive: options.highWaterMark)
            try frontend.setMaxMessageSize(Int64(options.maxMessageBytes) * 2)
            try frontend.setInt(ZMQ_ROUTER_MANDATORY, 0, "zmq_setsockopt(ZMQ_ROUTER_MANDATORY)")
            try frontend.bind(options.bind)
            endpoint = try frontend.lastEndpoint()

            if options.threads == 1 {
                // One handler: it owns the ROUTER itself, saving two thread
                // hops per request (the frames are the same: [id, ..., payload]).
                spawn(name: "ps-handler-0") { [self] in handlerLoop(frontend, index: 0) }
                logger.info("server bound", metadata: [
                    "ps.shard": "\(options.shardIndex)/\(options.shardCount)", "ps.endpoint": "\(endpoint)", "ps.threads": "1",
                ])
                return endpoint
            }

            let backend = try ZMQSocket(context, type: .dealer, lingerMilliseconds: 500)
            try backend.setHighWaterMarks(send: 0, receive: 0)
            try backend.bind(backendAddress)

            var workers: [ZMQSocket] = []
            for _ in 0..<options.threads {
                let s = try ZMQSocket(context, type: .dealer, lingerMilliseconds: 500)
                try s.setHighWaterMarks(send: 0, receive: 0)
                try s.connect(backendAddress)
                workers.append(s)
            }
            for (i, s) in workers.enumerated() {
                spawn(name: "ps-handler-\(i)") { [self] in handlerLoop(s, index: i) }
            }
            spawn(name: "ps-frontend") { [self] in frontendLoop(frontend, backend) }
            logger.info("server bound", metadata: [
                "ps.shard": "\(options.shardIndex)/\(options.shardCount)", "ps.endpoint": "\(endpoint)",
                "ps.threads": "\(options.threads)",
            ])
            return endpoint
        }
    }

    private func spawn(name: String, _ body: @escaping @Sendable () -> Void) {
        done.enter()
        let t = Thread { [done] in
            body()
            done.leave()
        }
        t.name = name
        t.start()
    }

    /// Asks every thread to stop (returns at once).
    public func stop() { lock.withLock { stopping = true } }

    /// Waits until every thread has exited; false on timeout.
    public func wait(timeout: Duration) -> Bool {
        let ns = timeout.components.seconds * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000
        guard done.wait(timeout: .now() + .nanoseconds(Int(ns))) == .success else { return false }
        zap?.stop()
        return true
    }

    /// Stops and waits (bounded).
    public func shutdown(timeout: Duration = .seconds(5)) {
        stop()
        if !wait(timeout: timeout) {
            logger.error("server threads did not stop in time", metadata: ["ps.endpoint": "\(endpoint)"])
        }
    }

    // MARK: loops

    private func frontendLoop(_ frontend: ZMQSocket, _ backend: ZMQSocket) {
        defer { frontend.close(); backend.close() }
        var drainPasses = 0
        while true {
            let stopNow = isStopping
            if stopNow {
                // Let handlers finish and forward their last replies (a Shutdown's ack).
                drainPasses += 1
                if drainPasses > 10 { return }
            }
            do {
                let ready = try ZMQPoll.readable([frontend, backend], timeoutMilliseconds: PSServer.pollMilliseconds)
                if ready[1] { while try backend.forward(to: frontend) {} }
                if ready[0] && !stopNow {
                    // With CURVE the role rides ahead of the frames (a frame's metadata does not cross inproc).
                    if options.curve != nil { while try frontend.forwardTaggingUserID(to: backend) {} }
                    else { while try frontend.forward(to: backend) {} }
                }
            } catch {
                logger.error("frontend loop failed", metadata: ["ps.endpoint": "\(endpoint)", "ps.error": "\(error)"])
                stop()
                return
            }
        }
    }

    private func handlerLoop(_ socket: ZMQSocket, index: Int) {
        defer { socket.close() }
        do {
            // A blocking receive that gives up after the poll interval, so the
            // stop flag is seen (one call per request instead of poll + recv).
            try socket.setInt(ZMQ_RCVTIMEO, Int32(PSServer.pollMilliseconds), "zmq_setsockopt(ZMQ_RCVTIMEO)")
        } catch {
            logger.error("handler socket setup failed", metadata: ["ps.thread": "\(index)", "ps.error": "\(error)"])
            stop()
            return
        }
        while !isStopping {
            do {
                guard let frames = try socket.receive() else {
                    try sendDeferred(handler.tick(), socket)
                    continue
                }
                try handleOne(frames, socket)
            } catch {
                logger.error("handler loop failed", metadata: ["ps.thread": "\(index)", "ps.error": "\(error)"])
                stop()
                return
            }
        }
    }

    static func hex(_ b: UnsafeRawBufferPointer) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(b.count * 2)
        for x in b { out.append(digits[Int(x >> 4)]); out.append(digits[Int(x & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }

    private func handleOne(_ received: [ZMQFrame], _ socket: ZMQSocket) throws {
        // [routing id, (empty delimiter from REQ peers)..., payload]: echo the prefix. With CURVE, the ZAP
        // handler named the key's role: on the frames themselves when this handler owns the ROUTER, in a
        // frame ahead of them when the frontend forwarded them (`forwardTaggingUserID`).
        var frames = received[...]
        var role: PeerRole? = .admin
        if options.curve != nil {
            if options.threads > 1 {
                guard let tag = frames.popFirst() else { return }
                role = PeerRole(rawValue: String(decoding: tag.bytes, as: UTF8.self))
            } else {
                role = frames.last?.userID.flatMap(PeerRole.init(rawValue:))
            }
        }
        guard frames.count >= 2 else { return }
        let payload = frames[frames.endIndex - 1]
        let peer = frames[frames.startIndex].withUnsafeBytes { PSServer.hex($0) }
        let route = frames.dropLast().map(\.bytes)
        let outcome = payload.withUnsafeBytes { handler.handleRouted(frame: $0, peer: peer, role: role, route: route) }
        if let reply = outcome.reply {
            var out: [ZMQOutgoingFrame] = route.map { .bytes($0) }
            out.append(.owned(reply))
            try socket.send(out)
        }
        try sendDeferred(outcome.extra + handler.tick(), socket)
        if outcome.shutdown { stop() }
    }

    /// Answers pushes that a checkpoint's cut held (any handler socket can:
    /// the routing frames lead the reply to its peer).
    private func sendDeferred(_ replies: [DeferredReply], _ socket: ZMQSocket) throws {
        for r in replies {
            var out: [ZMQOutgoingFrame] = r.route.map { .bytes($0) }
            out.append(.owned(r.bytes))
            try socket.send(out)
        }
    }
}
