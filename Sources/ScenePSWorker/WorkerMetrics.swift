import Foundation
import Prometheus
import ScenePSClient
import ScenePSMetrics

/// A worker's Prometheus metrics (docs/OBSERVING.md): examples and steps
/// trained, examples/s, loss, running AUC, epoch, and the time it waited by
/// reason (alignment with the other scenes; pull and push: blocked on the
/// servers, through its client's metrics).
public final class WorkerMetrics: @unchecked Sendable {
    // @unchecked: `examplesSeen`, `lossEWMA` and the rate window are behind `lock`.
    public let client: ClientMetrics
    let examples: Counter
    let steps: Counter
    let loss: Gauge
    let runningAUC: Gauge
    let epoch: Gauge
    let rate: Gauge
    let alignment: Counter
    private let lock = NSLock()
    private var examplesSeen = 0
    private var lossEWMA = Double.nan
    private var window: (at: Double, examples: Int) = (Date().timeIntervalSince1970, 0)

    public init(registry: PrometheusCollectorRegistry, worker: String, scene: String) {
        client = ClientMetrics(registry: registry, waitName: "sceneps_worker_wait_seconds_total", waitLabel: "reason")
        examples = registry.counter("sceneps_worker_examples_total", help: "Training examples this worker trained.")
        steps = registry.counter("sceneps_worker_steps_total", help: "Minibatches this worker trained (one push each).")
        loss = registry.gauge("sceneps_worker_loss",
                              help: "Training loss: an exponential moving average over steps (weight 0.05 for the newest).")
        runningAUC = registry.gauge("sceneps_worker_running_auc",
                                    help: "AUC of the last 20 000 training examples' predictions (set at each progress line).")
        epoch = registry.gauge("sceneps_worker_epoch", help: "The epoch of the chunk this worker trains.")
        rate = registry.gauge("sceneps_worker_examples_per_second",
                              help: "Examples per second since the previous scrape (rate(sceneps_worker_examples_total) says the same).")
        alignment = registry.counter("sceneps_worker_wait_seconds_total", labels: [("reason", "alignment")],
                                     help: "Seconds the caller was blocked waiting for the servers' replies, by operation.")
        registry.gauge("sceneps_worker_info", labels: [("worker", worker), ("scene", scene)],
                       help: "This worker's name and scene (value 1).").set(to: 1)
    }

    /// One step trained (the trainer's thread).
    public func step(examples n: Int, loss l: Double, epoch e: Int) {
        examples.increment(by: Int64(n))
        steps.increment()
        let smoothed = lock.withLock { () -> Double in
            examplesSeen += n
            lossEWMA = lossEWMA.isNaN ? l : 0.95 * lossEWMA + 0.05 * l
            return lossEWMA
        }
        loss.set(smoothed)
        epoch.set(Double(e))
    }

    public func set(runningAUC auc: Double) { if auc.isFinite { runningAUC.set(auc) } }

    /// Scrape-time values: examples/s over the last interval and the alignment wait (`waited()`: seconds so far).
    public func collect(alignmentWaited waited: @escaping @Sendable () -> Double, on onScrape: (@escaping @Sendable () -> Void) -> Void) {
        let delta = ScrapeDelta()
        onScrape { [self] in
            let now = Date().timeIntervalSince1970
            let r = lock.withLock { () -> Double in
                let dt = now - window.at, dn = examplesSeen - window.examples
                guard dt >= 0.5 else { return -1 }   // a second scrape right after: keep the last figure
                window = (now, examplesSeen)
                return Double(dn) / dt
            }
            if r >= 0 { rate.set(r) }
            delta.advance(alignment, to: waited())
        }
    }
}
