import ScenePSCore
import ScenePSData
import ScenePSWorker
import XCTest

@testable import ScenePSModel

/// One reference forward/backward pass per fixture (Fixtures/msif-*.json,
/// written by the reference msif.py in float64; Fixtures/README.md): logits,
/// loss, every dense gradient and every embedding row's summed gradient. The
/// batch goes through the worker's real `BatchAssembler`: its gather builds the
/// model input (Float) and its scatter sums the gradients per row (both precisions).
final class FixtureTests: XCTestCase {
    static let names = ["msif-small", "msif-small-long-only", "msif-small-no-scene-gates"]

    /// A fixture decoded into model inputs, with the keys needed to scatter the gradients back.
    struct Case {
        let name: String
        let config: MSIFConfig
        let params: [String: (shape: [Int], data: [Double])]
        let batch: Int, width: Int, d: Int
        let input: ModelInput<Double>
        let labels: [Double]
        let keys: [String: [Int]]        // batch field -> keys (flattened for histories)
        let tables: [String: [String: [Double]]]
        let expectedLogits: [Double], expectedLoss: Double
        let expectedGrads: [String: [Double]]
        let expectedEmbGrads: [String: [String: [Double]]]

        init(_ name: String) throws {
            self.name = name
            let j = try Fixtures.load(name)
            func obj(_ any: Any?, _ what: String) throws -> [String: Any] {
                guard let o = any as? [String: Any] else { throw ScenePSError.data("\(name): \(what) is not an object") }
                return o
            }
            func nums(_ any: Any?, _ what: String) throws -> [Double] {
                guard let a = any as? [Any] else { throw ScenePSError.data("\(name): \(what) is not an array") }
                return try a.map {
                    guard let n = $0 as? NSNumber else { throw ScenePSError.data("\(name): \(what) holds a non-number") }
                    return n.doubleValue
                }
            }
            func ints(_ any: Any?, _ what: String) throws -> [Int] {
                if let nested = any as? [[Any]] { return try nested.flatMap { try nums($0, what).map { Int($0) } } }
                return try nums(any, what).map { Int($0) }
            }
            let cfg = try obj(j["config"], "config")
            func ci(_ k: String) throws -> Int {
                guard let v = cfg[k] as? Int else { throw ScenePSError.data("\(name): config.\(k) missing") }
                return v
            }
            func cb(_ k: String) throws -> Bool {
                guard let v = cfg[k] as? Bool else { throw ScenePSError.data("\(name): config.\(k) missing") }
                return v
            }
            var c = MSIFConfig()
            c.d = try ci("d"); c.lLong = try ci("l_long"); c.lShort = try ci("l_short"); c.heads = try ci("heads")
            c.ffn = try ci("ffn"); c.experts = try ci("experts"); c.headWidth = try ci("head_width"); c.scenes = try ci("scenes")
            c.expertWidths = try ints(cfg["expert_widths"], "expert_widths")
            c.useLong = try cb("use_long"); c.useShort = try cb("use_short"); c.sceneGates = try cb("scene_gates")
            config = c

            var params: [String: (shape: [Int], data: [Double])] = [:]
            for (k, v) in try obj(j["params"], "params") {
                let p = try obj(v, "params.\(k)")
                params[k] = (try ints(p["shape"], "\(k).shape"), try nums(p["data"], "\(k).data"))
            }
            self.params = params

            var tables: [String: [String: [Double]]] = [:]
            for (t, rows) in try obj(j["embeddings"], "embeddings") {
                var m: [String: [Double]] = [:]
                for (key, row) in try obj(rows, "embeddings.\(t)") { m[key] = try nums(row, "embeddings.\(t).\(key)") }
                tables[t] = m
            }
            self.tables = tables

            let b = try obj(j["batch"], "batch")
            var keys: [String: [Int]] = [:]
            for f in ["user", "item", "category", "scene", "hist_len", "hist_item", "hist_category", "hist_scene"] {
                keys[f] = try ints(b[f], "batch.\(f)")
            }
            self.keys = keys
            labels = try nums(b["label"], "batch.label")
            let batch = labels.count, d = c.d
            let width = (keys["hist_item"]?.count ?? 0) / max(batch, 1)
            self.batch = batch; self.width = width; self.d = d

            func row(_ table: String, _ key: Int, width w: Int) throws -> [Double] {
                if let r = tables[table]?["\(key)"] {
                    guard r.count == w else { throw ScenePSError.data("\(name): \(table).\(key) has \(r.count) values") }
                    return r
                }
                guard key == 0 else { throw ScenePSError.data("\(name): no row for \(table) key \(key)") }
                return [Double](repeating: 0, count: w)   // padding key 0 has no row
            }
            var input = ModelInput<Double>(d: d, historyWidth: width, capacity: batch)
            input.resize(batch: batch)
            input.targetItem = try keys["item"]!.flatMap { try row("item", $0, width: d) }
            input.targetCategory = try keys["category"]!.flatMap { try row("category", $0, width: d) }
            input.user = try keys["user"]!.flatMap { try row("user", $0, width: d) }
            input.sceneEmbedding = try keys["scene"]!.flatMap { try row("scene", $0, width: d) }
            input.itemBias = try keys["item"]!.flatMap { try row("item_bias", $0, width: 1) }
            input.historyItem = try keys["hist_item"]!.flatMap { try row("item", $0, width: d) }
            input.historyCategory = try keys["hist_category"]!.flatMap { try row("category", $0, width: d) }
            input.historyScene = try keys["hist_scene"]!.flatMap { try row("behaviour_scene", $0, width: d) }
            input.historyLength = keys["hist_len"]!.map { Int32($0) }
            input.scene = keys["scene"]!.map { Int32($0) }
            self.input = input

            let e = try obj(j["expected"], "expected")
            expectedLogits = try nums(e["logits"], "expected.logits")
            guard let loss = (e["loss"] as? NSNumber)?.doubleValue else { throw ScenePSError.data("\(name): expected.loss") }
            expectedLoss = loss
            var grads: [String: [Double]] = [:]
            for (k, v) in try obj(e["grads"], "expected.grads") { grads[k] = try nums(v, "grads.\(k)") }
            expectedGrads = grads
            var embGrads: [String: [String: [Double]]] = [:]
            for (t, rows) in try obj(e["emb_grads"], "expected.emb_grads") {
                var m: [String: [Double]] = [:]
                for (key, r) in try obj(rows, "emb_grads.\(t)") { m[key] = try nums(r, "emb_grads.\(t).\(key)") }
                embGrads[t] = m
            }
            expectedEmbGrads = embGrads
        }

