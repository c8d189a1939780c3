import Foundation
import Prometheus
import ScenePSMetrics

/// A client's Prometheus metrics (docs/OBSERVING.md): each request's latency
/// from send to its last reply (client side, retries included), its outcome,
/// the time the caller was blocked in `wait`, and retries. Used by the one
/// thread that uses its `PSClient`; the metrics themselves are thread-safe.
public final class ClientMetrics: @unchecked Sendable {
    // @unchecked: the caches are touched only by the client's thread.
    let registry: PrometheusCollectorRegistry
    let waitName: String, waitLabel: String
    private var latency: [String: DurationHistogram] = [:]
    private var outcomes: [String: Counter] = [:]
    private var waits: [String: Counter] = [:]
    private var retries: [String: Counter] = [:]

    /// `waitName{waitLabel=op}` counts the seconds blocked in `wait` (a worker names it its wait by reason).
    public init(registry: PrometheusCollectorRegistry, waitName: String = "sceneps_client_wait_seconds_total",
                waitLabel: String = "op") {
        self.registry = registry
        self.waitName = waitName
        self.waitLabel = waitLabel
    }

    func completed(_ op: String, sentAt: ContinuousClock.Instant, waitFrom: ContinuousClock.Instant, outcome: String) {
        let now = ContinuousClock.now
        let h = latency[op] ?? {
            let h = registry.durations("sceneps_client_request_seconds", labels: [("op", op)],
                                       help: "Client side: from a request's send to its last server's reply, retries included.")
            latency[op] = h
            return h
        }()
        h.record(now - sentAt)
        let key = op + "\u{0}" + outcome
        (outcomes[key] ?? {
            let c = registry.counter("sceneps_client_requests_total", labels: [("op", op), ("outcome", outcome)],
                                     help: "Requests this client completed, by operation and outcome (ok, rejected, timeout, error).")
            outcomes[key] = c
            return c
        }()).increment()
        let w = now - waitFrom
        (waits[op] ?? {
            let c = registry.counter(waitName, labels: [(waitLabel, op)],
                                     help: "Seconds the caller was blocked waiting for the servers' replies, by operation.")
            waits[op] = c
            return c
        }()).increment(by: Double(w.components.seconds) + Double(w.components.attoseconds) / 1e18)
    }

    func retried(_ op: String) {
        (retries[op] ?? {
            let c = registry.counter("sceneps_client_retries_total", labels: [("op", op)],
                                     help: "Requests sent again after a timeout or a lost connection.")
            retries[op] = c
            return c
        }()).increment()
    }
}
