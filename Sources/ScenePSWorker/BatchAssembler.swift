import ScenePSCore
import ScenePSData
import ScenePSModel

/// Turns a minibatch of samples into what the servers and the model need:
/// the unique keys of every table (pulled once each), the gathered
/// per-example embeddings (`ModelInput`), and — after backward — the summed
/// gradient of every unique row (pushed once each).
public struct BatchAssembler {
    public let d: Int
    /// History tokens the model reads (its L_long), at most the data's width.
    public let historyWidth: Int
    public let sameSceneOnly: Bool
    public let sceneKeys: [UInt64]

    public var item = KeyIndexer(), category = KeyIndexer(), user = KeyIndexer()
    public var scene = KeyIndexer(), behaviourScene = KeyIndexer(), itemBias = KeyIndexer()

    // Local row index of each position; -1 marks padding.
    var tItem: [Int32] = [], tCat: [Int32] = [], tUser: [Int32] = [], tScene: [Int32] = [], tBias: [Int32] = []
    var hItem: [Int32] = [], hCat: [Int32] = [], hScene: [Int32] = []
    /// Scene index of each example: selects its gate and head in the model.
    public private(set) var sceneIndex: [Int32] = []
    public private(set) var historyLength: [Int32] = []
    public private(set) var batch = 0

    public init(d: Int, historyWidth: Int, sameSceneOnly: Bool, sceneKeys: [UInt64]) {
        self.d = d
        self.historyWidth = historyWidth
        self.sameSceneOnly = sameSceneOnly
        self.sceneKeys = sceneKeys
    }

    /// Table id → unique keys, in the order rows are expected back.
    public var pulls: [(table: UInt32, keys: [UInt64], dim: Int)] {
        [(ModelTables.itemID, item.keys, d), (ModelTables.categoryID, category.keys, d),
         (ModelTables.userID, user.keys, d), (ModelTables.sceneID, scene.keys, d),
         (ModelTables.behaviourSceneID, behaviourScene.keys, d), (ModelTables.itemBiasID, itemBias.keys, 1)]
    }

    /// Indexes the keys of `samples`. Throws on a scene index the manifest
    /// does not have (a damaged shard), naming it.
    public mutating func index(_ samples: SampleBatch) throws {
        let B = samples.count, L = historyWidth, W = samples.lLong
        batch = B
        item.reset(); category.reset(); user.reset(); scene.reset(); behaviourScene.reset(); itemBias.reset()
        tItem.removeAll(keepingCapacity: true); tCat.removeAll(keepingCapacity: true)
        tUser.removeAll(keepingCapacity: true); tScene.removeAll(keepingCapacity: true)
        tBias.removeAll(keepingCapacity: true); historyLength.removeAll(keepingCapacity: true)
        sceneIndex.removeAll(keepingCapacity: true)
        hItem = Array(repeating: -1, count: B * L)
        hCat = Array(repeating: -1, count: B * L)
        hScene = Array(repeating: -1, count: B * L)
        let scenes = sceneKeys.count
        for b in 0..<B {
            let s = Int(samples.scene[b])
            guard s >= 0 && s < scenes else {
                throw ScenePSError.data("sample of log row \(samples.row[b]) has scene index \(s), the data set has \(scenes) scenes")
            }
            tItem.append(item.index(of: samples.item[b]))
            tCat.append(category.index(of: samples.category[b]))
            tUser.append(user.index(of: samples.user[b]))
            tScene.append(scene.index(of: sceneKeys[s]))
            sceneIndex.append(Int32(s))
            tBias.append(itemBias.index(of: samples.item[b]))
            let n = min(Int(samples.histLen[b]), W)
            var kept = 0
            for j in 0..<n where kept < L {
                let hs = Int(samples.histScene[b * W + j])
                guard hs >= 0 && hs < scenes else {
                    throw ScenePSError.data("history of log row \(samples.row[b]) has scene index \(hs), the data set has \(scenes) scenes")
                }
                if sameSceneOnly && hs != s { continue }
                hItem[b * L + kept] = item.index(of: samples.histItem[b * W + j])
                hCat[b * L + kept] = category.index(of: samples.histCategory[b * W + j])
                hScene[b * L + kept] = behaviourScene.index(of: sceneKeys[hs])
                kept += 1
            }
            historyLength.append(Int32(kept))
        }
    }

    /// Copies pulled rows (in `pulls` order) into the model's input.
    public func gather(rows: [[Float]], into input: inout ModelInput<Float>) {
        precondition(rows.count == 6)
        let B = batch, d = self.d
        input.resize(batch: B)
        func copy(_ src: [Float], _ idx: [Int32], _ width: Int, _ dst: inout [Float]) {
            src.withUnsafeBufferPointer { s in
                dst.withUnsafeMutableBufferPointer { t in
                    for p in 0..<idx.count {
                        let r = Int(idx[p])
                        let o = p * width
                        if r < 0 {
                            for c in 0..<width { t[o + c] = 0 }
                        } else {
                            let so = r * width
                            for c in 0..<width { t[o + c] = s[so + c] }
                        }
                    }
                }
            }
        }
        copy(rows[0], tItem, d, &input.targetItem)
        copy(rows[1], tCat, d, &input.targetCategory)
        copy(rows[2], tUser, d, &input.user)
        copy(rows[3], tScene, d, &input.sceneEmbedding)
        copy(rows[5], tBias, 1, &input.itemBias)
        copy(rows[0], hItem, d, &input.historyItem)
        copy(rows[1], hCat, d, &input.historyCategory)
        copy(rows[4], hScene, d, &input.historyScene)
        input.historyLength.withUnsafeMutableBufferPointer { h in
            for b in 0..<B { h[b] = historyLength[b] }
        }
        input.scene.withUnsafeMutableBufferPointer { sc in
            for b in 0..<B { sc[b] = sceneIndex[b] }
        }
    }

    /// Sums the input gradients per unique row, in `pulls` order.
    public func scatter(_ g: ModelInput<Float>) -> [[Float]] {
        let d = self.d
        var out: [[Float]] = pulls.map { Array(repeating: 0, count: $0.keys.count * $0.dim) }
        func add(_ src: [Float], _ idx: [Int32], _ width: Int, _ dst: inout [Float]) {
            src.withUnsafeBufferPointer { s in
                dst.withUnsafeMutableBufferPointer { t in
                    for p in 0..<idx.count {
                        let r = Int(idx[p])
                        if r < 0 { continue }
                        let so = p * width, to = r * width
                        for c in 0..<width { t[to + c] += s[so + c] }
                    }
                }
            }
        }
        add(g.targetItem, tItem, d, &out[0])
        add(g.historyItem, hItem, d, &out[0])
        add(g.targetCategory, tCat, d, &out[1])
        add(g.historyCategory, hCat, d, &out[1])
        add(g.user, tUser, d, &out[2])
        add(g.sceneEmbedding, tScene, d, &out[3])
        add(g.historyScene, hScene, d, &out[4])
        add(g.itemBias, tBias, 1, &out[5])
        return out
    }
}
