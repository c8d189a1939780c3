import Foundation
import Logging
import ScenePSClient
import ScenePSProtocol
import ScenePSTransport

/// Asks every server for a heartbeat once a second, from a thread of its own, and remembers when
/// each last answered: a server whose process runs but that nobody has heard for longer than the
/// supervisor's --server-dead-after (its host's link cut, its host frozen) is then treated as dead.
final class ServerWatch: @unchecked Sendable {
    // @unchecked: `last` and `stopped` are behind `lock`; the rest is set once.
    private let lock = NSLock()
    private var last: [Date]
    private var stopped = false

    /// `curve`: the supervisor's admin keys when the job talks CURVE (a server refuses a plain socket).
    init(endpoints: [String], curve: CurveClientKeys? = nil) {
        last = Array(repeating: Date(), count: endpoints.count)
        Thread.detachNewThread { [self] in
            var logger = Logger(label: "supervise.watch")
            logger.logLevel = .critical
            let links = endpoints.enumerated().map { i, ep in
                try? ZMQCoordinatorLink(endpoint: ep, sender: "supervise-watch-\(i)-\(getpid())",
                                        attemptTimeout: .milliseconds(800), patience: .milliseconds(800), curve: curve,
                                        logger: logger)
            }
            while !isStopped {
                let round = Date()
                for (i, l) in links.enumerated() {
                    if (try? l?.call(.heartbeat(Heartbeat()))) != nil { heard(i) }
                }
                let rest = 1 - Date().timeIntervalSince(round)
                if rest > 0 { Thread.sleep(forTimeInterval: rest) }
            }
        }
    }

    private var isStopped: Bool { lock.lock(); defer { lock.unlock() }; return stopped }
    private func heard(_ i: Int) { lock.lock(); last[i] = Date(); lock.unlock() }

    /// Seconds since server `i` last answered (or since `reset`).
    func silence(_ i: Int) -> Double { lock.lock(); defer { lock.unlock() }; return Date().timeIntervalSince(last[i]) }
    /// Server `i` was (re)started: its silence counts from now.
    func reset(_ i: Int) { heard(i) }
    func stop() { lock.lock(); stopped = true; lock.unlock() }
}
