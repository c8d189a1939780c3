import Foundation
import ScenePSData
import XCTest

/// Item-popularity predictors fitted on the training rows (train + validation) of a prepared data set
/// and scored on its test rows: the item's smoothed click rate, and its number of impressions. The bar
/// a trained model must clear by a measured margin (a model that learnt nothing beyond item popularity,
/// or a broken one, does not), instead of a fixed AUC a broken model can pass.
struct Popularity {
    /// AUC of the click rate and of the impression count, overall and per scene (by name).
    var ctr: Double
    var count: Double
    var sceneCTR: [String: Double]
    var sceneCount: [String: Double]
    var testRows: Int

    /// The better of the two predictors, overall.
    var best: Double { max(ctr, count) }
    /// The better of the two predictors on `scene`.
    func best(_ scene: String) -> Double { max(sceneCTR[scene] ?? 1, sceneCount[scene] ?? 1) }

    init(data: URL) throws {
        let m = try DatasetManifest.load(directory: data.path)
        func read(_ refs: [ChunkRef], _ body: (SampleBatch) -> Void) throws {
            for ref in refs {
                let c = try ChunkFile(path: data.appendingPathComponent(ref.file).path)
                var b = SampleBatch(lLong: c.lLong, capacity: c.count)
                c.append(0..<c.count, to: &b)
                body(b)
            }
        }
        var shown: [UInt64: Double] = [:], clicked: [UInt64: Double] = [:]
        var positives = 0.0, rows = 0.0
        for s in m.scenes {
            try read(s.train + s.valid) { b in
                for i in 0..<b.count {
                    shown[b.item[i], default: 0] += 1
                    clicked[b.item[i], default: 0] += Double(b.label[i])
                    positives += Double(b.label[i]); rows += 1
                }
            }
        }
        let prior = positives / max(rows, 1), strength = 20.0
        var labels: [Float] = [], ctr: [Double] = [], count: [Double] = []
        sceneCTR = [:]; sceneCount = [:]
        for s in m.scenes {
            var sl: [Float] = [], sc: [Double] = [], sn: [Double] = []
            try read(s.test) { b in
                for i in 0..<b.count {
                    let n = shown[b.item[i]] ?? 0, k = clicked[b.item[i]] ?? 0
                    sl.append(b.label[i])
                    sc.append((k + strength * prior) / (n + strength))
                    sn.append(n)
                }
            }
            sceneCTR[s.name] = Evaluation.auc(labels: sl, scores: sc)
            sceneCount[s.name] = Evaluation.auc(labels: sl, scores: sn)
            labels += sl; ctr += sc; count += sn
        }
        self.ctr = Evaluation.auc(labels: labels, scores: ctr)
        self.count = Evaluation.auc(labels: labels, scores: count)
        testRows = labels.count
    }
}
