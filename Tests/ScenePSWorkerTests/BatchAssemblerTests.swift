import ScenePSCore
import ScenePSData
import ScenePSModel
import XCTest

@testable import ScenePSWorker

/// The worker's batch assembly against a brute-force reference written from
/// docs/ARCHITECTURE.md §3 alone: which row of which table each model input reads, which
/// history tokens are kept (the history cut to the model's L, the same-scene
/// ablation), and where each gradient goes back to (summed per unique row).
/// The baseline model reads neither history categories nor scenes, so a table
/// mix-up here would be invisible end to end with it; these tests pin it.
final class BatchAssemblerTests: XCTestCase {
    static let tables: [(id: UInt32, name: String)] = [
        (FeatureTable.item.id, "item"), (FeatureTable.category.id, "category"), (FeatureTable.user.id, "user"),
        (FeatureTable.scene.id, "scene"), (FeatureTable.behaviourScene.id, "behaviour_scene"), (FeatureTable.itemBias.id, "item_bias"),
    ]

    /// The value of coordinate c of the row `key` of `table`: distinct per table,
    /// key and coordinate, so a row read from the wrong table or key shows.
    static func value(_ table: UInt32, _ key: UInt64, _ c: Int) -> Float {
        Float(table) * 1000 + Float(key % 997) + Float(c) / 64
    }

    struct RandomBatch {
        var samples: SampleBatch
        var sceneKeys: [UInt64]
    }

    /// B samples over small key pools (so keys repeat within and across examples,
    /// and a target item also occurs in histories), histories of random length
    /// up to and beyond the data's width W, from every scene.
    static func randomBatch(_ rng: inout SplitMix64, batch B: Int, width W: Int, scenes S: Int) -> RandomBatch {
        var s = SampleBatch(lLong: W, capacity: B)
        func pick(_ pool: UInt64, _ base: UInt64) -> UInt64 { base + rng.next() % pool }
        // Different bases per table: the same number is never a key of two tables by design,
        // except the scene keys, which the scene and behaviour_scene tables share (as in the worker).
        for b in 0..<B {
            s.count += 1
            s.user.append(pick(5, 300))
            s.item.append(pick(9, 100))
            s.category.append(pick(4, 200))
            s.scene.append(Int32(rng.next() % UInt64(S)))
            s.label.append(Float(rng.next() % 2))
            s.row.append(Int64(b))
            s.truth.append(.nan)
            s.cold.append(false)
            // Lengths 0...W+2: the data's histLen may exceed its width only for a damaged shard;
            // the assembler clamps to W.
            let n = Int(rng.next() % UInt64(W + 3))
            s.histLen.append(Int32(n))
            for j in 0..<W {
                let valid = j < n
                s.histItem.append(valid ? pick(9, 100) : 0)
                s.histCategory.append(valid ? pick(4, 200) : 0)
                s.histScene.append(valid ? Int32(rng.next() % UInt64(S)) : 0)
            }
        }
        let sceneKeys = (0..<S).map { _ in rng.next() | 1 }
        return RandomBatch(samples: s, sceneKeys: sceneKeys)
    }

    /// Brute force: per example, the (table, key) each input position reads, nil for padding.
    struct Reference {
        var targetItem: [UInt64] = [], targetCategory: [UInt64] = [], user: [UInt64] = [], scene: [UInt64] = [], bias: [UInt64] = []
        var historyItem: [UInt64?] = [], historyCategory: [UInt64?] = [], historyScene: [UInt64?] = []
        var historyLength: [Int32] = [], sceneIndex: [Int32] = []

        init(_ r: RandomBatch, historyWidth L: Int, sameSceneOnly: Bool) {
            let s = r.samples, W = s.lLong
            for b in 0..<s.count {
                targetItem.append(s.item[b]); targetCategory.append(s.category[b]); user.append(s.user[b])
                scene.append(r.sceneKeys[Int(s.scene[b])]); bias.append(s.item[b]); sceneIndex.append(s.scene[b])
                // The valid prefix (never beyond the data's width), most recent first,
                // filtered to the example's scene for the ablation, then cut to L.
                var kept: [Int] = []
                for j in 0..<min(Int(s.histLen[b]), W) {
                    if sameSceneOnly && s.histScene[b * W + j] != s.scene[b] { continue }
                    kept.append(j)
                }
                kept = Array(kept.prefix(L))
                historyLength.append(Int32(kept.count))
                for p in 0..<L {
                    if p < kept.count {
                        let j = b * W + kept[p]
                        historyItem.append(s.histItem[j])
                        historyCategory.append(s.histCategory[j])
                        historyScene.append(r.sceneKeys[Int(s.histScene[j])])
                    } else {
                        historyItem.append(nil); historyCategory.append(nil); historyScene.append(nil)
                    }
                }
            }
        }

