import Foundation

/// The training workers' progress through the current epoch, as reported in
/// heartbeats: sender → (epoch, fraction done, when heard).
///
/// Workers are grouped by scene and a scene's workers see only its rows, so
/// without coordination the workers of a small scene finish their share of
/// the epoch first and the end of every epoch trains on the large scenes
/// alone. A worker that is more than a configured lead ahead of the slowest
/// peer of its epoch waits (see `Trainer`); the board answers "how far is the
/// slowest". A worker not heard from for `staleAfter` seconds (it died, or it
/// is between epochs) no longer holds the others back.
public final class ProgressBoard: @unchecked Sendable {
    // @unchecked: all state is behind `lock`.
    private struct Entry { var epoch: UInt32; var progress: Double; var seen: TimeInterval }
    private let lock = Lock()
    private var entries: [String: Entry] = [:]
    public let staleAfter: TimeInterval

    public init(staleAfter: TimeInterval = 30) { self.staleAfter = staleAfter }

    /// Records `sender`'s progress and returns the peers of its epoch heard
    /// from within `staleAfter` (itself included) and their smallest progress.
    public func report(sender: String, epoch: UInt32, progress: Double,
                       now: TimeInterval = ProcessInfo.processInfo.systemUptime) -> (count: Int, minProgress: Double) {
        lock.withLock {
            entries[sender] = Entry(epoch: epoch, progress: progress, seen: now)
            var count = 0, least = progress
            var stale: [String] = []
            for (name, e) in entries {
                if now - e.seen > staleAfter || e.epoch < epoch { stale.append(name); continue }
                guard e.epoch == epoch else { continue }
                count += 1
                least = min(least, e.progress)
            }
            for name in stale { entries[name] = nil }
            return (count, least)
        }
    }
}
