import ScenePSCore
import ScenePSModel

/// The model a config names, with the sizes of the data set.
public enum ModelFactory {
    /// Also sets the BLAS thread count to `training.compute_threads`: OpenBLAS
    /// would otherwise start one thread per core in every worker (docs/ARCHITECTURE.md §7).
    public static func make(_ c: ClusterConfig, scenes: Int, maxBatch: Int) throws -> any CTRModel<Float> {
        BLASThreads.set(c.training.computeThreads)
        switch c.model.kind {
        case .msif:
            return try MSIFModel<Float>(config: MSIFConfig(c.model, scenes: scenes), maxBatch: maxBatch)
        case .baseline:
            return try BaselineModel<Float>(config: BaselineConfig(c.model), maxBatch: maxBatch)
        }
    }
}
