import Foundation
import Logging
import Prometheus
import ScenePSCore
import ScenePSMetrics

/// Metrics for a supervised job (`psctl supervise --metrics-base-port P`,
/// docs/OBSERVING.md): the supervisor serves its own on P and gives every
/// process it starts a port of its own, P+1 on (a process keeps its port
/// across restarts). The list of targets is kept in
/// RUN_DIR/metrics/targets.json, in Prometheus's file_sd format, so a
/// Prometheus with `file_sd_configs` on that file scrapes the whole job.
final class SupervisorObservation {
    let endpoint: MetricsEndpoint
    let host: String
    let base: Int
    let runDir: String
    private var ports: [String: Int] = [:]
    private var nextPort: Int
    private var lastTargets: [String] = []
    private var gauges: [String: Gauge] = [:]
    private let registry: PrometheusCollectorRegistry

    init(basePort: Int, host: String, runDir: String, logger: Logger) throws {
        registry = PrometheusCollectorRegistry()
        endpoint = try MetricsEndpoint(registry: registry, host: host, port: basePort, flag: "--metrics-base-port", logger: logger)
        ProcessMetrics.register(on: endpoint)
        self.host = host
        base = basePort
        nextPort = basePort + 1
        self.runDir = runDir
    }

    var targetsFile: String { (runDir as NSString).appendingPathComponent("metrics/targets.json") }

    /// The metrics port of process `name` (the same one again after its restart).
    func port(for name: String) -> Int {
        if let p = ports[name] { return p }
        let p = nextPort
        nextPort += 1
        ports[name] = p
        return p
    }

    /// The flags that give `name` its metrics port.
    func arguments(for name: String) -> [String] {
        ["--metrics-port", "\(port(for: name))", "--metrics-host", host]
    }

    /// Fails fast, naming the port and the process, when a port the job's first processes will use is taken.
    func checkFree(_ names: [String]) throws {
        for n in names {
            let p = port(for: n)
            do {
                let probe = try MetricsEndpoint(registry: PrometheusCollectorRegistry(), host: host, port: p,
                                                flag: "--metrics-base-port \(base) (\(n)'s port)", logger: Logger(label: "probe"))
                probe.stop()
            } catch {
                throw ScenePSError.invalidArgument("\(error)")
            }
        }
    }

    private func gauge(_ name: String, _ labels: [(String, String)], _ help: String) -> Gauge {
        let key = ([name] + labels.map { $0.0 + "=" + $0.1 }).joined(separator: "\u{0}")
        if let g = gauges[key] { return g }
        let g = registry.gauge(name, labels: labels, help: help)
        gauges[key] = g
        return g
    }

    /// Updates the supervisor's gauges and the targets file from what it runs (the supervisor's loop).
    func publish(_ s: Supervisor) {
        func alive(_ cs: [Child]) -> Double { Double(cs.filter { $0.exitStatus == nil }.count) }
        gauge("sceneps_supervisor_processes", [("role", "server")], "Processes running, by role.").set(alive(s.servers))
        gauge("sceneps_supervisor_processes", [("role", "worker")], "Processes running, by role.").set(alive(s.workers))
        gauge("sceneps_supervisor_processes", [("role", "coordinator")], "Processes running, by role.")
            .set(alive([s.coordinator].compactMap { $0 }))
        for (name, n) in s.restarts {
            gauge("sceneps_supervisor_restarts", [("process", name)], "Times the supervisor restarted each process.").set(Double(n))
        }
        gauge("sceneps_supervisor_restarts_all", [], "Restarts of every process, in all.").set(Double(s.restarts.values.reduce(0, +)))
        for policy in ["partial", "global"] {
            let rs = s.recoveries.filter { $0["policy"] == policy }
            gauge("sceneps_supervisor_server_recoveries", [("policy", policy)], "Servers restored from a checkpoint after dying, by policy.")
                .set(Double(rs.count))
            gauge("sceneps_supervisor_recovery_pushes_undone", [("policy", policy)],
                  "Recovery debt: pushes acknowledged after the restored cut (undone by the restore), in all.")
                .set(Double(rs.compactMap { $0["pushes_undone"].flatMap { UInt64($0) } }.reduce(0, +)))
        }
        gauge("sceneps_supervisor_uptime_seconds", [], "Seconds since the supervisor started.").set(Date().timeIntervalSince(s.started))
        writeTargets([("supervisor", "supervisor", endpoint.port)] + running(s))
    }

    private func running(_ s: Supervisor) -> [(String, String, Int)] {
        var out: [(String, String, Int)] = []
        for c in s.servers where c.exitStatus == nil { if let p = ports[c.name] { out.append((c.name, "ps-server", p)) } }
        if let c = s.coordinator, c.exitStatus == nil, let p = ports[c.name] { out.append((c.name, "coordinator", p)) }
        for c in s.workers where c.exitStatus == nil { if let p = ports[c.name] { out.append((c.name, "worker", p)) } }
        return out
    }

    /// RUN_DIR/metrics/targets.json: one file_sd group per process (labels `job` and `process`), rewritten when it changes.
    private func writeTargets(_ list: [(name: String, job: String, port: Int)]) {
        let key = list.map { "\($0.name)@\($0.port)" }
        guard key != lastTargets else { return }
        lastTargets = key
        let host = self.host == "0.0.0.0" ? "127.0.0.1" : self.host
        let groups: [[String: Any]] = list.map {
            ["targets": ["\(host):\($0.port)"], "labels": ["job": "sceneps-\($0.job)", "process": $0.name]]
        }
        guard let d = try? JSONSerialization.data(withJSONObject: groups, options: [.prettyPrinted, .sortedKeys]) else { return }
        try? FileManager.default.createDirectory(atPath: (runDir as NSString).appendingPathComponent("metrics"), withIntermediateDirectories: true)
        try? JSONFile.writeAtomically(d, to: targetsFile)
    }
}
