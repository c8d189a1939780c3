import Foundation
import Logging
import ScenePSCore
import ScenePSProtocol
import ScenePSTransport

/// How a member talks to the coordinator: one request, one reply. The seam
/// between the members' logic and the network: `ZMQCoordinatorLink` sends
/// over ZeroMQ; tests pass a closure that calls a `Coordinator` directly.
public protocol CoordinatorLink: AnyObject {
    /// Sends `body` and returns the reply's body. ErrorReply comes back as a
    /// value (callers decide); a coordinator that does not answer within the
    /// link's patience throws `.timeout`.
    func call(_ body: Body) throws -> Body
}

/// A link that calls a function in-process (tests, and anything that holds the coordinator itself).
public final class InProcessCoordinatorLink: CoordinatorLink {
    let handler: (Body) -> Body
    public init(_ handler: @escaping (Body) -> Body) { self.handler = handler }
    public func call(_ body: Body) throws -> Body { handler(body) }
}

/// A DEALER socket to the coordinator. Each request is resent under the
/// same request id every `attemptTimeout` until `patience` has passed (the
/// coordinator answers a repeated id from its cache, so a retry is never
/// applied twice), which rides out a coordinator restart. Not thread-safe:
/// one thread per link.
public final class ZMQCoordinatorLink: CoordinatorLink {
    public let endpoint: String
    public let sender: String
    let attemptTimeout: Duration
    let patience: Duration
    private let context: ZMQContext
    private let socket: ZMQSocket
    private var nextID: UInt64
    private let logger: Logger

    /// - curve: connect as this CURVE client (nil: plain TCP).
    public init(endpoint: String, sender: String, attemptTimeout: Duration = .seconds(2), patience: Duration = .seconds(60),
                curve: CurveClientKeys? = nil, logger: Logger) throws {
        self.endpoint = endpoint
        self.sender = sender
        self.attemptTimeout = attemptTimeout
        self.patience = patience
        self.logger = logger
        context = try ZMQContext(ioThreads: 1)
        socket = try ZMQSocket(context, type: .dealer, lingerMilliseconds: 0)
        try socket.setHighWaterMarks(send: 100, receive: 100)
        if let curve { try socket.makeCurveClient(curve) }
        try socket.connect(endpoint)
        nextID = UInt64(max(1, Date().timeIntervalSince1970 * 1e6))
    }

    deinit { socket.close() }

    /// Checked before every resend: true ends the wait at once (`.timeout`), e.g. when the caller knows
    /// the coordinator process died, so a new request must go to its successor.
    public var abandon: (() -> Bool)?

    public func call(_ body: Body) throws -> Body {
        nextID &+= 1
        let id = nextID
        let frame = WireCodec.encode(Envelope(requestID: id, sender: sender, body: body))
        let giveUp = ContinuousClock.now + patience
        var attempts = 0
        while ContinuousClock.now < giveUp {
            if attempts > 0, let abandon, abandon() {
                throw ScenePSError(.timeout, "the wait for the coordinator at \(endpoint) to answer \(body.kindName) was abandoned (\(attempts) attempts)")
            }
            attempts += 1
            _ = try socket.send(bytes: frame, dontWait: true)
            let deadline = min(ContinuousClock.now + attemptTimeout, giveUp)
            while ContinuousClock.now < deadline {
                let left = deadline - ContinuousClock.now
                let ms = max(1, Int(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000))
                guard try ZMQPoll.readable([socket], timeoutMilliseconds: ms)[0] else { continue }
                while let frames = try socket.receive(dontWait: true) {
                    guard let payload = frames.last else { continue }
                    let env: Envelope
                    do {
                        env = try payload.withUnsafeBytes { b throws(WireDecodingError) in try WireCodec.decode(b) }
                    } catch {
                        throw ScenePSError(.protocolError, "the coordinator at \(endpoint) sent an undecodable reply to \(body.kindName): \(error)")
                    }
                    if env.requestID == id { return env.body }   // older ids: replies to given-up attempts
                }
            }
            if attempts == 1 {
                logger.warning("the coordinator does not answer; retrying", metadata: ["endpoint": "\(endpoint)", "request": "\(body.kindName)"])
            }
        }
        throw ScenePSError(.timeout, "the coordinator at \(endpoint) did not answer \(body.kindName) within \(patience) (\(attempts) attempts)")
    }
}

/// Typed calls over a link; ErrorReply becomes `CoordinatorError`.
public struct CoordinatorCalls {
    public let link: CoordinatorLink
    public init(_ link: CoordinatorLink) { self.link = link }

    public func register(_ r: Register) throws -> RegisterReply {
        let reply = try link.call(.register(r))
        guard case .registerReply(let x) = reply else { throw CoordinatorError.from(reply, "register") }
        return x
    }

    public func lease(_ r: LeaseRequest) throws -> LeaseReply {
        let reply = try link.call(.leaseRequest(r))
        guard case .leaseReply(let x) = reply else { throw CoordinatorError.from(reply, "lease request") }
        return x
    }

    public func beat(_ b: MemberBeat) throws -> MemberBeatReply {
        let reply = try link.call(.memberBeat(b))
        guard case .memberBeatReply(let x) = reply else { throw CoordinatorError.from(reply, "beat") }
        return x
    }

    public func scale(scene: String, workers: Int) throws {
        let reply = try link.call(.scale(ScaleRequest(scene: scene, workers: Int32(clamping: workers))))
        guard case .ack = reply else { throw CoordinatorError.from(reply, "scale") }
    }

    public func leave(memberID: UInt64, reason: String) throws {
        let reply = try link.call(.leave(LeaveRequest(memberID: memberID, reason: reason)))
        guard case .ack = reply else { throw CoordinatorError.from(reply, "leave") }
    }

    public func status() throws -> StatusReply {
        let reply = try link.call(.status)
        guard case .statusReply(let x) = reply else { throw CoordinatorError.from(reply, "status") }
        return x
    }

    /// An on-demand checkpoint: ticket 0 asks for one, another asks how that one went.
    public func checkpoint(_ r: CoordinatorCheckpointRequest) throws -> CoordinatorCheckpointReply {
        let reply = try link.call(.coordinatorCheckpoint(r))
        guard case .coordinatorCheckpointReply(let x) = reply else { throw CoordinatorError.from(reply, "checkpoint request") }
        return x
    }

    /// Global recovery: begin, rewind to a checkpoint, or abort.
    public func recovery(_ r: RecoveryRequest) throws -> RecoveryReply {
        let reply = try link.call(.recovery(r))
        guard case .recoveryReply(let x) = reply else { throw CoordinatorError.from(reply, "recovery request") }
        return x
    }
}

/// A coordinator's refusal, typed.
public enum CoordinatorError: Error, CustomStringConvertible, Equatable {
    /// The member is not registered (any more): register again.
    case unknownMember(String)
    /// Any other refusal: its status and message.
    case refused(Status, String)
    /// A reply of the wrong kind.
    case unexpected(String)

    static func from(_ body: Body, _ what: String) -> CoordinatorError {
        if case .error(let e) = body {
            return e.status == .unknownMember ? .unknownMember(e.message) : .refused(e.status, e.message)
        }
        return .unexpected("the coordinator answered \(what) with \(body.kindName)")
    }

    public var description: String {
        switch self {
        case .unknownMember(let m): return "coordinator: \(m)"
        case .refused(let s, let m): return "coordinator refused (\(s)): \(m)"
        case .unexpected(let m): return m
        }
    }
}
