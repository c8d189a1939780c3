import Foundation

/// At most one log line per key (a peer) per interval, with the count of
/// what was held back (docs/SECURITY.md, "Noise"): a flood of garbage or of
/// refused requests costs a line per peer per interval, not a line per
/// message, so it cannot fill the disk. Thread-safe.
///
///     switch limiter.admit(peer) { case .log(let held): log(..., "held back": held) ; case .quiet: break }
public final class LogLimiter: @unchecked Sendable {
    // @unchecked: all state is under `lock`.
    public enum Verdict: Equatable, Sendable {
        /// Log this one; `heldBack` earlier events of the key were not logged since its last line.
        case log(heldBack: UInt64)
        /// Counted, not logged.
        case quiet
    }

    public let interval: Double
    /// Keys tracked at once; past it, new keys share one entry (`LogLimiter.otherPeers`), so
    /// a flood from many addresses is bounded too.
    public let maxKeys: Int
    public static let otherPeers = "(other peers)"
    private let lock = NSLock()
    private var entries: [String: (last: Double, held: UInt64)] = [:]
    private let clock: () -> Double
    private var lastSweep = -Double.infinity

    public init(interval: Double = 10, maxKeys: Int = 1024, clock: @escaping () -> Double = { Date().timeIntervalSince1970 }) {
        precondition(interval > 0 && maxKeys > 0)
        self.interval = interval
        self.maxKeys = maxKeys
        self.clock = clock
    }

    /// One event of `key`: log it, or count it.
    public func admit(_ key: String) -> Verdict {
        let now = clock()
        return lock.withLock {
            var k = key
            if entries[k] == nil && entries.count >= maxKeys {
                prune(now)
                if entries.count >= maxKeys { k = LogLimiter.otherPeers }
            }
            guard let e = entries[k] else {
                entries[k] = (now, 0)
                return .log(heldBack: 0)
            }
            if now - e.last >= interval {
                entries[k] = (now, 0)
                return .log(heldBack: e.held)
            }
            entries[k] = (e.last, e.held + 1)
            return .quiet
        }
    }

    /// Keys whose interval passed with events held back, and their counts,
    /// forgotten as they are returned: the caller logs one line for each
    /// (so the last burst of a flood is reported even when nothing follows it).
    /// Cheap enough to call after every request: it looks at most once a second.
    public func due() -> [(key: String, heldBack: UInt64)] {
        let now = clock()
        return lock.withLock {
            guard !entries.isEmpty, now - lastSweep >= min(1, interval) else { return [] }
            lastSweep = now
            var out: [(String, UInt64)] = []
            for (k, e) in entries where now - e.last >= interval && e.held > 0 {
                out.append((k, e.held))
                entries[k] = (now, 0)
            }
            prune(now)
            return out.sorted { $0.0 < $1.0 }
        }
    }

    /// Drops keys quiet for a whole interval with nothing held back (under `lock`).
    private func prune(_ now: Double) {
        entries = entries.filter { now - $0.value.last < interval || $0.value.held > 0 }
    }
}
