import CZeroMQ
import ScenePSCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public enum ZMQSocketType: Int32, Sendable {
    case pair = 0, pub = 1, sub = 2, req = 3, rep = 4, dealer = 5, router = 6, pull = 7, push = 8
}

/// One received frame; owns its `zmq_msg_t` (zero-copy access to the bytes).
public final class ZMQFrame {
    var msg = zmq_msg_t()
    init() { zmq_msg_init(&msg) }
    deinit { zmq_msg_close(&msg) }

    public var count: Int { zmq_msg_size(&msg) }
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: zmq_msg_data(&msg), count: zmq_msg_size(&msg)))
    }
    public var bytes: [UInt8] { withUnsafeBytes { [UInt8]($0) } }
}

/// A frame to send.
public enum ZMQOutgoingFrame {
    /// Copied into the message (small frames: identities, delimiters).
    case bytes([UInt8])
    /// An owned buffer whose bytes libzmq takes over without copying (it
    /// frees them, also when the send fails).
    case owned(MallocBuffer)
}

/// A ZeroMQ socket. Belongs to one thread at a time (docs/ARCHITECTURE.md §7); it is
/// `@unchecked Sendable` only so it can be created on one thread and handed
/// to the thread that runs its loop.
public final class ZMQSocket: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer
    public let context: ZMQContext
    public private(set) var endpoint: String = ""
    private var closed = false

    /// - linger: how long close waits for queued messages (never forever).
    public init(_ context: ZMQContext, type: ZMQSocketType, lingerMilliseconds: Int32 = 200) throws {
        guard let h = zmq_socket(context.handle, type.rawValue) else {
            throw ZMQError.make("zmq_socket", endpoint: "", errno: zmq_errno())
        }
        self.handle = h
        self.context = context
        try setInt(ZMQ_LINGER, lingerMilliseconds, "ZMQ_LINGER")
    }

    deinit { close() }

    public func close() {
        if closed { return }
        closed = true
        zmq_close(handle)
    }

    // MARK: options

    public func setInt(_ option: Int32, _ value: Int32, _ name: StaticString = "zmq_setsockopt") throws {
        var v = value
        try zmqCall(name, endpoint: endpoint) { zmq_setsockopt(handle, option, &v, MemoryLayout<Int32>.size) }
    }

    public func setInt64(_ option: Int32, _ value: Int64, _ name: StaticString = "zmq_setsockopt") throws {
        var v = value
        try zmqCall(name, endpoint: endpoint) { zmq_setsockopt(handle, option, &v, MemoryLayout<Int64>.size) }
    }

    public func setBytes(_ option: Int32, _ value: [UInt8], _ name: StaticString = "zmq_setsockopt") throws {
        _ = try value.withUnsafeBytes { b in
            try zmqCall(name, endpoint: endpoint) { zmq_setsockopt(handle, option, b.baseAddress, b.count) }
        }
    }

    /// Send and receive high-water marks (messages queued per peer).
    public func setHighWaterMarks(send: Int32, receive: Int32) throws {
        try setInt(ZMQ_SNDHWM, send, "zmq_setsockopt(ZMQ_SNDHWM)")
        try setInt(ZMQ_RCVHWM, receive, "zmq_setsockopt(ZMQ_RCVHWM)")
    }

    /// libzmq drops the connection of a peer that sends a larger message.
    public func setMaxMessageSize(_ bytes: Int64) throws {
        try setInt64(ZMQ_MAXMSGSIZE, bytes, "zmq_setsockopt(ZMQ_MAXMSGSIZE)")
    }

    public func setIdentity(_ id: [UInt8]) throws {
        try setBytes(ZMQ_ROUTING_ID, id, "zmq_setsockopt(ZMQ_ROUTING_ID)")
    }

    /// The endpoint actually bound (resolves `tcp://127.0.0.1:*`).
    public func lastEndpoint() throws -> String {
        var buf = [CChar](repeating: 0, count: 1024)
        var size = buf.count
        try zmqCall("zmq_getsockopt(ZMQ_LAST_ENDPOINT)", endpoint: endpoint) {
            zmq_getsockopt(handle, ZMQ_LAST_ENDPOINT, &buf, &size)
        }
        let bytes = buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return String(decoding: bytes, as: UTF8.self)
    }

    // MARK: connect

    public func bind(_ endpoint: String) throws {
        try zmqCall("zmq_bind", endpoint: endpoint) { zmq_bind(handle, endpoint) }
        self.endpoint = (try? lastEndpoint()) ?? endpoint
    }

    public func connect(_ endpoint: String) throws {
        try zmqCall("zmq_connect", endpoint: endpoint) { zmq_connect(handle, endpoint) }
        self.endpoint = endpoint
    }

    /// Reports this socket's `events` (ZMQ_EVENT_* bits) as messages on a
    /// PAIR socket bound at inproc `endpoint` (zmq_socket_monitor): connect a
    /// PAIR of the same context there to read them (`ZMQMonitorEvent`).
    public func monitor(_ endpoint: String, events: Int32) throws {
        try zmqCall("zmq_socket_monitor", endpoint: endpoint) { zmq_socket_monitor(handle, endpoint, events) }
    }

    // MARK: send / receive

    /// Sends all frames as one multipart message. Returns false when the
    /// message could not be queued now (EAGAIN with `dontWait`).
    @discardableResult
    public func send(_ frames: [ZMQOutgoingFrame], dontWait: Bool = false) throws -> Bool {
        precondition(!frames.isEmpty, "a message has at least one frame")
        var ok = true
        for (i, frame) in frames.enumerated() {
            let more = i < frames.count - 1
            var flags: Int32 = more ? ZMQ_SNDMORE : 0
            if dontWait { flags |= ZMQ_DONTWAIT }
            var msg = zmq_msg_t()
            switch frame {
            case .bytes(let b):
                try zmqCall("zmq_msg_init_size", endpoint: endpoint) { zmq_msg_init_size(&msg, b.count) }
                if !b.isEmpty {
                    b.withUnsafeBytes { src in zmq_msg_data(&msg).copyMemory(from: src.baseAddress!, byteCount: src.count) }
                }
            case .owned(let owner):
                let buf = owner.handOver()
                let rc = zmq_msg_init_data(&msg, buf.baseAddress, buf.count, { data, _ in free(data) }, nil)
                if rc != 0 {
                    free(buf.baseAddress)
                    throw ZMQError.make("zmq_msg_init_data", endpoint: endpoint, errno: zmq_errno())
                }
            }
            if !ok {
                // An earlier frame failed: release this one (frees adopted data).
                zmq_msg_close(&msg)
                continue
            }
            do {
                let (_, outcome) = try zmqCall("zmq_msg_send", endpoint: endpoint) { zmq_msg_send(&msg, handle, flags) }
                if outcome == .wouldBlock { ok = false; zmq_msg_close(&msg) }
            } catch {
                zmq_msg_close(&msg)
                throw error
            }
        }
        return ok
    }

    /// Sends a single-frame message from bytes.
    @discardableResult
    public func send(bytes: [UInt8], dontWait: Bool = false) throws -> Bool {
        try send([.bytes(bytes)], dontWait: dontWait)
    }

    /// Receives a whole multipart message; nil when nothing is ready and
    /// `dontWait` (or the socket's receive timeout expired).
    public func receive(dontWait: Bool = false) throws -> [ZMQFrame]? {
        var frames: [ZMQFrame] = []
        while true {
            let f = ZMQFrame()
            let flags: Int32 = (dontWait && frames.isEmpty) ? ZMQ_DONTWAIT : 0
            let (_, outcome) = try zmqCall("zmq_msg_recv", endpoint: endpoint) { zmq_msg_recv(&f.msg, handle, flags) }
            if outcome == .wouldBlock {
                if frames.isEmpty { return nil }
                continue  // parts of a multipart message arrive together; cannot happen
            }
            frames.append(f)
            if zmq_msg_more(&f.msg) == 0 { return frames }
        }
    }

    /// Moves one whole multipart message from this socket to `other` without
    /// copying the payloads (used by the server's frontend/backend loop).
    /// Returns false when nothing was ready.
    public func forward(to other: ZMQSocket) throws -> Bool {
        var first = true
        while true {
            var msg = zmq_msg_t()
            zmq_msg_init(&msg)
            let (_, outcome) = try zmqCall("zmq_msg_recv", endpoint: endpoint) {
                zmq_msg_recv(&msg, handle, first ? ZMQ_DONTWAIT : 0)
            }
            if outcome == .wouldBlock { zmq_msg_close(&msg); return false }
            first = false
            let more = zmq_msg_more(&msg) != 0
            do {
                let (_, sent) = try zmqCall("zmq_msg_send", endpoint: other.endpoint) {
                    zmq_msg_send(&msg, other.handle, more ? ZMQ_SNDMORE : 0)
                }
                if sent == .wouldBlock { zmq_msg_close(&msg) }
            } catch {
                zmq_msg_close(&msg)
                throw error
            }
            if !more { return true }
        }
    }
}

