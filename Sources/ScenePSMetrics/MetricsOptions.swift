import ArgumentParser
import CoreMetrics
import Foundation
import Logging
import Prometheus

/// `--metrics-port` and `--metrics-host`, shared by every long-running executable.
public struct MetricsOptions: ParsableArguments {
    @Option(help: "Serve Prometheus metrics over HTTP on this port (GET /metrics, the text format). Off when not given; 0 picks a free port. The `metrics endpoint=URL` line on stdout names it.")
    public var metricsPort: Int?

    @Option(help: "The address the metrics port binds (0.0.0.0: every interface).")
    public var metricsHost: String = "127.0.0.1"

    public init() {}

    public func validate() throws {
        if let p = metricsPort, !(0...65535).contains(p) {
            throw ValidationError("--metrics-port must be a TCP port (0...65535), got \(p)")
        }
    }

    /// With --metrics-port: a registry with this process's gauges (memory, CPU),
    /// swift-metrics bootstrapped onto it, and its port bound (not yet served:
    /// `start()` once the process's own metrics are registered). Nil without
    /// the flag. A port in use throws, naming it.
    public func endpoint(logger: Logger) throws -> MetricsEndpoint? {
        guard let port = metricsPort else { return nil }
        let registry = PrometheusCollectorRegistry()
        let e = try MetricsEndpoint(registry: registry, host: metricsHost, port: port, logger: logger)
        ProcessMetrics.register(on: e)
        // Libraries that report through swift-metrics land on the same page.
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return e
    }
}

extension MetricsEndpoint {
    /// Starts serving and prints `metrics endpoint=URL` (launchers and tests read it).
    public func startAnnounced() {
        start()
        print("metrics endpoint=\(url)")
        fflush(nil)
    }
}
