import ScenePSCore
import ScenePSModel

/// The model a config names, with the sizes of the data set.
public enum ModelFactory {
    public static func msifConfig(_ c: ClusterConfig, scenes: Int) -> MSIFConfig {
        var m = MSIFConfig()
        m.d = c.model.d; m.lLong = c.model.lLong; m.lShort = c.model.lShort
        m.heads = c.model.heads; m.ffn = c.model.ffn; m.experts = c.model.experts
        m.expertWidths = c.model.expertWidths; m.headWidth = c.model.headWidth
        m.scenes = scenes
        m.useLong = c.model.ablation != .shortOnly
        m.useShort = c.model.ablation != .longOnly
        m.sceneGates = c.model.ablation != .noSceneGates
        return m
    }

    /// Also sets the BLAS thread count to `training.compute_threads`: OpenBLAS
    /// would otherwise start one thread per core in every worker (DESIGN.md §7).
    public static func make(_ c: ClusterConfig, scenes: Int, maxBatch: Int) throws -> any CTRModel<Float> {
        BLASThreads.set(c.training.computeThreads)
        switch c.model.kind {
        case .msif:
            return try MSIFModel<Float>(config: msifConfig(c, scenes: scenes), maxBatch: maxBatch)
        case .baseline:
            var b = BaselineConfig()
            b.d = c.model.d; b.lHist = c.model.lLong; b.hidden = c.model.baselineHidden
            return try BaselineModel<Float>(config: b, maxBatch: maxBatch)
        }
    }
}
