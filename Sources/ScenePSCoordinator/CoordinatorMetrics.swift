import Foundation
import Prometheus
import ScenePSMetrics

/// The coordinator's Prometheus metrics (docs/OBSERVING.md): requests by type
/// and status, and, read from its state at scrape time, the epoch and phase,
/// members and chunks by state per scene, restarts, the schedule's best
/// validation AUC, checkpoints, and the recovery debt of global rollbacks.
public final class CoordinatorMetrics: @unchecked Sendable {
    // @unchecked: the caches are behind `lock`.
    let registry: PrometheusCollectorRegistry
    private let lock = NSLock()
    private var requests: [String: Counter] = [:]
    private var gauges: [String: Gauge] = [:]

    public init(registry: PrometheusCollectorRegistry) { self.registry = registry }

    func request(kind: String, status: String) {
        let key = kind + "\u{0}" + status
        lock.withLock {
            requests[key] ?? {
                let c = registry.counter("sceneps_coordinator_requests_total", labels: [("type", kind), ("status", status)],
                                         help: "Requests the coordinator answered, by type and the reply's status.")
                requests[key] = c
                return c
            }()
        }.increment()
    }

    /// Gauges by name and labels, made on first use; `help` per family.
    func gauge(_ name: String, _ labels: [(String, String)] = [], _ help: String) -> Gauge {
        let key = ([name] + labels.map { $0.0 + "=" + $0.1 }).joined(separator: "\u{0}")
        return lock.withLock {
            if let g = gauges[key] { return g }
            let g = registry.gauge(name, labels: labels, help: help)
            gauges[key] = g
            return g
        }
    }

    /// Sets every state gauge from the coordinator (called under the service's lock).
    func publish(_ c: Coordinator, checkpointing: Bool, now: Double) {
        let j = c.journal
        gauge("sceneps_coordinator_epoch", [], "The epoch being trained (or evaluated).").set(Double(j.epoch))
        for p in ["training", "evaluating", "done"] {
            gauge("sceneps_coordinator_phase", [("phase", p)], "1 for the coordinator's phase, 0 for the others.")
                .set(j.phase.rawValue == p ? 1.0 : 0.0)
        }
        gauge("sceneps_coordinator_members", [], "Members (workers) registered and alive.").set(Double(j.members.count))
        for s in c.plan.scenes.indices {
            let name = c.plan.scenes[s].name
            let done = c.doneSet(s).count, leased = j.leases.filter { $0.scene == s }.count
            let total = c.plan.scenes[s].chunks.count
            gauge("sceneps_coordinator_scene_members", [("scene", name)], "Members training each scene.").set(Double(c.members(of: s).count))
            gauge("sceneps_coordinator_scene_pool_target", [("scene", name)], "Each scene's pool size asked for (-1: unset).")
                .set(Double(j.targets[name] ?? -1))
            for (state, n) in [("done", done), ("leased", leased), ("queued", max(0, total - done - leased))] {
                gauge("sceneps_coordinator_chunks", [("scene", name), ("state", state)],
                      "This epoch's chunks of each scene by state: done, leased (a lease in flight), queued.").set(Double(n))
            }
            gauge("sceneps_coordinator_scene_progress", [("scene", name)], "Fraction of each scene's epoch trained.")
                .set(c.progress(scene: s))
        }
        let restarts = j.restarts.values.reduce(0, +)
        gauge("sceneps_coordinator_restarts", [], "Processes restarted (a new incarnation registered under a known name), in all.")
            .set(Double(restarts))
        gauge("sceneps_coordinator_starts", [], "Times the coordinator started on this run directory.").set(Double(j.coordinatorStarts))
        gauge("sceneps_coordinator_dead_members", [], "Members declared dead that have not registered again.").set(Double(j.died.count))
        let released = j.epochs.reduce(0) { $0 + $1.released }, retrained = j.epochs.reduce(0) { $0 + $1.retrained }
        gauge("sceneps_coordinator_leases_released", [], "Leases taken back (dead members, rollbacks), all epochs.").set(Double(released))
        gauge("sceneps_coordinator_examples_retrained", [], "Examples trained again because their lease was taken back, all epochs.")
            .set(Double(retrained))
        if let best = j.schedule.bestAUC {
            gauge("sceneps_coordinator_best_valid_auc", [], "The schedule's best validation AUC so far.").set(best)
        }
        if let e = j.schedule.bestEpoch {
            gauge("sceneps_coordinator_best_epoch", [], "The epoch of the best validation AUC.").set(Double(e))
        }
        gauge("sceneps_coordinator_lr_level", [], "The learning-rate schedule's decay level (0: the configured rates).").set(Double(j.schedule.level))
        if let last = j.schedule.epochs.last, let auc = last.validAUC {
            gauge("sceneps_coordinator_last_valid_auc", [], "The validation AUC of the last epoch evaluated.").set(auc)
        }
        let rewinds = j.rewinds ?? []
        gauge("sceneps_coordinator_rollbacks", [], "Global rollbacks to a checkpoint (a server died).").set(Double(rewinds.count))
        gauge("sceneps_coordinator_recovery_examples_undone", [], "Recovery debt: examples whose training global rollbacks undid, in all.")
            .set(Double(rewinds.reduce(0) { $0 + $1.examplesUndone }))
        gauge("sceneps_coordinator_recovery_chunks_undone", [], "Recovery debt: chunks global rollbacks undid, in all.")
            .set(Double(rewinds.reduce(0) { $0 + $1.chunksUndone }))
        gauge("sceneps_coordinator_recovering", [], "1 while a global recovery holds the leases (between BEGIN and REWIND).")
            .set(c.recoveringSince == nil ? 0.0 : 1.0)
        gauge("sceneps_coordinator_checkpoints", [], "Checkpoints the coordinator took (pruned ones included).").set(Double(j.checkpoints.count))
        gauge("sceneps_coordinator_checkpointing", [], "1 while a checkpoint is being taken.").set(checkpointing ? 1.0 : 0.0)
        if let last = j.checkpoints.last {
            gauge("sceneps_coordinator_last_checkpoint_timestamp_seconds", [], "When the last checkpoint was taken (Unix time).").set(last.time)
            gauge("sceneps_coordinator_last_checkpoint_push_stall_seconds", [], "The longest push stall of the last checkpoint.")
                .set(last.pushStallMs / 1000)
            gauge("sceneps_coordinator_last_checkpoint_bytes", [], "Bytes of the last checkpoint.").set(Double(last.bytes))
        }
    }
}