        /// The fixture's parameters in the model's flat layout.
        func flatParameters(_ layout: ParameterLayout) throws -> [Double] {
            var flat = [Double](repeating: .nan, count: layout.count)
            guard Set(params.keys) == Set(layout.entries.map(\.name)) else {
                throw ScenePSError.data("\(name): parameter names differ: \(Set(params.keys).symmetricDifference(layout.entries.map(\.name)))")
            }
            for e in layout.entries {
                let p = params[e.name]!
                guard p.shape == e.shape, p.data.count == e.count else {
                    throw ScenePSError.data("\(name): \(e.name) shape \(p.shape) != \(e.shape)")
                }
                for i in 0..<e.count { flat[e.offset + i] = p.data[i] }
            }
            return flat
        }

        /// The fixture's batch as a chunk delivers it to the worker.
        var samples: SampleBatch {
            var s = SampleBatch(lLong: width, capacity: batch)
            s.count = batch
            s.user = keys["user"]!.map { UInt64($0) }
            s.item = keys["item"]!.map { UInt64($0) }
            s.category = keys["category"]!.map { UInt64($0) }
            s.scene = keys["scene"]!.map { Int32($0) }
            s.label = labels.map { Float($0) }
            s.row = (0..<batch).map { Int64($0) }
            s.truth = [Float](repeating: .nan, count: batch)
            s.cold = [Bool](repeating: false, count: batch)
            s.histLen = keys["hist_len"]!.map { Int32($0) }
            s.histItem = keys["hist_item"]!.map { UInt64($0) }
            s.histCategory = keys["hist_category"]!.map { UInt64($0) }
            s.histScene = keys["hist_scene"]!.map { Int32($0) }
            return s
        }

