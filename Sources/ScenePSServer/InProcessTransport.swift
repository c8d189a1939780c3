import Foundation
import ScenePSCore
import ScenePSTransport

/// `ServerTransport` without sockets: each request frame goes straight to
/// its server's `RequestHandler` (the same decode, validate, apply and
/// encode as over ZeroMQ) and the reply waits in an inbox for `receive`.
/// Client logic (routing, retries, de-duplication across retries, bad
/// replies) is unit-tested through it, and `psctl evaluate --checkpoint`
/// scores a checkpoint with it. `drop` loses chosen requests or replies, as a
/// network would.
public final class InProcessTransport: ServerTransport {
    public let endpoints: [String]
    private let handlers: [RequestHandler]
    private var inbox: [[MallocBuffer]]
    /// Decides per message whether it is lost: `(server, isReply)` → true to
    /// drop it. Nil: nothing is lost.
    public var drop: ((_ server: Int, _ isReply: Bool) -> Bool)?
    /// Requests each server received (lost ones not counted).
    public private(set) var delivered: [Int]
    private var losses: [UInt64]
    /// Servers whose connection was lost since `receive` last returned.
    private var unreported: Set<Int> = []

    /// One handler per server, in shard order.
    public init(handlers: [RequestHandler]) {
        precondition(!handlers.isEmpty)
        self.handlers = handlers
        endpoints = handlers.indices.map { "inproc-server-\($0)" }
        inbox = handlers.map { _ in [] }
        delivered = handlers.map { _ in 0 }
        losses = handlers.map { _ in 0 }
    }

    /// The handlers of `servers` (not started: no sockets are opened).
    public convenience init(servers: [PSServer]) {
        self.init(handlers: servers.map(\.handler))
    }

    public func send(_ message: MallocBuffer, to server: Int) throws -> Bool {
        if drop?(server, false) == true { return true }   // lost on the way: the sender cannot tell
        delivered[server] += 1
        let outcome = message.withUnsafeBytes {
            handlers[server].handleRouted(frame: $0, peer: endpoints[server], route: [[UInt8(truncatingIfNeeded: server)]])
        }
        if let reply = outcome.reply { post(reply, from: server) }
        for r in outcome.extra + handlers[server].tick() { post(r.bytes, from: server) }
        return true
    }

    /// What a ZeroMQ client sees when a server dies: the connection to
    /// `server` drops, and the replies it had not delivered yet with it.
    public func loseConnection(_ server: Int) {
        inbox[server].removeAll()
        losses[server] += 1
        unreported.insert(server)
    }

    public func connectionLosses(of server: Int) -> UInt64 { losses[server] }

    public func receive(from servers: [Int], timeout: Duration, _ body: (Int, UnsafeRawBufferPointer) throws -> Void) throws {
        let deadline = ContinuousClock.now + timeout
        while true {
            if !unreported.isDisjoint(with: servers) {
                unreported.subtract(servers)
                return
            }
            var any = false
            for s in servers {
                for r in handlers[s].tick() { post(r.bytes, from: s) }   // held pushes whose hold expired
                let ready = inbox[s]
                inbox[s].removeAll()
                for m in ready {
                    any = true
                    try m.withUnsafeBytes { try body(s, $0) }
                }
            }
            if any || ContinuousClock.now >= deadline { return }
            // Nothing yet: a push held by a checkpoint's cut is answered when the hold ends.
            Thread.sleep(forTimeInterval: min(0.005, max(0, (deadline - .now).seconds)))
        }
    }

    private func post(_ reply: MallocBuffer, from server: Int) {
        if drop?(server, true) == true { return }
        inbox[server].append(reply)
    }
}

extension Duration {
    /// The duration in seconds, as a Double.
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
