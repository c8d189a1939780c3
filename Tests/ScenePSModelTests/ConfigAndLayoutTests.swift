import ScenePSCore
import XCTest

@testable import ScenePSModel

final class ConfigAndLayoutTests: XCTestCase {
    func testDefaultConfigIsValid() throws {
        try MSIFConfig().validate()
        try BaselineConfig().validate()
    }

    func testBadConfigsAreRejectedWithAReason() {
        let cases: [(String, (inout MSIFConfig) -> Void, String)] = [
            ("heads not dividing d", { $0.heads = 3 }, "heads (3) must divide d (32)"),
            ("l_short > l_long", { $0.lShort = 60 }, "l_short (60) must not exceed l_long (50)"),
            ("zero d", { $0.d = 0 }, "d must be positive"),
            ("zero experts", { $0.experts = 0 }, "experts must be positive"),
            ("three expert widths", { $0.expertWidths = [8, 8, 8] }, "exactly 2 entries"),
            ("negative expert width", { $0.expertWidths = [8, -1] }, "expert_widths must be positive"),
            ("zero head width", { $0.headWidth = 0 }, "head_width must be positive"),
            ("zero scenes", { $0.scenes = 0 }, "scenes must be positive"),
            ("zero ffn", { $0.ffn = 0 }, "ffn must be positive"),
            ("both interests off", { $0.useLong = false; $0.useShort = false }, "at least one"),
        ]
        for (what, change, message) in cases {
            var c = MSIFConfig()
            change(&c)
            XCTAssertThrowsError(try c.validate(), what) { error in
                guard let e = error as? ScenePSError else { return XCTFail("\(what): \(error)") }
                XCTAssertEqual(e.code, .config, what)
                XCTAssertTrue(e.message.contains(message), "\(what): \(e.message)")
            }
            XCTAssertThrowsError(try MSIFModel<Float>(config: c, maxBatch: 4), what) { error in
                XCTAssertEqual((error as? ScenePSError)?.code, .config, "\(what): \(error)")
                XCTAssertTrue("\(error)".contains(message), "\(what): the model refuses the config with the same error: \(error)")
            }
        }
        var b = BaselineConfig()
        b.hidden = [16, 0]
        for attempt in [{ try b.validate() }, { _ = try BaselineModel<Float>(config: b, maxBatch: 4) }] {
            XCTAssertThrowsError(try attempt()) { error in
                XCTAssertEqual((error as? ScenePSError)?.code, .config, "\(error)")
                XCTAssertTrue("\(error)".contains("hidden widths must be positive, got [16, 0]"), "\(error)")
            }
        }
    }

    func testLayoutIsContiguousWithReferenceNames() {
        let layout = MSIFConfig().layout
        var next = 0
        for e in layout.entries {
            XCTAssertEqual(e.offset, next, e.name)
            next += e.count
        }
        XCTAssertEqual(layout.count, next)
        XCTAssertEqual(layout["attn_long.W_q"]?.shape, [32, 64])
        XCTAssertEqual(layout["short.pos"]?.shape, [10, 32])
        XCTAssertEqual(layout["experts.3.W1"]?.shape, [128, 160])
        XCTAssertEqual(layout["scene_gate.2.G"]?.shape, [4, 160])
        XCTAssertEqual(layout["head.1.beta"]?.shape, [1])
        XCTAssertNil(layout["head.3.beta"])
        XCTAssertEqual(BaselineConfig().layout.entries.map(\.name), ["mlp.0.W", "mlp.0.b", "mlp.1.W", "mlp.1.b", "mlp.2.W", "mlp.2.b"])
        XCTAssertEqual(BaselineConfig().layout["mlp.2.W"]?.shape, [1, 32])
    }

    func testInitialiserFollowsResetParameters() {
        let layout = MSIFConfig().layout
        let a: [Double] = layout.initialValues(seed: 42)
        let again: [Double] = layout.initialValues(seed: 42)
        let other: [Double] = layout.initialValues(seed: 43)
        let asFloat: [Float] = layout.initialValues(seed: 42)
        XCTAssertEqual(a, again, "deterministic")
        XCTAssertNotEqual(a, other, "seed matters")
        XCTAssertEqual(asFloat, a.map { Float($0) })
        for e in layout.entries {
            let v = Array(a[e.offset..<(e.offset + e.count)])
            if e.name.hasSuffix("gamma") {
                XCTAssertEqual(v, [Double](repeating: 1, count: e.count), e.name)
            } else if e.shape.count == 1 {
                XCTAssertEqual(v, [Double](repeating: 0, count: e.count), e.name)
            } else {
                let bound = (6.0 / Double(e.shape[0] + e.shape[1])).squareRoot()
                XCTAssertTrue(v.allSatisfy { abs($0) <= bound }, e.name)
                // U(−b, b): variance b²/3; loose bounds for the sample size.
                let mean = v.reduce(0, +) / Double(v.count)
                let variance = v.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(v.count)
                // Sampling, not round-off (seeded, no BLAS): the ratio's sd is √(0.8/n) for n uniform draws,
                // 0.028 at n = 1000, 0.22 at n = 16; the bounds are ≥ 2.2 sd, and a wrong scale (×2 = ratio 4) fails.
                XCTAssertEqual(variance / (bound * bound / 3), 1, accuracy: e.count >= 1000 ? 0.1 : 0.5, e.name)
                XCTAssertLessThan(abs(mean), bound * (e.count >= 1000 ? 0.1 : 0.5), e.name)
            }
        }
        // A tensor's values depend on its name and the seed only.
        var c = MSIFConfig()
        c.scenes = 5
        let wider: [Double] = c.layout.initialValues(seed: 42)
        let e1 = layout["experts.1.W1"]!, e2 = c.layout["experts.1.W1"]!
        XCTAssertEqual(Array(a[e1.offset..<(e1.offset + e1.count)]), Array(wider[e2.offset..<(e2.offset + e2.count)]))
    }

    func testModelInputResizeKeepsCapacityAndZeroFills() {
        var input = ModelInput<Float>(d: 4, historyWidth: 3, capacity: 8)
        input.resize(batch: 5)
        XCTAssertTrue(input.isConsistent)
        XCTAssertEqual(input.historyItem.count, 5 * 3 * 4)
        input.targetItem[0] = 7
        input.historyItem[59] = 3
        input.resize(batch: 2)
        XCTAssertEqual(input.targetItem.count, 8)
        XCTAssertEqual(input.targetItem[0], 7)
        XCTAssertGreaterThanOrEqual(input.historyItem.capacity, 8 * 3 * 4)
        input.resize(batch: 5)
        XCTAssertEqual(input.historyItem[59], 0, "regrown space is zero")
        XCTAssertTrue(input.isConsistent)
    }
}