        /// The worker's assembler over this batch. The fixture's scene tables are
        /// keyed by scene index, so scene s has key s.
        func assembler() throws -> BatchAssembler {
            var a = BatchAssembler(d: d, historyWidth: width, sameSceneOnly: false,
                                   sceneKeys: (0..<config.scenes).map { UInt64($0) })
            try a.index(samples)
            return a
        }

        static let tableNames: [UInt32: String] = [
            FeatureTable.item.id: "item", FeatureTable.category.id: "category", FeatureTable.user.id: "user",
            FeatureTable.scene.id: "scene", FeatureTable.behaviourScene.id: "behaviour_scene", FeatureTable.itemBias.id: "item_bias",
        ]

        /// What a pull of the assembler's keys returns: the fixture's rows, in `pulls` order.
        func pulledRows(_ a: BatchAssembler) throws -> [[Float]] {
            try zip(a.pulls, a.dims).map { p, dim in
                let table = Case.tableNames[p.tableID]!
                return try p.keys.flatMap { k -> [Float] in
                    guard let r = tables[table]?["\(k)"], r.count == dim else {
                        throw ScenePSError.data("\(name): the assembler pulls \(table) key \(k), which has no row of width \(dim)")
                    }
                    return r.map { Float($0) }
                }
            }
        }

        /// The assembler's scatter of the per-position input gradients, per table and key.
        func embeddingGradients<T: BLASScalar>(_ g: ModelInputGradient<T>, _ a: BatchAssembler) -> [String: [String: [Double]]] {
            var f = ModelInputGradient<Float>(d: g.d, historyWidth: g.historyWidth, capacity: g.batch)
            f.resize(batch: g.batch)
            func cast(_ x: [T]) -> [Float] { x.map { Float(Double($0)) } }
            f.targetItem = cast(g.targetItem); f.targetCategory = cast(g.targetCategory); f.user = cast(g.user)
            f.sceneEmbedding = cast(g.sceneEmbedding); f.itemBias = cast(g.itemBias)
            f.historyItem = cast(g.historyItem); f.historyCategory = cast(g.historyCategory); f.historyScene = cast(g.historyScene)
            f.historyLength = g.historyLength; f.scene = g.scene
            var out: [String: [String: [Double]]] = [:]
            for ((p, dim), rows) in zip(zip(a.pulls, a.dims), a.scatter(f)) {
                let table = Case.tableNames[p.tableID]!
                for (i, k) in p.keys.enumerated() {
                    out[table, default: [:]]["\(k)"] = rows[(i * dim)..<((i + 1) * dim)].map { Double($0) }
                }
            }
            return out
        }
    }

