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
    /// the time passed first.
    func receive(from servers: [Int], timeout: Duration, _ body: (Int, UnsafeRawBufferPointer) throws -> Void) throws
}

/// `ServerTransport` over ZeroMQ: one DEALER socket per server, connected
/// at once (libzmq reconnects by itself when a server restarts).
public final class ZMQServerTransport: ServerTransport {
    public let endpoints: [String]
    private let context: ZMQContext
    private let sockets: [ZMQSocket]

    /// - maxMessageBytes: libzmq drops a peer's larger message (ZMQ_MAXMSGSIZE).
    /// - highWaterMark: messages queued per server (ZMQ_SNDHWM/RCVHWM).
    public init(endpoints: [String], maxMessageBytes: Int, highWaterMark: Int32) throws {
        self.endpoints = endpoints
        let context = try ZMQContext(ioThreads: 1)
        self.context = context
        sockets = try endpoints.map { e in
            let s = try ZMQSocket(context, type: .dealer, lingerMilliseconds: 200)
            try s.setHighWaterMarks(send: highWaterMark, receive: highWaterMark)
            try s.setMaxMessageSize(Int64(maxMessageBytes))
            try s.connect(e)
            return s
        }
    }

    deinit {
        for s in sockets { s.close() }
    }

    public func send(_ message: MallocBuffer, to server: Int) throws -> Bool {
        try sockets[server].send([.owned(message)], dontWait: true)
    }

    public func receive(from servers: [Int], timeout: Duration, _ body: (Int, UnsafeRawBufferPointer) throws -> Void) throws {
        let c = timeout.components
        let ms = max(0, Int(c.seconds * 1000 + (c.attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000))   // rounded up
        let ready = try ZMQPoll.readable(servers.map { sockets[$0] }, timeoutMilliseconds: ms)
        for (k, s) in servers.enumerated() where ready[k] {
            while let frames = try sockets[s].receive(dontWait: true) {
                guard let payload = frames.last else { continue }
                try payload.withUnsafeBytes { try body(s, $0) }
            }
        }
    }
}
