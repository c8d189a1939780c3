import ScenePSCore
import ScenePSClient
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

    /// The sparse tables (`FeatureSchema.tables`), in pull order, and their row widths.
    public let tables: [FeatureTable]
    public let dims: [Int]
    /// `FeatureSchema.slots`, and the position in `tables` of each one's table.
    let slots: [FeatureSchema.Slot]
    let slotTable: [Int]

    /// A slot's source and table, resolved once: what the indexing loop reads.
    struct KeyPlan {
        let slot: Int, table: Int
        let source: FeatureSchema.Source
    }
    let exampleKeys: [KeyPlan], historyKeys: [KeyPlan]

    /// One per table: its unique keys of the batch.
    public private(set) var indexers: [KeyIndexer]
    /// Per slot, the local row index of each position (B, or B·L for history
    /// slots); -1 marks padding.
    var positions: [[Int32]]
    /// Scene index of each example: selects its gate and head in the model.
    public private(set) var sceneIndex: [Int32] = []
    public private(set) var historyLength: [Int32] = []
    public private(set) var batch = 0

    /// `tables`: the tables the model reads (`FeatureSchema.tables(for:)`);
    /// the default is a model without optional features. `textDim`: the
    /// width of `item_text` rows (`model.text_dim`), when it is among them.
    public init(d: Int, historyWidth: Int, sameSceneOnly: Bool, sceneKeys: [UInt64],
                tables: [FeatureTable] = FeatureSchema.tables(for: ClusterConfig.Model()),
                textDim: Int = ClusterConfig.Model().textDim) {
        self.d = d
        self.historyWidth = historyWidth
        self.sameSceneOnly = sameSceneOnly
        self.sceneKeys = sceneKeys
        let slots = FeatureSchema.slots(reading: tables)
        self.tables = tables
        dims = tables.map { $0.dim(d: d, textDim: textDim) }
        self.slots = slots
        let slotTable = slots.map { slot in
            guard let t = tables.firstIndex(of: slot.table) else {
                preconditionFailure("slot \(slot.name) reads table \(slot.table.name), which is not in the schema")
            }
            return t
        }
        self.slotTable = slotTable
        let plans = slots.indices.map { KeyPlan(slot: $0, table: slotTable[$0], source: slots[$0].source) }
        exampleKeys = plans.filter { !$0.source.isHistory }
        historyKeys = plans.filter { $0.source.isHistory }
        indexers = tables.map { _ in KeyIndexer() }
        positions = slots.map { _ in [] }
    }

    /// Table id → unique keys, in the order rows are expected back.
    public var pulls: [SparsePull] {
        tables.indices.map { SparsePull(tableID: tables[$0].id, keys: indexers[$0].keys) }
    }

    /// Indexes the keys of `samples`. Throws on a scene index the manifest
    /// does not have (a damaged shard), naming it.
    public mutating func index(_ samples: SampleBatch) throws {
        let B = samples.count, L = historyWidth, W = samples.lLong
        batch = B
        for t in indexers.indices { indexers[t].reset() }
        for k in exampleKeys { positions[k.slot].removeAll(keepingCapacity: true) }
        for k in historyKeys { positions[k.slot] = Array(repeating: -1, count: B * L) }
        historyLength.removeAll(keepingCapacity: true)
        sceneIndex.removeAll(keepingCapacity: true)
        let scenes = sceneKeys.count
        for b in 0..<B {
            let s = Int(samples.scene[b])
            guard s >= 0 && s < scenes else {
                throw ScenePSError.data("sample of log row \(samples.row[b]) has scene index \(s), the data set has \(scenes) scenes")
            }
            for k in exampleKeys {
                let key: UInt64
                switch k.source {
                case .item: key = samples.item[b]
                case .category: key = samples.category[b]
                case .user: key = samples.user[b]
                case .scene: key = sceneKeys[s]
                case .historyItem, .historyCategory, .historyScene: preconditionFailure("history source in exampleKeys")
                }
                positions[k.slot].append(indexers[k.table].index(of: key))
            }
            sceneIndex.append(Int32(s))
            let n = min(Int(samples.histLen[b]), W)
            var kept = 0
            for j in 0..<n where kept < L {
                let hs = Int(samples.histScene[b * W + j])
                guard hs >= 0 && hs < scenes else {
                    throw ScenePSError.data("history of log row \(samples.row[b]) has scene index \(hs), the data set has \(scenes) scenes")
                }
                if sameSceneOnly && hs != s { continue }
                for k in historyKeys {
                    let key: UInt64
                    switch k.source {
                    case .historyItem: key = samples.histItem[b * W + j]
                    case .historyCategory: key = samples.histCategory[b * W + j]
                    case .historyScene: key = sceneKeys[hs]
                    case .item, .category, .user, .scene: preconditionFailure("example source in historyKeys")
                    }
                    positions[k.slot][b * L + kept] = indexers[k.table].index(of: key)
                }
                kept += 1
            }
            historyLength.append(Int32(kept))
        }
    }

    /// Copies pulled rows (in `pulls` order) into the model's input. A table
    /// with a cache in `cached` reads every row from the cache instead (its
    /// entry in `rows` is ignored; every key of the batch must be cached).
    public func gather(rows: [[Float]], into input: inout ModelInput<Float>, cached: [FrozenRowCache] = []) {
        precondition(rows.count == tables.count)
        let B = batch
        input.resize(batch: B)
        func copy(_ src: [Float], _ idx: [Int32], _ width: Int, _ dst: inout [Float], _ remap: [Int32]?) {
            precondition(dst.count == idx.count * width, "a slot's positions do not match its input field")
            src.withUnsafeBufferPointer { s in
                dst.withUnsafeMutableBufferPointer { t in
                    guard let tb = t.baseAddress else { return }
                    for p in 0..<idx.count {
                        let r = Int(idx[p])
                        let o = tb + p * width
                        if r < 0 {
                            o.update(repeating: 0, count: width)
                        } else {
                            o.update(from: s.baseAddress! + Int(remap?[r] ?? Int32(r)) * width, count: width)
                        }
                    }
                }
            }
        }
        var fromCache: [Int: (cache: FrozenRowCache, rows: [Int32])] = [:]
        for c in cached {
            guard let t = tables.firstIndex(where: { $0.id == c.table }) else { continue }
            fromCache[t] = (c, c.rows(of: indexers[t].keys))
        }
        var distinctWritten = Set<Int>()
        for (k, slot) in slots.enumerated() {
            let t = slotTable[k]
            if let index = slot.index {
                // By reference: the table's distinct rows once, each position's row index.
                if distinctWritten.insert(t).inserted {
                    if let c = fromCache[t] {
                        let w = dims[t], n = c.rows.count
                        input[keyPath: slot.input] = [Float](unsafeUninitializedCapacity: n * w) { buf, count in
                            c.cache.values.withUnsafeBufferPointer { src in
                                for (i, r) in c.rows.enumerated() {
                                    (buf.baseAddress! + i * w).initialize(from: src.baseAddress! + Int(r) * w, count: w)
                                }
                            }
                            count = n * w
                        }
                    } else {
                        input[keyPath: slot.input] = rows[t]
                    }
                }
                precondition(input[keyPath: index].count == positions[k].count, "slot \(slot.name): index field does not match its positions")
                input[keyPath: index] = positions[k]
            } else if let c = fromCache[t] {
                copy(c.cache.values, positions[k], dims[t], &input[keyPath: slot.input], c.rows)
            } else {
                copy(rows[t], positions[k], dims[t], &input[keyPath: slot.input], nil)
            }
        }
        input.historyLength.withUnsafeMutableBufferPointer { h in
            for b in 0..<B { h[b] = historyLength[b] }
        }
        input.scene.withUnsafeMutableBufferPointer { sc in
            for b in 0..<B { sc[b] = sceneIndex[b] }
        }
    }

    /// Sums the input gradients per unique row, in `pulls` order. A pull-only
    /// table (`FeatureTable.alwaysFrozen`) gets no gradient: its entry is empty.
    public func scatter(_ g: ModelInput<Float>) -> [[Float]] {
        var out: [[Float]] = tables.indices.map {
            tables[$0].alwaysFrozen ? [] : Array(repeating: 0, count: indexers[$0].count * dims[$0])
        }
        func add(_ src: [Float], _ idx: [Int32], _ width: Int, _ dst: inout [Float]) {
            precondition(src.count == idx.count * width, "a slot's positions do not match its gradient field")
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
        for (k, slot) in slots.enumerated() where !tables[slotTable[k]].alwaysFrozen && slot.index == nil {
            let t = slotTable[k]
            add(g[keyPath: slot.input], positions[k], dims[t], &out[t])
        }
        return out
    }
}
