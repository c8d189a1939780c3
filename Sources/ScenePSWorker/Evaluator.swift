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
    let logger: Logger
    let scorer: ModelScorer

    public init(config: ClusterConfig, dataDir: String, client: PSClient, logger: Logger) throws {
        self.config = config
        self.dataDir = dataDir
        self.logger = logger
        manifest = try DatasetManifest.load(directory: dataDir)
        scorer = try ModelScorer(config: config, scenes: manifest.scenes, lLong: manifest.lLong, client: client)
    }

    public var sceneNames: [String] { manifest.scenes.map(\.name) }

    /// The model's click probability for every sample of `split`, with what
    /// the metrics need of each sample.
    public func predict(_ split: Split) throws -> MetricsInput {
        var out = MetricsInput()
        let batchSize = ModelScorer.maxBatch
        var samples = SampleBatch(lLong: manifest.lLong, capacity: batchSize)
        // The dense part is pulled once: evaluation runs while nothing trains.
        scorer.refresh()
        for scene in manifest.scenes {
            for ref in (split == .test ? scene.test : scene.valid) {
                let chunk = try ChunkFile(path: (dataDir as NSString).appendingPathComponent(ref.file))
                var start = 0
                while start < chunk.count {
                    let end = min(start + batchSize, chunk.count)
                    samples.removeAll()
                    chunk.append(start..<end, to: &samples)
                    start = end
                    let logits = try scorer.logits(samples)
                    out.append(batch: samples, probabilities: logits.map { 1 / (1 + Foundation.exp(-Double($0))) })
                }
            }
        }
        return out
    }
}