extension ZMQSocket {
    /// Like `forward`, but first sends a frame with the message's ZAP user
    /// id (empty without one): libzmq does not carry a frame's metadata over
    /// an inproc hop, so the server's frontend hands the role on this way.
    /// The payload frames still move without copying.
    public func forwardTaggingUserID(to other: ZMQSocket) throws -> Bool {
        guard let frames = try receive(dontWait: true) else { return false }
        let tag = ZMQFrame()
        let user = Array((frames.last?.userID ?? "").utf8)
        try zmqCall("zmq_msg_init_size", endpoint: endpoint) { zmq_msg_init_size(&tag.msg, user.count) }
        if !user.isEmpty { user.withUnsafeBytes { zmq_msg_data(&tag.msg).copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
        let all = [tag] + frames
        for (i, f) in all.enumerated() { try f.move(to: other, more: i < all.count - 1) }
        return true
    }
}

extension ZMQFrame {
    /// Sends this frame's message on `socket` without copying (libzmq empties it).
    func move(to socket: ZMQSocket, more: Bool) throws {
        try zmqCall("zmq_msg_send", endpoint: socket.endpoint) { zmq_msg_send(&msg, socket.handle, more ? ZMQ_SNDMORE : 0) }
    }
}

/// One event of a monitored socket: libzmq sends a frame of a 16-bit event
/// id and a 32-bit value, then a frame with the peer's endpoint.
public struct ZMQMonitorEvent: Sendable {
    public let event: Int32
    public let endpoint: String

    /// Nil for a message that is not an event (wrong frame count or size).
    public init?(_ frames: [ZMQFrame]) {
        guard frames.count == 2, frames[0].count >= 6 else { return nil }
        event = Int32(frames[0].withUnsafeBytes { $0.loadUnaligned(as: UInt16.self) })
        endpoint = String(decoding: frames[1].bytes, as: UTF8.self)
    }
}

/// `zmq_poll` over several sockets.
public enum ZMQPoll {
    /// Waits until one of `sockets` is readable or `timeoutMilliseconds`
    /// passes (-1 = forever). Returns which are readable.
    public static func readable(_ sockets: [ZMQSocket], timeoutMilliseconds: Int) throws -> [Bool] {
        var items = sockets.map { zmq_pollitem_t(socket: $0.handle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0) }
        let n = Int32(items.count)
        let (_, outcome) = try zmqCall("zmq_poll") { zmq_poll(&items, n, timeoutMilliseconds) }
        if outcome == .wouldBlock { return Array(repeating: false, count: sockets.count) }
        return items.map { ($0.revents & Int16(ZMQ_POLLIN)) != 0 }
    }
}
