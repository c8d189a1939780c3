import Foundation
import ScenePSModel
import XCTest

/// Forward+backward throughput of the Float model at the design's default
/// sizes. Not part of the normal test run; run it in release:
///
///     SCENEPS_MODEL_BENCH=1 swift test -c release -Xswiftc -enable-testing \
///         --scratch-path .build-model-rel --filter ModelBenchmark
///
/// Optional: SCENEPS_MODEL_BENCH_STEPS (default 200), SCENEPS_MODEL_BENCH_THREADS
/// (BLAS thread counts, default "1,2").
/// (`-enable-testing` because the other test files use `@testable import`.)
final class ModelBenchmark: XCTestCase {
    private var enabled: Bool { ProcessInfo.processInfo.environment["SCENEPS_MODEL_BENCH"] == "1" }

    private func input(batch: Int, d: Int, width: Int, scenes: Int, lengths: (inout TestRandom) -> Int) -> ModelInput<Float> {
        var rnd = TestRandom(seed: 99)
        var x = ModelInput<Float>(d: d, historyWidth: width, capacity: batch)
        x.resize(batch: batch)
        func fill(_ a: inout [Float]) { for i in a.indices { a[i] = Float(rnd.uniform(-0.1, 0.1)) } }
        fill(&x.targetItem); fill(&x.targetCategory); fill(&x.user); fill(&x.sceneEmbedding); fill(&x.itemBias)
        fill(&x.historyItem); fill(&x.historyCategory); fill(&x.historyScene)
        x.historyLength = (0..<batch).map { _ in Int32(lengths(&rnd)) }
        x.scene = (0..<batch).map { _ in Int32(rnd.int(0...(scenes - 1))) }
        return x
    }

    /// Examples per second of `steps` training passes (after warm-up).
    private func measure(_ model: some CTRModel<Float>, _ x: ModelInput<Float>, steps: Int) -> (train: Double, forward: Double) {
        let params: [Float] = model.layout.initialValues(seed: 1)
        var grads = [Float](repeating: 0, count: model.layout.count)
        let labels = (0..<x.batch).map { Float($0 % 5 == 0 ? 1 : 0) }
        var ig = ModelInputGradient<Float>(d: x.d, historyWidth: x.historyWidth, capacity: x.batch)
        var logits: [Float] = []
        func step() {
            _ = params.withUnsafeBufferPointer { p in
                labels.withUnsafeBufferPointer { l in
                    grads.withUnsafeMutableBufferPointer { g in
                        model.lossAndGradients(parameters: p, input: x, labels: l, parameterGradient: g, inputGradient: &ig, logits: &logits)
                    }
                }
            }
        }
        for _ in 0..<5 { step() }
        var t0 = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<steps { step() }
        let train = Double(steps * x.batch) / (Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9)
        t0 = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<steps { params.withUnsafeBufferPointer { model.logits(parameters: $0, input: x, into: &logits) } }
        let forward = Double(steps * x.batch) / (Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9)
        return (train, forward)
    }

    func testThroughput() throws {
        try XCTSkipUnless(enabled, "set SCENEPS_MODEL_BENCH=1 (and build with -c release) to run the benchmark")
        var c = MSIFConfig()
        c.scenes = 4
        let batch = 256, steps = Int(ProcessInfo.processInfo.environment["SCENEPS_MODEL_BENCH_STEPS"] ?? "") ?? 200
        let msif = try MSIFModel<Float>(config: c, maxBatch: batch)
        let baseline = try BaselineModel<Float>(config: BaselineConfig(), maxBatch: batch)
        let uniform = input(batch: batch, d: c.d, width: c.lLong, scenes: c.scenes) { $0.int(0...50) }
        let full = input(batch: batch, d: c.d, width: c.lLong, scenes: c.scenes) { _ in 50 }
        let threadCounts = (ProcessInfo.processInfo.environment["SCENEPS_MODEL_BENCH_THREADS"] ?? "1,2")
            .split(separator: ",").compactMap { Int($0) }
        for threads in threadCounts {
            BLASThreads.set(threads)
            for (name, x) in [("lengths U{0..50}", uniform), ("lengths 50", full)] {
                let r = measure(msif, x, steps: steps)
                print(String(format: "bench msif  threads=%d batch=%d %@: train %.0f ex/s, forward %.0f ex/s",
                             threads, batch, name, r.train, r.forward))
            }
            let r = measure(baseline, uniform, steps: steps)
            print(String(format: "bench baseline threads=%d batch=%d: train %.0f ex/s, forward %.0f ex/s", threads, batch, r.train, r.forward))
        }
    }
}
