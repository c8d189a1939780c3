import Foundation
import Logging
import ScenePSClient
import ScenePSCore
import ScenePSData
import ScenePSModel

/// Scores a split of the data set with the model as the servers hold it now.
public final class Evaluator {
    public enum Split: String, Sendable, CaseIterable { case valid, test }

    let config: ClusterConfig
    public let manifest: DatasetManifest
    let dataDir: String
    let client: PSClient
    let logger: Logger
    let model: any CTRModel<Float>
    var assembler: BatchAssembler
    let batchSize = 1024

    public init(config: ClusterConfig, dataDir: String, client: PSClient, logger: Logger) throws {
        self.config = config
        self.dataDir = dataDir
        self.client = client
        self.logger = logger
        manifest = try DatasetManifest.load(directory: dataDir)
        model = try ModelFactory.make(config, scenes: manifest.scenes.count, maxBatch: batchSize)
        assembler = BatchAssembler(d: config.model.d, historyWidth: min(config.model.lLong, manifest.lLong),
                                   sameSceneOnly: config.model.ablation == .sameScene,
                                   sceneKeys: manifest.scenes.map(\.key),
                                   tables: FeatureSchema.tables(for: config.model), textDim: config.model.textDim)
        caches = FeatureSchema.frozenCaches(assembler.tables, d: config.model.d, textDim: config.model.textDim)
    }

    /// Rows of the pull-only tables (`item_text`), each key pulled once.
    let caches: [FrozenRowCache]

    public var sceneNames: [String] { manifest.scenes.map(\.name) }

    /// The model's click probability for every sample of `split`, with what
    /// the metrics need of each sample.
    public func predict(_ split: Split) throws -> MetricsInput {
        var out = MetricsInput()
        var samples = SampleBatch(lLong: manifest.lLong, capacity: batchSize)
        var input = ModelInput<Float>(d: config.model.d, historyWidth: assembler.historyWidth, capacity: batchSize,
                                      textDim: FeatureSchema.textDim(for: config.model))
        var logits = [Float](repeating: 0, count: batchSize)
        // The dense part is pulled once: evaluation runs while nothing trains.
        var dense: [Float]? = nil
        for scene in manifest.scenes {
            for ref in (split == .test ? scene.test : scene.valid) {
                let chunk = try ChunkFile(path: (dataDir as NSString).appendingPathComponent(ref.file))
                var start = 0
                while start < chunk.count {
                    let end = min(start + batchSize, chunk.count)
                    samples.removeAll()
                    chunk.append(start..<end, to: &samples)
                    start = end
                    try assembler.index(samples)
                    let requested = FeatureSchema.uncached(assembler.pulls, caches)
                    let pulled = try client.wait(client.pull(requested, dense: dense == nil ? [ModelTables.denseID] : []))
                    if dense == nil { dense = pulled.dense[ModelTables.denseID] }
                    FeatureSchema.fill(caches, requested: requested, rows: pulled.sparse)
                    assembler.gather(rows: pulled.sparse, into: &input, cached: caches)
                    dense!.withUnsafeBufferPointer { p in model.logits(parameters: p, input: input, into: &logits) }
                    out.append(batch: samples,
                               probabilities: (0..<samples.count).map { 1 / (1 + Foundation.exp(-Double(logits[$0]))) })
                }
            }
        }
        return out
    }
}