    /// The assembler's gather builds exactly the fixture's input at every valid
    /// position (padding is zero), with each example's scene and history length.
    func testAssemblerGatherBuildsTheFixtureInput() throws {
        for name in Self.names {
            let c = try Case(name)
            let a = try c.assembler()
            var input = ModelInput<Float>(d: c.d, historyWidth: c.width, capacity: c.batch)
            a.gather(rows: try c.pulledRows(a), into: &input)
            XCTAssertTrue(input.isConsistent, name)
            XCTAssertEqual(input.batch, c.batch, name)
            XCTAssertEqual(input.scene, c.input.scene, "\(name): scene index of every example (selects gate and head)")
            XCTAssertEqual(input.historyLength, c.input.historyLength, name)
            func same(_ ours: [Float], _ ref: [Double], _ what: String) {
                XCTAssertEqual(ours, ref.map { Float($0) }, "\(name) \(what)")
            }
            same(input.targetItem, c.input.targetItem, "target item")
            same(input.targetCategory, c.input.targetCategory, "target category")
            same(input.user, c.input.user, "user")
            same(input.sceneEmbedding, c.input.sceneEmbedding, "scene embedding")
            same(input.itemBias, c.input.itemBias, "item bias")
            for b in 0..<c.batch {
                for j in 0..<c.width {
                    let r = ((b * c.width + j) * c.d)..<((b * c.width + j + 1) * c.d)
                    let valid = j < Int(c.input.historyLength[b])
                    for (field, ours, ref) in [("item", input.historyItem, c.input.historyItem),
                                               ("category", input.historyCategory, c.input.historyCategory),
                                               ("scene", input.historyScene, c.input.historyScene)] {
                        let want = valid ? ref[r].map { Float($0) } : [Float](repeating: 0, count: c.d)
                        XCTAssertEqual(Array(ours[r]), want, "\(name) history \(field) of example \(b) position \(j)")
                    }
                }
            }
        }
    }

