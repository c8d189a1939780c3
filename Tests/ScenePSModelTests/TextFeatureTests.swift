import ScenePSCore
import XCTest

@testable import ScenePSModel

/// Title features (docs/ARCHITECTURE.md §3.6): `W_text · text(i)` added to the target's
/// and every behaviour token's item vector, with the distinct title rows of a
/// batch projected once. Finite differences in Double over every parameter
/// (W_text included) and every trainable input; the title rows themselves are
/// frozen and get no gradient.
final class TextFeatureTests: XCTestCase {
    static let textDim = 5

    static func config() -> MSIFConfig {
        var c = ModelGradientTests.smallConfig()
        c.textDim = textDim
        return c
    }

    /// A batch with `rows` distinct title rows; targets and tokens read them
    /// with repeats and some -1 (no title); padding positions point at real rows.
    static func input(_ c: MSIFConfig, width: Int, lengths: [Int], scenes: [Int], rows: Int, seed: UInt64) -> ModelInput<Double> {
        let base = ModelGradientTests.randomInput(d: c.d, width: width, lengths: lengths, scenes: scenes, seed: seed)
        var x = ModelInput<Double>(d: c.d, historyWidth: width, capacity: lengths.count, textDim: c.textDim)
        x.resize(batch: lengths.count)
        x.targetItem = base.targetItem; x.targetCategory = base.targetCategory; x.user = base.user
        x.sceneEmbedding = base.sceneEmbedding; x.itemBias = base.itemBias
        x.historyItem = base.historyItem; x.historyCategory = base.historyCategory; x.historyScene = base.historyScene
        x.historyLength = base.historyLength; x.scene = base.scene
        var rnd = TestRandom(seed: seed ^ 0x7e47)
        x.textRows = rnd.vector(rows * c.textDim)
        x.targetTextRow = (0..<lengths.count).map { b in b % 4 == 3 ? -1 : Int32(rnd.int(0...(rows - 1))) }
        x.historyTextRow = (0..<(lengths.count * width)).map { p in p % 5 == 4 ? -1 : Int32(rnd.int(0...(rows - 1))) }
        return x
    }

    /// ModelGradientTests.checkModel: finite differences over parameters and the trainable inputs.
    func checkModel(_ what: String, _ model: some CTRModel<Double>, input: ModelInput<Double>, seed: UInt64,
                    zero: (String) -> Bool, file: StaticString = #filePath, line: UInt = #line) {
        typealias M = ModelGradientTests
        let layout = model.layout
        let params = M.randomParameters(layout, seed: seed)
        let labels = (0..<input.batch).map { Double($0 % 2) }
        let (x0, blocks) = M.flatten(params, layout, input)
        gradientCheck(what, at: x0, blocks: blocks, tol: 1e-5, zeroBlocks: Set(blocks.map(\.name).filter(zero)),
                      loss: { x in
                          let (p, i) = M.unflatten(x, count: layout.count, like: input)
                          return M.run(model, p, i, labels: labels).loss
                      },
                      gradient: { x in
                          let (p, i) = M.unflatten(x, count: layout.count, like: input)
                          let r = M.run(model, p, i, labels: labels)
                          return r.parameterGradient + M.fields(r.inputGradient).flatMap { $0 }
                      }, file: file, line: line)
    }

    func testWholeModelGradientWithTitleFeatures() throws {
        let c = Self.config()
        let model = try MSIFModel<Double>(config: c, maxBatch: 8)
        XCTAssertEqual(model.layout["text.W"]?.shape, [c.d, Self.textDim])
        let x = Self.input(c, width: 9, lengths: [0, 1, 2, 3, 5, 7, 9, 4], scenes: [0, 1, 2, 2, 1, 0, 1, 2], rows: 6, seed: 21)
        checkModel("msif with title features", model, input: x, seed: 6, zero: { ModelGradientTests.unused(c, $0) })
        // W_text really gets a gradient (the check above would also pass for a tensor nobody reads if it were listed as zero).
        let params = ModelGradientTests.randomParameters(c.layout, seed: 23)
        let r = ModelGradientTests.run(model, params, x, labels: (0..<8).map { Double($0 % 2) })
        let e = model.layout["text.W"]!
        XCTAssertTrue(r.parameterGradient[e.offset..<(e.offset + e.count)].contains { abs($0) > 1e-6 })
    }

