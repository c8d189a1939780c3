import CZeroMQ
import ScenePSCore

/// How a parameter-server client reaches its servers: one ordered message
/// channel per server, requests out and replies in (docs/ARCHITECTURE.md,
/// "The client"). The client owns request ids, timeouts and retries; a
/// transport only moves bytes. `ZMQServerTransport` is the real one (a
/// DEALER per server); `InProcessTransport` (ScenePSServer) calls server
/// request handlers directly, so client logic is tested without sockets.
///
/// Used from one thread at a time.
public protocol ServerTransport: AnyObject {
    /// A printable name per server (its endpoint), in shard order.
    var endpoints: [String] { get }
    /// Queues `message` for server `server` without blocking; takes the
    /// buffer over. False when it could not be queued now: the caller treats
    /// it as lost (its retry sends it again).
    func send(_ message: MallocBuffer, to server: Int) throws -> Bool
    /// Waits at most `timeout` until a message from one of `servers` is
    /// there, then passes every message already there to `body` (the bytes
    /// are valid during the call only). Returns without calling `body` when
    /// the time passed first, or when the connection to one of `servers`
    /// was lost (`connectionLosses` grew).
    func receive(from servers: [Int], timeout: Duration, _ body: (Int, UnsafeRawBufferPointer) throws -> Void) throws
    /// How many times the connection to `server` was lost so far (the peer
    /// closed it or died): a request in flight on it got no answer and will
    /// get none, so the client sends it again at once instead of waiting out
    /// its timeout. Counted as `receive` notices them.
    func connectionLosses(of server: Int) -> UInt64
}

/// `ServerTransport` over ZeroMQ: one DEALER socket per server, connected
/// at once (libzmq reconnects by itself when a server restarts, and keeps
/// what is sent meanwhile queued for the new connection). Each DEALER is
/// monitored for ZMQ_EVENT_DISCONNECTED on an inproc PAIR: the messages it
/// had written to the dead connection are lost, which the client learns at
/// once (`connectionLosses`) rather than after its request timeout.
public final class ZMQServerTransport: ServerTransport {
    public let endpoints: [String]
    private let context: ZMQContext
    private let sockets: [ZMQSocket]
    /// `monitors[i]` reads the events of `sockets[i]`.
    private let monitors: [ZMQSocket]
    private var losses: [UInt64]

    /// - maxMessageBytes: libzmq drops a peer's larger message (ZMQ_MAXMSGSIZE).
    /// - highWaterMark: messages queued per server (ZMQ_SNDHWM/RCVHWM).
    /// - curve: connect as this CURVE client (nil: plain TCP).
    public init(endpoints: [String], maxMessageBytes: Int, highWaterMark: Int32, curve: CurveClientKeys? = nil) throws {
        self.endpoints = endpoints
        let context = try ZMQContext(ioThreads: 1)
        self.context = context
        let sockets = try endpoints.map { e in
            let s = try ZMQSocket(context, type: .dealer, lingerMilliseconds: 200)
            try s.setHighWaterMarks(send: highWaterMark, receive: highWaterMark)
            try s.setMaxMessageSize(Int64(maxMessageBytes))
            if let curve { try s.makeCurveClient(curve) }
            try s.connect(e)
            return s
        }
        self.sockets = sockets
        monitors = try sockets.indices.map { i in
            let address = "inproc://sceneps-server-monitor-\(i)"   // inproc names are per context: this transport's own
            try sockets[i].monitor(address, events: ZMQ_EVENT_DISCONNECTED)
            let m = try ZMQSocket(context, type: .pair, lingerMilliseconds: 0)
            try m.connect(address)
            return m
        }
        losses = Array(repeating: 0, count: endpoints.count)
    }

    deinit {
        for s in sockets { s.close() }
        for m in monitors { m.close() }
    }

    public func connectionLosses(of server: Int) -> UInt64 { losses[server] }

    public func send(_ message: MallocBuffer, to server: Int) throws -> Bool {
        try sockets[server].send([.owned(message)], dontWait: true)
    }

    public func receive(from servers: [Int], timeout: Duration, _ body: (Int, UnsafeRawBufferPointer) throws -> Void) throws {
        let c = timeout.components
        let ms = max(0, Int(c.seconds * 1000 + (c.attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000))   // rounded up
        // Every server's monitor, not only those of `servers`: the counts stay current for later requests.
        let ready = try ZMQPoll.readable(servers.map { sockets[$0] } + monitors, timeoutMilliseconds: ms)
        for (s, m) in monitors.enumerated() where ready[servers.count + s] {
            while let frames = try m.receive(dontWait: true) {
                if let e = ZMQMonitorEvent(frames), e.event == ZMQ_EVENT_DISCONNECTED { losses[s] += 1 }
            }
        }
        for (k, s) in servers.enumerated() where ready[k] {
            while let frames = try sockets[s].receive(dontWait: true) {
                guard let payload = frames.last else { continue }
                try payload.withUnsafeBytes { try body(s, $0) }
            }
        }
    }
}
