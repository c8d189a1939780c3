import CZeroMQ
import ScenePSCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What a wrapped libzmq call reports besides success.
public enum ZMQOutcome: Sendable {
    case done
    /// EAGAIN: nothing to receive / cannot send now (non-blocking or timeout).
    case wouldBlock
}

/// The one wrapper for every libzmq call that returns -1 on failure
/// (swift-nio's `syscall(blocking:where:)`): retries EINTR, maps EAGAIN to
/// `.wouldBlock`, throws a `ScenePSError(.transport)` naming the call and the
/// endpoint otherwise.
@inline(__always)
@discardableResult
func zmqCall(_ name: StaticString, endpoint: String = "", _ body: () -> Int32) throws -> (Int32, ZMQOutcome) {
    while true {
        let rc = body()
        if rc >= 0 { return (rc, .done) }
        let err = zmq_errno()
        if err == EINTR { continue }
        if err == EAGAIN { return (rc, .wouldBlock) }
        throw ZMQError.make(name, endpoint: endpoint, errno: err)
    }
}

public enum ZMQError {
    static func make(_ name: StaticString, endpoint: String, errno err: Int32) -> ScenePSError {
        let text = String(cString: zmq_strerror(err))
        let at = endpoint.isEmpty ? "" : " (endpoint \(endpoint))"
        return ScenePSError(.transport, "\(name) failed\(at): \(text) [errno \(err)]")
    }
}
