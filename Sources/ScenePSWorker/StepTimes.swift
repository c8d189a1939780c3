import Foundation

/// Where a worker's time goes, summed over its life: seconds per stage of
/// the step loop (monotonic clock, two reads per stage), the time spent
/// waiting by reason, and counts of what the pipeline did (`steps`;
/// `stale_steps` whose rows may miss one of this worker's own pushes, and
/// `stale_pushes`, how many: `Trainer.train`). Reported cumulatively with every
/// lease request, so a retried or lost report costs nothing; the
/// coordinator sums the members' latest reports into summary.json
/// (`worker_seconds`, `waits`, `busy_fraction`, `pipeline`).
///
/// Stages (docs/PERFORMANCE.md): `batch` (read and shuffle samples, index
/// keys), `pull_send`, `gather`, `compute` (forward and backward),
/// `scatter` (per-row gradient sums), `push_send`, `other` (progress,
/// loss check). Waits: `pull` (until the rows arrive, and their decode),
/// `push` (until the servers acknowledge a push), `align` (progress reports
/// and the waits of progress alignment), `lease` (lease round trips and
/// the waits the coordinator asks for: an epoch being evaluated, nothing to
/// lease).
public final class StepTimes: @unchecked Sendable {
    // @unchecked: every field is behind `lock` (the beat thread never touches it; the
    // lease loop and the trainer run on one thread, the lock only guards a reader).
    private let lock = NSLock()
    private var seconds: [String: Double] = [:]
    private var counts: [String: Double] = [:]

    public static let busyStages = ["batch", "pull_send", "gather", "compute", "scatter", "push_send", "other"]
    public static let waitReasons = ["pull", "push", "align", "lease"]

    public init() {}

    /// Runs `body`, adding its duration to `stage` (a stage name, or `wait.REASON`).
    @inline(__always)
    public func time<R>(_ stage: String, _ body: () throws -> R) rethrows -> R {
        let t0 = DispatchTime.now().uptimeNanoseconds
        defer { add(stage, Double(DispatchTime.now().uptimeNanoseconds &- t0) * 1e-9) }
        return try body()
    }

    public func add(_ stage: String, _ s: Double) {
        lock.lock()
        seconds[stage, default: 0] += s
        lock.unlock()
    }

    public func count(_ name: String, _ n: Double = 1) {
        lock.lock()
        counts[name, default: 0] += n
        lock.unlock()
    }

    /// Every stage's seconds and every count, as the lease request carries
    /// them: seconds under their stage name, counts under `count.NAME`.
    public var snapshot: [String: Double] {
        lock.lock()
        defer { lock.unlock() }
        var out = seconds
        for (k, v) in counts { out["count." + k] = v }
        return out
    }

    public func seconds(_ stage: String) -> Double {
        lock.lock()
        defer { lock.unlock() }
        return seconds[stage] ?? 0
    }
}
