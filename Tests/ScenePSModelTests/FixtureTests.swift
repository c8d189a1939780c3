import ScenePSCore
import XCTest

@testable import ScenePSModel

/// One reference forward/backward pass per fixture (shared/fixtures/msif-*.json,
/// written by shared/reference/msif.py in float64): logits, loss, every dense
/// gradient and every embedding row's summed gradient.
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

        /// Sums the per-position input gradients by key, per table, as the worker will.
        func embeddingGradients(_ g: ModelInputGradient<Double>) -> [String: [String: [Double]]] {
            var out: [String: [String: [Double]]] = [:]
            func scatter(_ table: String, _ keys: [Int], _ grad: [Double], width w: Int) {
                for (i, key) in keys.enumerated() where tables[table]?["\(key)"] != nil {
                    var r = out[table, default: [:]]["\(key)", default: [Double](repeating: 0, count: w)]
                    for j in 0..<w { r[j] += grad[i * w + j] }
                    out[table, default: [:]]["\(key)"] = r
                }
            }
            scatter("item", keys["item"]!, g.targetItem, width: d)
            scatter("item", keys["hist_item"]!, g.historyItem, width: d)
            scatter("category", keys["category"]!, g.targetCategory, width: d)
            scatter("category", keys["hist_category"]!, g.historyCategory, width: d)
            scatter("user", keys["user"]!, g.user, width: d)
            scatter("scene", keys["scene"]!, g.sceneEmbedding, width: d)
            scatter("behaviour_scene", keys["hist_scene"]!, g.historyScene, width: d)
            scatter("item_bias", keys["item"]!, g.itemBias, width: 1)
            return out
        }
    }

    private func run<T: BLASScalar>(_ c: Case, as _: T.Type, tol: Double) throws {
        let model = try MSIFModel<T>(config: c.config, maxBatch: c.batch + 3)
        let params = try c.flatParameters(model.layout).map { T($0) }
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
        var dg = ModelInputGradient<Double>(d: c.d, historyWidth: c.width, capacity: c.batch)
        dg.resize(batch: c.batch)
        dg.targetItem = inGrad.targetItem.map { Double($0) }
        dg.targetCategory = inGrad.targetCategory.map { Double($0) }
        dg.user = inGrad.user.map { Double($0) }
        dg.sceneEmbedding = inGrad.sceneEmbedding.map { Double($0) }
        dg.itemBias = inGrad.itemBias.map { Double($0) }
        dg.historyItem = inGrad.historyItem.map { Double($0) }
        dg.historyCategory = inGrad.historyCategory.map { Double($0) }
        dg.historyScene = inGrad.historyScene.map { Double($0) }
        XCTAssertTrue(dg.isConsistent, "\(what) input gradient shape")
        let emb = c.embeddingGradients(dg)
        XCTAssertEqual(Set(emb.keys), Set(c.expectedEmbGrads.keys), "\(what) embedding tables")
        for (table, rows) in c.expectedEmbGrads {
            XCTAssertEqual(Set(emb[table]?.keys ?? [:].keys), Set(rows.keys), "\(what) keys of \(table)")
            for (key, expected) in rows {
                assertClose(emb[table]?[key] ?? [], expected, tol: tol, "\(what) emb grad \(table)[\(key)]")
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