        /// Every (position key, table) pair of the batch, for the unique-key check.
        func keys(of table: UInt32) -> Set<UInt64> {
            switch table {
            case FeatureTable.item.id: return Set(targetItem + historyItem.compactMap { $0 })
            case FeatureTable.category.id: return Set(targetCategory + historyCategory.compactMap { $0 })
            case FeatureTable.user.id: return Set(user)
            case FeatureTable.scene.id: return Set(scene)
            case FeatureTable.behaviourScene.id: return Set(historyScene.compactMap { $0 })
            default: return Set(bias)
            }
        }
    }

    /// The rows a pull of the assembler's keys returns.
    static func rows(_ a: BatchAssembler) -> [[Float]] {
        a.widePulls.map { p in p.keys.flatMap { k in (0..<p.dim).map { value(p.table, k, $0) } } }
    }

    static func expectRows(_ got: [Float], _ keys: [UInt64?], table: UInt32, width: Int, _ what: String,
                           file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.count, keys.count * width, "\(what): length", file: file, line: line)
        guard got.count == keys.count * width else { return }
        for (p, k) in keys.enumerated() {
            let want: [Float] = k.map { k in (0..<width).map { value(table, k, $0) } } ?? [Float](repeating: 0, count: width)
            let have = Array(got[(p * width)..<((p + 1) * width)])
            if have != want {
                return XCTFail("\(what) at position \(p): got \(have.prefix(2))…, expected \(k.map { "table \(table) key \($0)" } ?? "padding (zeros)")",
                               file: file, line: line)
            }
        }
    }

    func checkOne(seed: UInt64, batch B: Int, width W: Int, historyWidth L: Int, scenes S: Int, sameSceneOnly: Bool) throws {
        var rng = SplitMix64(seed: seed)
        let r = Self.randomBatch(&rng, batch: B, width: W, scenes: S)
        let d = 3
        var a = BatchAssembler(d: d, historyWidth: L, sameSceneOnly: sameSceneOnly, sceneKeys: r.sceneKeys)
        try a.index(r.samples)
        let ref = Reference(r, historyWidth: L, sameSceneOnly: sameSceneOnly)
        let what = "seed \(seed) B=\(B) W=\(W) L=\(L) same-scene=\(sameSceneOnly)"

        // Pulls: every table once, in a fixed order, each key exactly once.
        XCTAssertEqual(a.pulls.map(\.tableID), Self.tables.map(\.id), what)
        XCTAssertEqual(a.widePulls.map(\.dim), [d, d, d, d, d, 1], what)
        for p in a.widePulls {
            XCTAssertEqual(p.keys.count, Set(p.keys).count, "\(what): table \(p.table) pulls a key twice")
            XCTAssertEqual(Set(p.keys), ref.keys(of: p.table), "\(what): keys of table \(p.table)")
        }

        // Gather: every input position reads the reference's row (padding zero).
        var input = ModelInput<Float>(d: d, historyWidth: L, capacity: 1)
        a.gather(rows: Self.rows(a), into: &input)
        XCTAssertEqual(input.batch, B, what)
        XCTAssertEqual(input.historyLength, ref.historyLength, "\(what): history lengths")
        XCTAssertEqual(input.scene, ref.sceneIndex, "\(what): scene index of every example")
        Self.expectRows(input.targetItem, ref.targetItem, table: FeatureTable.item.id, width: d, "\(what) target item")
        Self.expectRows(input.targetCategory, ref.targetCategory, table: FeatureTable.category.id, width: d, "\(what) target category")
        Self.expectRows(input.user, ref.user, table: FeatureTable.user.id, width: d, "\(what) user")
        Self.expectRows(input.sceneEmbedding, ref.scene, table: FeatureTable.scene.id, width: d, "\(what) scene")
        Self.expectRows(input.itemBias, ref.bias, table: FeatureTable.itemBias.id, width: 1, "\(what) item bias")
        Self.expectRows(input.historyItem, ref.historyItem, table: FeatureTable.item.id, width: d, "\(what) history item")
        Self.expectRows(input.historyCategory, ref.historyCategory, table: FeatureTable.category.id, width: d, "\(what) history category")
        Self.expectRows(input.historyScene, ref.historyScene, table: FeatureTable.behaviourScene.id, width: d, "\(what) history scene")

        // Scatter: a random gradient at every position, padding included (the model
        // writes zeros there; the assembler must not read them either); the reference
        // sums the valid positions per (table, key).
        var g = ModelInput<Float>(d: d, historyWidth: L, capacity: B)
        g.resize(batch: B)
        func fill(_ a: inout [Float]) { for i in a.indices { a[i] = Float(rng.nextUnit() * 2 - 1) } }
        fill(&g.targetItem); fill(&g.targetCategory); fill(&g.user); fill(&g.sceneEmbedding); fill(&g.itemBias)
        fill(&g.historyItem); fill(&g.historyCategory); fill(&g.historyScene)
        var sums: [UInt32: [UInt64: [Double]]] = [:], absSums: [UInt32: [UInt64: [Double]]] = [:]
        func add(_ table: UInt32, _ keys: [UInt64?], _ grad: [Float], _ w: Int) {
            for (p, k) in keys.enumerated() {
                guard let k else { continue }
                var s = sums[table, default: [:]][k, default: [Double](repeating: 0, count: w)]
                var m = absSums[table, default: [:]][k, default: [Double](repeating: 0, count: w)]
                for c in 0..<w {
                    s[c] += Double(grad[p * w + c])
                    m[c] += abs(Double(grad[p * w + c]))
                }
                sums[table, default: [:]][k] = s
                absSums[table, default: [:]][k] = m
            }
        }
        add(FeatureTable.item.id, ref.targetItem, g.targetItem, d)
        add(FeatureTable.item.id, ref.historyItem, g.historyItem, d)
        add(FeatureTable.category.id, ref.targetCategory, g.targetCategory, d)
        add(FeatureTable.category.id, ref.historyCategory, g.historyCategory, d)
        add(FeatureTable.user.id, ref.user, g.user, d)
        add(FeatureTable.scene.id, ref.scene, g.sceneEmbedding, d)
        add(FeatureTable.behaviourScene.id, ref.historyScene, g.historyScene, d)
        add(FeatureTable.itemBias.id, ref.bias, g.itemBias, 1)
        let out = a.scatter(g)
        XCTAssertEqual(out.count, 6, what)
        for (p, grads) in zip(a.widePulls, out) {
            XCTAssertEqual(grads.count, p.keys.count * p.dim, "\(what): gradient length of table \(p.table)")
            guard grads.count == p.keys.count * p.dim else { continue }
            for (i, k) in p.keys.enumerated() {
                let want = sums[p.table]?[k] ?? [Double](repeating: 0, count: p.dim)
                let bound = absSums[p.table]?[k] ?? [Double](repeating: 0, count: p.dim)
                for c in 0..<p.dim {
                    // Float summation in another order: the error is bounded by a few ulps of the sum of magnitudes.
                    let err = abs(Double(grads[i * p.dim + c]) - want[c])
                    if err > 1e-6 * bound[c] {
                        return XCTFail("\(what): gradient of table \(p.table) key \(k)[\(c)] is \(grads[i * p.dim + c]), expected \(want[c])")
                    }
                }
            }
        }
    }

    /// Random batches over every combination that matters: the history cut
    /// (L < W, L = W), the same-scene ablation, one scene, batch size 1.
    func testMatchesBruteForceOnRandomBatches() throws {
        var seed: UInt64 = 1
        for (B, W, L, S) in [(1, 1, 1, 1), (7, 5, 5, 3), (33, 12, 4, 4), (64, 9, 9, 2), (16, 6, 2, 1), (40, 3, 3, 4)] {
            for same in [false, true] {
                for _ in 0..<3 {
                    try checkOne(seed: seed, batch: B, width: W, historyWidth: L, scenes: S, sameSceneOnly: same)
                    seed += 1
                }
            }
        }
    }

    /// Re-indexing reuses the assembler (as the trainer does each step): nothing of the previous batch leaks.
    func testReuseAcrossBatchesForgetsThePreviousBatch() throws {
        var rng = SplitMix64(seed: 99)
        let big = Self.randomBatch(&rng, batch: 50, width: 8, scenes: 3)
        var small = Self.randomBatch(&rng, batch: 3, width: 8, scenes: 3)
        small.sceneKeys = big.sceneKeys
        var a = BatchAssembler(d: 2, historyWidth: 8, sameSceneOnly: false, sceneKeys: big.sceneKeys)
        try a.index(big.samples)
        try a.index(small.samples)
        let ref = Reference(small, historyWidth: 8, sameSceneOnly: false)
        for p in a.pulls { XCTAssertEqual(Set(p.keys), ref.keys(of: p.tableID), "table \(p.tableID) after re-indexing") }
        var input = ModelInput<Float>(d: 2, historyWidth: 8, capacity: 50)
        a.gather(rows: Self.rows(a), into: &input)
        XCTAssertEqual(input.batch, 3)
        XCTAssertEqual(input.historyLength, ref.historyLength)
        Self.expectRows(input.historyItem, ref.historyItem, table: FeatureTable.item.id, width: 2, "history item after re-indexing")
    }

    /// Duplicate keys: one example whose target item fills its whole history
    /// pulls the row once and pushes the sum of all its gradients.
    func testDuplicateKeysArePulledOnceAndTheirGradientsSummed() throws {
        var s = SampleBatch(lLong: 4, capacity: 2)
        s.count = 2
        s.user = [7, 7]; s.item = [5, 5]; s.category = [9, 9]; s.scene = [0, 0]
        s.label = [1, 0]; s.row = [0, 1]; s.truth = [.nan, .nan]; s.cold = [false, false]
        s.histLen = [4, 0]
        s.histItem = [5, 5, 5, 5, 0, 0, 0, 0]; s.histCategory = [9, 9, 9, 9, 0, 0, 0, 0]; s.histScene = [0, 0, 0, 0, 0, 0, 0, 0]
        var a = BatchAssembler(d: 1, historyWidth: 4, sameSceneOnly: false, sceneKeys: [77])
        try a.index(s)
        XCTAssertEqual(a.pulls.map(\.keys), [[5], [9], [7], [77], [77], [5]])
        var g = ModelInput<Float>(d: 1, historyWidth: 4, capacity: 2)
        g.resize(batch: 2)
        g.targetItem = [1, 2]; g.historyItem = [10, 20, 30, 40, 1000, 1000, 1000, 1000]
        g.targetCategory = [0.5, 0.25]; g.historyCategory = [1, 1, 1, 1, 0, 0, 0, 0]
        g.user = [3, 4]; g.sceneEmbedding = [1, 1]; g.historyScene = [2, 2, 2, 2, 0, 0, 0, 0]; g.itemBias = [0.125, 0.5]
        let out = a.scatter(g)
        XCTAssertEqual(out, [[103], [4.75], [7], [2], [8], [0.625]],
                         "item: 1 + 2 + 10 + 20 + 30 + 40 (padding of example 1 ignored); category 0.75 + 4; …")
    }

    /// A scene index the data set does not have (a damaged shard) is an error naming the log row.
    func testSceneIndexOutsideTheDataSetIsAnErrorNamingTheRow() throws {
        var rng = SplitMix64(seed: 5)
        var r = Self.randomBatch(&rng, batch: 4, width: 3, scenes: 2)
        r.samples.row = [10, 11, 12, 13]
        r.samples.scene[2] = 5
        var a = BatchAssembler(d: 2, historyWidth: 3, sameSceneOnly: false, sceneKeys: r.sceneKeys)
        XCTAssertThrowsError(try a.index(r.samples)) { e in
            let err = e as? ScenePSError
            XCTAssertEqual(err?.code, .data, "\(e)")
            XCTAssertEqual(err?.message, "sample of log row 12 has scene index 5, the data set has 2 scenes")
        }
        var h = Self.randomBatch(&rng, batch: 2, width: 3, scenes: 2)
        h.samples.row = [40, 41]
        h.samples.histLen = [0, 2]
        h.samples.histScene[3 + 1] = -1
        a = BatchAssembler(d: 2, historyWidth: 3, sameSceneOnly: false, sceneKeys: h.sceneKeys)
        XCTAssertThrowsError(try a.index(h.samples)) { e in
            let err = e as? ScenePSError
            XCTAssertEqual(err?.code, .data, "\(e)")
            XCTAssertEqual(err?.message, "history of log row 41 has scene index -1, the data set has 2 scenes")
        }
    }
}

extension BatchAssembler {
    /// Each pull with its table's width (the tests' view of what the servers send back).
    var widePulls: [(table: UInt32, keys: [UInt64], dim: Int)] { zip(pulls, dims).map { ($0.tableID, $0.keys, $1) } }
}