    private func run<T: BLASScalar>(_ c: Case, as _: T.Type, tol: Double) throws {
        let model = try MSIFModel<T>(config: c.config, maxBatch: c.batch + 3)
        let params = try c.flatParameters(model.layout).map { T($0) }
        let assembler = try c.assembler()
        var input = ModelInput<T>(d: c.d, historyWidth: c.width, capacity: c.batch)
        input.resize(batch: c.batch)
        input.targetItem = c.input.targetItem.map { T($0) }
        input.targetCategory = c.input.targetCategory.map { T($0) }
        input.user = c.input.user.map { T($0) }
        input.sceneEmbedding = c.input.sceneEmbedding.map { T($0) }
        input.itemBias = c.input.itemBias.map { T($0) }
        input.historyItem = c.input.historyItem.map { T($0) }
        input.historyCategory = c.input.historyCategory.map { T($0) }
        input.historyScene = c.input.historyScene.map { T($0) }
        input.historyLength = c.input.historyLength
        input.scene = c.input.scene
        if T.self == Float.self {
            // In Float, the model reads what the worker's gather builds.
            var gathered = ModelInput<Float>(d: c.d, historyWidth: c.width, capacity: c.batch)
            assembler.gather(rows: try c.pulledRows(assembler), into: &gathered)
            input = gathered as! ModelInput<T>
        }
        let labels = c.labels.map { T($0) }
        var grads = [T](repeating: 0, count: model.layout.count)
        var inGrad = ModelInputGradient<T>(d: c.d, historyWidth: 1, capacity: 1)
        var logits: [T] = []
        let what = "\(c.name) [\(T.self)]"

        var forwardOnly: [T] = []
        params.withUnsafeBufferPointer { model.logits(parameters: $0, input: input, into: &forwardOnly) }
        assertClose(forwardOnly, c.expectedLogits, tol: tol, "\(what) logits (forward only)")

        let loss = params.withUnsafeBufferPointer { p in
            labels.withUnsafeBufferPointer { l in
                grads.withUnsafeMutableBufferPointer { g in
                    model.lossAndGradients(parameters: p, input: input, labels: l, parameterGradient: g,
                                           inputGradient: &inGrad, logits: &logits)
                }
            }
        }
        assertClose(logits, c.expectedLogits, tol: tol, "\(what) logits")
        assertClose([loss], [c.expectedLoss], tol: tol, "\(what) loss")
        XCTAssertEqual(Set(c.expectedGrads.keys), Set(model.layout.entries.map(\.name)), "\(what) gradient names")
        // short.b_k adds q·b_k to every score of a query: softmax ignores it, so its gradient is
        // zero analytically and the reference holds only float64 round-off (~1e-19). A relative
        // error against round-off is meaningless; both must instead be negligible next to the
        // whole gradient.
        let allExpected = c.expectedGrads.values.flatMap { $0 }
        let scale = allExpected.reduce(0) { $0 + $1 * $1 }.squareRoot()
        let roundOff = T.self == Double.self ? 1e-12 : 1e-6
        for e in model.layout.entries {
            guard let expected = c.expectedGrads[e.name] else { continue }
            let ours = Array(grads[e.offset..<(e.offset + e.count)])
            if e.name == "short.b_k" {
                let oursNorm = ours.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
                let refNorm = expected.reduce(0) { $0 + $1 * $1 }.squareRoot()
                XCTAssertEqual(ours.count, expected.count, "\(what) grad short.b_k length")
                XCTAssertLessThanOrEqual(refNorm, 1e-12 * scale, "\(what) reference short.b_k is not round-off")
                XCTAssertLessThanOrEqual(oursNorm, roundOff * scale, "\(what) grad short.b_k should vanish")
                continue
            }
            assertClose(ours, expected, tol: tol, "\(what) grad \(e.name)")
        }
        XCTAssertTrue(inGrad.isConsistent, "\(what) input gradient shape")
        let emb = c.embeddingGradients(inGrad, assembler)
        XCTAssertEqual(Set(emb.keys), Set(c.expectedEmbGrads.keys), "\(what) embedding tables")
        // Embedding gradients reach the servers through the worker's Float scatter (per key, a Float sum of
        // its occurrences' gradients) whatever T: at least Float's class, 1e-5 relative (~170 ulp), and a
        // floor of 1e-6 of the table's largest row for a key whose occurrences cancel (a sum's round-off
        // scales with its terms); that floor is four orders below the smallest reference row here, so a zero row still fails.
        let embTol = max(tol, 1e-5)
        for (table, rows) in c.expectedEmbGrads {
            let ours = emb[table] ?? [:]
            let tableScale = rows.values.map { $0.reduce(0) { $0 + $1 * $1 }.squareRoot() }.max() ?? 0
            XCTAssertTrue(Set(ours.keys).isSubset(of: Set(rows.keys)), "\(what) \(table): rows the reference has no gradient for")
            for (key, expected) in rows {
                guard let mine = ours[key] else {
                    // A key that occurs only at padding positions is not pulled; its reference gradient is zero.
                    let norm = expected.reduce(0) { $0 + $1 * $1 }.squareRoot()
                    XCTAssertLessThanOrEqual(norm, 1e-12, "\(what) \(table)[\(key)] has a gradient but the assembler did not pull it")
                    continue
                }
                assertClose(mine, expected, tol: embTol, atol: 1e-6 * tableScale, "\(what) emb grad \(table)[\(key)]")
            }
        }
        // Padding positions never receive gradient.
        for b in 0..<c.batch {
            let valid = min(max(Int(c.input.historyLength[b]), 0), c.width)
            for j in valid..<c.width {
                for i in 0..<c.d {
                    let k = (b * c.width + j) * c.d + i
                    XCTAssertEqual(inGrad.historyItem[k], 0, "\(what) padding gradient at example \(b) position \(j)")
                }
            }
        }
    }

    func testFixturesInDouble() throws {
        for name in Self.names { try run(try Case(name), as: Double.self, tol: 1e-6) }
    }

    func testFixturesInFloat() throws {
        for name in Self.names { try run(try Case(name), as: Float.self, tol: 1e-3) }
    }

    /// The fixture's parameter names and shapes are exactly the layout's, in the reference's order.
    func testLayoutMatchesFixtureNames() throws {
        let c = try Case("msif-small")
        let layout = c.config.layout
        XCTAssertEqual(layout.entries.count, c.params.count)
        for e in layout.entries { XCTAssertEqual(c.params[e.name]?.shape, e.shape, e.name) }
    }
}
