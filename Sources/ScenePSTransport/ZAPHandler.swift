import CZeroMQ
import Foundation
import Logging
import ScenePSCore

/// The ZeroMQ authentication handler (ZAP, RFC 27) of one context: a REP
/// socket at `inproc://zeromq.zap.01` on a thread of its own. libzmq asks it
/// about every CURVE handshake on that context's server sockets; it accepts
/// a client whose public key is in the `authorized` list and answers with
/// the key's role as the ZAP user id, which libzmq then attaches to every
/// frame that client sends (`ZMQFrame.userID`). Refusals are logged at most
/// once per address per interval, with a count.
public final class ZAPHandler: @unchecked Sendable {
    // @unchecked: `stopping` is under `lock`; the socket belongs to the handler's thread.
    public static let endpoint = "inproc://zeromq.zap.01"
    /// The ZAP domain the server sockets set (ZMQ_ZAP_DOMAIN).
    public static let domain = "sceneps"
    private let socket: ZMQSocket
    private let authorized: [String: PeerRole]
    private let logger: Logger
    private let refusals: LogLimiter
    private let lock = NSLock()
    private var stopping = false
    private let done = DispatchGroup()
    /// Handshakes refused so far.
    public var refused: UInt64 { lock.withLock { refusedCount } }
    private var refusedCount: UInt64 = 0

    /// Binds the handler's socket at once (before any server socket of
    /// `context` binds), then serves on its own thread until `stop`.
    public init(context: ZMQContext, keys: CurveServerKeys, logger: Logger, logInterval: Double = 10) throws {
        authorized = keys.authorized
        self.logger = logger
        refusals = LogLimiter(interval: logInterval)
        socket = try ZMQSocket(context, type: .rep, lingerMilliseconds: 0)
        try socket.setInt(ZMQ_RCVTIMEO, 100, "zmq_setsockopt(ZMQ_RCVTIMEO)")
        try socket.bind(ZAPHandler.endpoint)
        done.enter()
        let t = Thread { [self] in
            serve()
            done.leave()
        }
        t.name = "zap-handler"
        t.start()
    }

    /// Stops the thread and closes its socket (bounded: the loop polls every 100 ms).
    public func stop() {
        lock.withLock { stopping = true }
        _ = done.wait(timeout: .now() + 2)
    }

    private func serve() {
        defer { socket.close() }
        while !lock.withLock({ stopping }) {
            do {
                guard let frames = try socket.receive() else {
                    for (address, held) in refusals.due() {
                        logger.warning("CURVE handshakes refused", metadata: ["ps.address": "\(address)", "ps.held_back": "\(held)"])
                    }
                    continue
                }
                try socket.send(reply(frames))
            } catch {
                logger.error("ZAP handler failed; no new client can connect", metadata: ["ps.error": "\(error)"])
                return
            }
        }
    }

    /// The answer to one ZAP request: [version, request id, domain, address,
    /// routing id, mechanism, credentials...].
    func reply(_ f: [ZMQFrame]) -> [ZMQOutgoingFrame] {
        let version = f.first?.bytes ?? []
        let requestID = f.count > 1 ? f[1].bytes : []
        func answer(_ code: String, _ text: String, user: String = "") -> [ZMQOutgoingFrame] {
            [.bytes(Array("1.0".utf8)), .bytes(requestID), .bytes(Array(code.utf8)), .bytes(Array(text.utf8)),
             .bytes(Array(user.utf8)), .bytes([])]
        }
        guard f.count >= 6, version == Array("1.0".utf8) else { return answer("500", "malformed ZAP request") }
        let address = String(decoding: f[3].bytes, as: UTF8.self)
        let mechanism = String(decoding: f[5].bytes, as: UTF8.self)
        var why = ""
        if mechanism != "CURVE" {
            why = "mechanism \(mechanism) (this server accepts CURVE only)"
        } else if f.count < 7 || f[6].count != 32 {
            why = "CURVE credentials are not a 32-byte key"
        } else {
            let key = CurveKeys.encode(f[6].bytes)
            if let role = authorized[key] { return answer("200", "OK", user: role.rawValue) }
            why = "public key \(key) is not in the authorized list"
        }
        lock.withLock { refusedCount &+= 1 }
        if case .log(let held) = refusals.admit(address) {
            logger.warning("CURVE handshake refused", metadata: [
                "ps.address": "\(address)", "ps.reason": "\(why)", "ps.held_back": "\(held)",
            ])
        }
        return answer("400", why)
    }
}

extension ZMQSocket {
    /// Makes this (not yet bound) socket a CURVE server whose handshakes
    /// `ZAPHandler` of the same context decides.
    public func makeCurveServer(_ keys: CurveServerKeys) throws {
        try setBytes(ZMQ_ZAP_DOMAIN, Array(ZAPHandler.domain.utf8), "zmq_setsockopt(ZMQ_ZAP_DOMAIN)")
        try setInt(ZMQ_CURVE_SERVER, 1, "zmq_setsockopt(ZMQ_CURVE_SERVER)")
        try setBytes(ZMQ_CURVE_SECRETKEY, keys.server.secretKey, "zmq_setsockopt(ZMQ_CURVE_SECRETKEY)")
    }

    /// Makes this (not yet connected) socket a CURVE client.
    public func makeCurveClient(_ keys: CurveClientKeys) throws {
        try setBytes(ZMQ_CURVE_SERVERKEY, keys.serverPublicKey, "zmq_setsockopt(ZMQ_CURVE_SERVERKEY)")
        try setBytes(ZMQ_CURVE_PUBLICKEY, keys.client.publicKey, "zmq_setsockopt(ZMQ_CURVE_PUBLICKEY)")
        try setBytes(ZMQ_CURVE_SECRETKEY, keys.client.secretKey, "zmq_setsockopt(ZMQ_CURVE_SECRETKEY)")
    }
}

extension ZMQFrame {
    /// The ZAP user id of the connection this frame came in on (the role a
    /// `ZAPHandler` gave its key); nil without ZAP.
    public var userID: String? {
        guard let p = zmq_msg_gets(&msg, "User-Id") else { return nil }
        return String(cString: p)
    }
}