    /// The widths the model runs at: `model.text_dim`'s default (the
    /// catalogue's top principal components) and 384 (the vectors as
    /// embedded). Forward and backward do not depend on the width, but a
    /// width-dependent stride or buffer size would show here.
    func testGradientAtTheConfiguredTextWidths() throws {
        for k in [ClusterConfig.Model().textDim, FeatureTable.titleVectorDim] {
            var c = ModelGradientTests.smallConfig()
            c.textDim = k
            let model = try MSIFModel<Double>(config: c, maxBatch: 5)
            XCTAssertEqual(model.layout["text.W"]?.shape, [c.d, k])
            let x = Self.input(c, width: 6, lengths: [6, 1, 0, 4, 3], scenes: [0, 1, 2, 1, 0], rows: 5, seed: 31)
            checkModel("title features at width \(k)", model, input: x, seed: 32, zero: { ModelGradientTests.unused(c, $0) })
            let r = ModelGradientTests.run(model, ModelGradientTests.randomParameters(c.layout, seed: 33), x,
                                           labels: [1, 0, 1, 0, 1])
            let e = model.layout["text.W"]!
            XCTAssertTrue(r.parameterGradient[e.offset..<(e.offset + e.count)].contains { abs($0) > 1e-6 }, "width \(k)")
        }
    }

    func testShortOnlyAndLongOnlyWithTitleFeatures() throws {
        for (useLong, useShort) in [(true, false), (false, true)] {
            var c = Self.config()
            c.useLong = useLong; c.useShort = useShort
            let model = try MSIFModel<Double>(config: c, maxBatch: 5)
            let x = Self.input(c, width: 8, lengths: [8, 3, 0, 5, 2], scenes: [0, 1, 2, 0, 1], rows: 4, seed: 24)
            checkModel("title features, long \(useLong) short \(useShort)", model, input: x, seed: 25,
                                            zero: { ModelGradientTests.unused(c, $0) })
        }
    }

    /// With W_text = 0 the model is the model without title features (same
    /// offsets for every other tensor: text.W is laid out last).
    func testZeroProjectionIsTheModelWithoutTitles() throws {
        let c = Self.config()
        var plain = c
        plain.textDim = 0
        XCTAssertEqual(Array(c.layout.entries.dropLast()), plain.layout.entries, "text.W must come last")
        let with = try MSIFModel<Double>(config: c, maxBatch: 4), without = try MSIFModel<Double>(config: plain, maxBatch: 4)
        let x = Self.input(c, width: 6, lengths: [6, 2, 0, 4], scenes: [0, 1, 2, 1], rows: 3, seed: 26)
        var y = ModelGradientTests.randomInput(d: c.d, width: 6, lengths: [6, 2, 0, 4], scenes: [0, 1, 2, 1], seed: 26)
        y.historyLength = x.historyLength
        let p = ModelGradientTests.randomParameters(plain.layout, seed: 27)
        let labels: [Double] = [1, 0, 1, 0]
        let a = ModelGradientTests.run(with, p + [Double](repeating: 0, count: c.d * Self.textDim), x, labels: labels)
        let b = ModelGradientTests.run(without, p, y, labels: labels)
        XCTAssertEqual(a.logits, b.logits)
        XCTAssertEqual(Array(a.parameterGradient.prefix(p.count)), b.parameterGradient)
    }

    /// A title row nobody reads, or read only at padding positions, changes nothing;
    /// one read by a target changes that example's logit.
    func testOnlyReferencedTitleRowsMatter() throws {
        let c = Self.config()
        let model = try MSIFModel<Double>(config: c, maxBatch: 3)
        var x = Self.input(c, width: 4, lengths: [2, 0, 1], scenes: [0, 1, 2], rows: 4, seed: 28)
        x.targetTextRow = [0, -1, 1]
        x.historyTextRow = [1, 2, 3, 3, /* padding: */ 3, 3, 3, 3, 2, 3, 3, 3]
        let p = ModelGradientTests.randomParameters(c.layout, seed: 29)
        let labels: [Double] = [1, 0, 1]
        let base = ModelGradientTests.run(model, p, x, labels: labels)
        // (A finite change: the model projects every distinct row of the batch,
        // and the assembler only ever sends rows some kept token reads.)
        var unread = x
        for i in 0..<Self.textDim { unread.textRows[3 * Self.textDim + i] = 1e3 }
        let u = ModelGradientTests.run(model, p, unread, labels: labels)
        XCTAssertEqual(u.logits, base.logits, "row 3 is read only at padding positions")
        XCTAssertEqual(u.parameterGradient, base.parameterGradient)
        var target = x
        target.textRows[0] += 0.5
        let t = ModelGradientTests.run(model, p, target, labels: labels)
        XCTAssertNotEqual(t.logits[0], base.logits[0])
        XCTAssertEqual(t.logits[1], base.logits[1])
        XCTAssertEqual(t.logits[2], base.logits[2])
    }

    func testConfigDerivesTheTextWidth() {
        var m = ClusterConfig.Model()
        XCTAssertEqual(MSIFConfig(m).textDim, 0)
        XCTAssertNil(MSIFConfig(m).layout["text.W"])
        m.textFeatures = true
        XCTAssertEqual(MSIFConfig(m).textDim, 64, "model.text_dim's default")
        XCTAssertEqual(MSIFConfig(m).layout["text.W"]?.shape, [m.d, 64])
        m.textDim = FeatureTable.titleVectorDim
        XCTAssertEqual(MSIFConfig(m).layout["text.W"]?.shape, [m.d, 384])
    }
}
