import ScenePSClient
import ScenePSCore
import ScenePSData
import ScenePSModel

/// The model's forward pass over batches of samples, with its rows pulled
/// from the servers `client` reaches: what evaluation (`Evaluator`) and
/// `psctl recommend` score with, so both give one example the same logit.
/// The dense parameters are pulled once, on the first batch after
/// `refresh()`: scoring runs while nothing trains.
public final class ModelScorer {
    /// Largest batch one call scores.
    public static let maxBatch = 1024

    let config: ClusterConfig
    let client: PSClient
    let model: any CTRModel<Float>
    var assembler: BatchAssembler
    /// Rows of the pull-only tables (`item_text`), each key pulled once.
    let caches: [FrozenRowCache]
    var input: ModelInput<Float>
    var out: [Float]
    var dense: [Float]?

    /// `scenes` and `lLong`: the data set's (`DatasetManifest`).
    public init(config: ClusterConfig, scenes: [SceneManifest], lLong: Int, client: PSClient) throws {
        self.config = config
        self.client = client
        model = try ModelFactory.make(config, scenes: scenes.count, maxBatch: Self.maxBatch)
        assembler = BatchAssembler(d: config.model.d, historyWidth: min(config.model.lLong, lLong),
                                   sameSceneOnly: config.model.ablation == .sameScene,
                                   sceneKeys: scenes.map(\.key),
                                   tables: FeatureSchema.tables(for: config.model), textDim: config.model.textDim)
        caches = FeatureSchema.frozenCaches(assembler.tables, d: config.model.d, textDim: config.model.textDim)
        input = ModelInput<Float>(d: config.model.d, historyWidth: assembler.historyWidth, capacity: Self.maxBatch,
                                  textDim: FeatureSchema.textDim(for: config.model))
        out = [Float](repeating: 0, count: Self.maxBatch)
    }

    /// Dense parameters the model reads (the size of the servers' dense table).
    public var parameterCount: Int { model.layout.count }

    /// The next batch pulls the dense parameters again (after training moved them).
    public func refresh() { dense = nil }

    /// The logit of every sample of `samples` (at most `maxBatch`). Throws on
    /// a scene index the data set does not have, or what the servers answer.
    public func logits(_ samples: SampleBatch) throws -> ArraySlice<Float> {
        precondition(samples.count <= Self.maxBatch, "\(samples.count) samples, at most \(Self.maxBatch) per call")
        try assembler.index(samples)
        let requested = FeatureSchema.uncached(assembler.pulls, caches)
        let pulled = try client.wait(client.pull(requested, dense: dense == nil ? [ModelTables.denseID] : []))
        if dense == nil {
            guard let d = pulled.dense[ModelTables.denseID], d.count == model.layout.count else {
                throw ScenePSError.data("the servers' dense table has \(pulled.dense[ModelTables.denseID]?.count ?? 0) parameters, the \(config.model.kind) model of the config reads \(model.layout.count)")
            }
            dense = d
        }
        FeatureSchema.fill(caches, requested: requested, rows: pulled.sparse)
        assembler.gather(rows: pulled.sparse, into: &input, cached: caches)
        dense!.withUnsafeBufferPointer { p in model.logits(parameters: p, input: input, into: &out) }
        return out[0..<samples.count]
    }
}
