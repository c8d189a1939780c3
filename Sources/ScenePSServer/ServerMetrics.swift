import Foundation
import Prometheus
import ScenePSMetrics
import ScenePSCore
import ScenePSProtocol

/// A parameter server's Prometheus metrics (docs/OBSERVING.md): requests by
/// type and status, their handling time, keys and bytes in and out, held
/// pushes during checkpoints, de-duplicated retries; table sizes are read at
/// scrape time (`collect`). Metrics are created once and cached by label, so
/// a request costs a few atomic adds and one histogram lock.
public final class ServerMetrics: @unchecked Sendable {
    // @unchecked: the caches are behind `lock`; the metrics themselves are thread-safe.
    let registry: PrometheusCollectorRegistry
    private let lock = Lock()
    private var requestCounters: [String: Counter] = [:]
    private var latency: [String: DurationHistogram] = [:]
    private var keyCounters: [UInt64: Counter] = [:]
    let bytesIn: Counter
    let bytesOut: Counter
    let dedupHits: Counter
    let heldPushes: Counter
    let pushStall: DurationHistogram
    let checkpointHoldSeconds: Counter
    public init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
        bytesIn = registry.counter("sceneps_server_bytes_total", labels: [("direction", "in")],
                                       help: "Request and reply bytes (frames' payloads).")
        bytesOut = registry.counter("sceneps_server_bytes_total", labels: [("direction", "out")],
                                        help: "Request and reply bytes (frames' payloads).")
        dedupHits = registry.counter("sceneps_server_dedup_hits_total",
                                         help: "Pushes acknowledged without being applied: a retry of a push already applied.")
        heldPushes = registry.counter("sceneps_server_held_pushes_total",
                                          help: "Pushes held back by a checkpoint's cut and applied after it.")
        pushStall = registry.durations("sceneps_server_push_stall_seconds",                                                    help: "How long each push held by a checkpoint's cut waited before it was applied.")
        checkpointHoldSeconds = registry.counter("sceneps_server_push_stall_seconds_total",
                                                     help: "Sum of the waits of pushes held by checkpoint cuts.")
    }

    /// One request handled: its type (`Body.kindName`, or `undecodable`/`oversized`), the reply's status, the time spent.
    func request(kind: String, status: String, nanos: UInt64, bytesIn bin: Int, bytesOut bout: Int) {
        let (c, h) = lock.withLock { () -> (Counter, DurationHistogram) in
            let key = kind + "\u{0}" + status
            let c = requestCounters[key] ?? {
                let c = registry.counter("sceneps_server_requests_total", labels: [("type", kind), ("status", status)],
                                             help: "Requests handled, by type and the reply's status (OK or the error's).")
                requestCounters[key] = c
                return c
            }()
            let h = latency[kind] ?? {
                let h = registry.durations("sceneps_server_request_seconds", labels: [("type", kind)],
                                                                                                              help: "Time from a request's frame to its encoded reply, by type (server side).")
                latency[kind] = h
                return h
            }()
            return (c, h)
        }
        c.increment()
        h.record(.nanoseconds(Int64(nanos)))
        if bin > 0 { bytesIn.increment(by: Int64(bin)) }
        if bout > 0 { bytesOut.increment(by: Int64(bout)) }
    }

    /// Keys of one table pulled or pushed.
    func keys(table: UInt32, name: String, push: Bool, count: Int) {
        guard count > 0 else { return }
        let key = UInt64(table) << 1 | (push ? 1 : 0)
        let c = lock.withLock { () -> Counter in
            if let c = keyCounters[key] { return c }
            let c = registry.counter("sceneps_server_keys_total", labels: [("table", name), ("op", push ? "push" : "pull")],
                                         help: "Sparse keys pulled and pushed (rows applied for pushes), by table.")
            keyCounters[key] = c
            return c
        }
        c.increment(by: Int64(count))
    }

    func heldPushApplied(waitedNanos: UInt64) {
        heldPushes.increment()
        pushStall.record(.nanoseconds(Int64(waitedNanos)))
        checkpointHoldSeconds.increment(by: Double(waitedNanos) / 1e9)
    }

    /// Registers the scrape-time gauges of `handler`'s tables and counters.
    public func collect(from handler: RequestHandler, on onScrape: (@escaping @Sendable () -> Void) -> Void) {
        let rowsFamily = "sceneps_server_table_rows", bytesFamily = "sceneps_server_table_bytes"
        let gauges = GaugeCache(registry: registry)
        let uptime = registry.gauge("sceneps_server_uptime_seconds", help: "Seconds since this server started.")
        let shard = registry.gauge("sceneps_server_shard", help: "This server's shard index.")
        let applyTotal = registry.counter("sceneps_server_push_apply_seconds_total",
                                              help: "Time spent applying pushes (optimiser and lookup).")
        let lastApply = ScrapeDelta()
        let lastCheckpoint = registry.gauge("sceneps_server_last_checkpoint_timestamp_seconds",
                                                help: "When this server last committed its shard of a checkpoint (Unix time; 0: none yet).")
        onScrape { [handler] in
            let s = handler.stats()
            uptime.set(s.uptimeSeconds)
            shard.set(Double(s.shardIndex))
            lastApply.advance(applyTotal, to: s.pushApplySeconds)
            for t in s.tables {
                gauges.gauge(rowsFamily, t.name, help: "Rows of each table on this server (dense: floats of its slice).").set(Double(t.rows))
                gauges.gauge(bytesFamily, t.name, help: "Bytes of each table on this server (rows, optimiser state and index).").set(Double(t.bytes))
            }
            lastCheckpoint.set(handler.checkpointer.lastCommittedAt ?? 0)
        }
    }
}

/// Gauges by (family, table), made on first use (tables are declared while the server runs).
final class GaugeCache: @unchecked Sendable {
    private let registry: PrometheusCollectorRegistry
    private let lock = Lock()
    private var gauges: [String: Gauge] = [:]
    init(registry: PrometheusCollectorRegistry) { self.registry = registry }
    func gauge(_ family: String, _ table: String, help: String) -> Gauge {
        lock.withLock {
            let key = family + "\u{0}" + table
            if let g = gauges[key] { return g }
            let g = registry.gauge(family, labels: [("table", table)], help: help)
            gauges[key] = g
            return g
        }
    }
}

