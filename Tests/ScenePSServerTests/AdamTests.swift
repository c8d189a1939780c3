import ScenePSCore
import ScenePSProtocol
import XCTest
@testable import ScenePSServer

/// A plain Double reference, written out step by step, beside the fast kernel.
struct ReferenceAdam {
    var lr = 0.1, b1 = 0.9, b2 = 0.999, eps = 1e-8, l2 = 0.0
    func step(w: inout [Double], m: inout [Double], v: inout [Double], g: [Double], t: Int) {
        for i in 0..<w.count {
            let gi = g[i] + l2 * w[i]
            m[i] = b1 * m[i] + (1 - b1) * gi
            v[i] = b2 * v[i] + (1 - b2) * gi * gi
            let mh = m[i] / (1 - pow(b1, Double(t)))
            let vh = v[i] / (1 - pow(b2, Double(t)))
            w[i] -= lr * mh / (vh.squareRoot() + eps)
        }
    }
}

/// |a[i] − ref[i]| ≤ rel · max(|ref[i]|, floor) element by element. The Adam kernel is plain Swift SIMD
/// code (no BLAS, no run-time kernel choice), so its error against the Double reference is Float
/// round-off of a few operations per element: `rel` 2e-5 is ~170 ulp. `floor` is the magnitude of the
/// terms an element was computed from where it can cancel to near zero (weights and first moments:
/// sums of signed terms ≥ 1e-3 here); a second moment is a sum of squares, which cannot cancel: floor 0.
func assertClose(_ a: [Float], _ ref: [Double], rel: Double = 2e-5, floor: Double = 1e-3, _ what: String,
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, ref.count, "\(what): length", file: file, line: line)
    guard a.count == ref.count else { return }
    for i in 0..<a.count {
        let err = abs(Double(a[i]) - ref[i])
        XCTAssertLessThanOrEqual(err, rel * max(abs(ref[i]), floor), "\(what)[\(i)]: \(a[i]) vs \(ref[i])", file: file, line: line)
    }
}

final class AdamTests: XCTestCase {
    let config = AdamConfig(learningRate: 0.1, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, l2: 0)

    func testFirstStepMovesByLearningRateTimesSign() {
        // Hand-computed: m = 0.1 g, v = 0.001 g², m̂ = g, v̂ = g²  =>  Δw = -lr · g/|g|.
        var w: [Float] = [0, 1, -2], s = [Float](repeating: 0, count: 6)
        let g: [Float] = [0.5, -3, 1e-3]
        w.withUnsafeMutableBufferPointer { wp in s.withUnsafeMutableBufferPointer { sp in g.withUnsafeBufferPointer { gp in
            Adam(config).update(weights: wp.baseAddress!, state: sp.baseAddress!, gradient: gp.baseAddress!, count: 3, step: 1)
        } } }
        assertClose(w, [-0.1, 1.1, -2.1], rel: 1e-5, "w after one step")
        // 1 - b2 is not exact in Float (0.0010000467): 1e-4 relative; every value is one product: no floor.
        assertClose(s, [0.05, -0.3, 1e-4, 0.00025, 0.009, 1e-9], rel: 1e-4, floor: 0, "m, v after one step")
    }

    func testLearningRateScaleMultipliesTheStep() {
        var w: [Float] = [0, 1], s = [Float](repeating: 0, count: 4)
        let g: [Float] = [0.5, -3]
        w.withUnsafeMutableBufferPointer { wp in s.withUnsafeMutableBufferPointer { sp in g.withUnsafeBufferPointer { gp in
            Adam(config).update(weights: wp.baseAddress!, state: sp.baseAddress!, gradient: gp.baseAddress!, count: 2, step: 1,
                                lrScale: 0.25)
        } } }
        assertClose(w, [-0.025, 1.025], rel: 1e-5, "lr 0.1 scaled by 0.25")
    }

    /// Per-row lazy Adam: each row's bias correction uses its own update count.
    func testSparseRowsUseTheirOwnStepCounts() {
        var cfg = config
        cfg.l2 = 0.01
        let spec = TableSpec.sparse(id: 1, name: "e", dim: 4, initKind: .uniform, initScale: 0.5, seed: 8, adam: cfg)
        let table = SparseTable(spec: spec, optimizer: Adam(cfg))
        let ref = ReferenceAdam(lr: 0.1, b1: 0.9, b2: 0.999, eps: 1e-8, l2: 0.01)
        let keyA: UInt64 = 100, keyB: UInt64 = 200
        func initial(_ k: UInt64) -> [Double] {
            var v = [Float](repeating: 0, count: 4)
            v.withUnsafeMutableBufferPointer { RowInitializer.fill($0.baseAddress!, count: 4, spec: spec, key: k) }
            return v.map(Double.init)
        }
        var wA = initial(keyA), mA = [Double](repeating: 0, count: 4), vA = mA
        var wB = initial(keyB), mB = mA, vB = mA
        var rng = SplitMix64(seed: 1)
        func grad() -> [Float] { (0..<4).map { _ in Float(rng.nextUnit() * 2 - 1) } }
        // Pushes 1 and 2 touch A only; push 3 touches A and B (B's first update: t = 1).
        for p in 1...3 {
            let gA = grad(), gB = grad()
            let keys: [UInt64] = p < 3 ? [keyA] : [keyA, keyB]
            let gs: [Float] = p < 3 ? gA : gA + gB
            keys.withUnsafeBufferPointer { k in gs.withUnsafeBufferPointer { table.push(keys: k, gradients: $0.baseAddress!) } }
            ref.step(w: &wA, m: &mA, v: &vA, g: gA.map(Double.init), t: p)
            if p == 3 { ref.step(w: &wB, m: &mB, v: &vB, g: gB.map(Double.init), t: 1) }
        }
        let a = table.row(keyA)!, b = table.row(keyB)!
        XCTAssertEqual(a.step, 3)
        XCTAssertEqual(b.step, 1)
        assertClose(a.weights, wA, "row A weights")
        // m and v: 1e-4 relative for Float's inexact 1 − β2 (see above); v cannot cancel: no floor.
        assertClose(Array(a.state[0..<4]), mA, rel: 1e-4, "row A m")
        assertClose(Array(a.state[4...]), vA, rel: 1e-4, floor: 0, "row A v")
        assertClose(b.weights, wB, "row B weights")
        assertClose(Array(b.state[0..<4]), mB, rel: 1e-4, "row B m")
        assertClose(Array(b.state[4...]), vB, rel: 1e-4, floor: 0, "row B v")
        // B's step was bias-corrected with t=1: it moved by ~lr in each coordinate (l2 is tiny).
        let initialB = initial(keyB)
        for i in 0..<4 { XCTAssertEqual(abs(Double(b.weights[i]) - initialB[i]), 0.1, accuracy: 0.002) }   // l2 0.01 × |w| ≤ 0.5 moves it by < 2%
    }

    /// The SIMD kernel against the Double reference at awkward lengths, from non-zero state.
    func testKernelMatchesReferenceAtAwkwardLengths() {
        let cfg = AdamConfig(learningRate: 0.01, beta1: 0.8, beta2: 0.99, epsilon: 1e-6, l2: 0.05)
        let ref = ReferenceAdam(lr: 0.01, b1: 0.8, b2: 0.99, eps: 1e-6, l2: 0.05)
        var rng = SplitMix64(seed: 21)
        for n in [1, 7, 8, 9, 16, 39, 64] {
            var w: [Float] = (0..<n).map { _ in Float(rng.nextUnit() - 0.5) }
            var s: [Float] = (0..<(2 * n)).map { i in i < n ? Float(rng.nextUnit() - 0.5) * 0.1 : Float(rng.nextUnit()) * 0.01 }
            var rw = w.map(Double.init), rm = s[0..<n].map(Double.init), rv = s[n...].map(Double.init)
            for t in 5...7 {
                let g: [Float] = (0..<n).map { _ in Float(rng.nextUnit() - 0.5) }
                w.withUnsafeMutableBufferPointer { wp in s.withUnsafeMutableBufferPointer { sp in g.withUnsafeBufferPointer { gp in
                    Adam(cfg).update(weights: wp.baseAddress!, state: sp.baseAddress!, gradient: gp.baseAddress!, count: n, step: UInt32(t))
                } } }
                ref.step(w: &rw, m: &rm, v: &rv, g: g.map(Double.init), t: t)
            }
            // Three steps from non-zero state; 1e-4 relative for Float's inexact 1 − β2 carried through them.
            assertClose(w, rw, rel: 1e-4, "w n=\(n)")
            assertClose(Array(s[0..<n]), rm, rel: 1e-4, "m n=\(n)")
            assertClose(Array(s[n...]), rv, rel: 1e-4, floor: 0, "v n=\(n)")
        }
    }

    func testVectorSquareRootIsAccurate() {
        var x: Float = 1e-30
        while x < 1e30 {
            let r = Adam.squareRoot(SIMD8<Float>(repeating: x))
            for lane in 0..<8 {
                let ref = Double(x).squareRoot()
                XCTAssertLessThanOrEqual(abs(Double(r[lane]) - ref), 3e-7 * ref, "sqrt(\(x))")
            }
            x *= 1.37
        }
        XCTAssertEqual(Adam.squareRoot(SIMD8<Float>(repeating: 0)), SIMD8<Float>(repeating: 0))
    }

    /// Save → restore → continue equals an uninterrupted run (monolith style).
    func testSaveRestoreContinueEqualsUninterruptedRun() {
        let spec = TableSpec.sparse(id: 4, name: "e", dim: 9, initKind: .normal, initScale: 0.1, seed: 2,
                                    adam: AdamConfig(learningRate: 0.02, l2: 0.001))
        var rng = SplitMix64(seed: 3)
        let keys: [UInt64] = (0..<300).map { _ in rng.next() }
        let grads: [[Float]] = (0..<6).map { _ in (0..<(300 * 9)).map { _ in Float(rng.nextUnit() - 0.5) } }
        func run(_ t: SparseTable, _ steps: Range<Int>) {
            for p in steps {
                // Each push touches a different subset, so rows reach different steps.
                let sub = Array(keys[(p * 30)..<(p * 30 + 120)])
                let g = Array(grads[p][0..<(120 * 9)])
                sub.withUnsafeBufferPointer { k in g.withUnsafeBufferPointer { t.push(keys: k, gradients: $0.baseAddress!) } }
            }
        }
        let straight = SparseTable(spec: spec, optimizer: Adam(spec.adam))
        run(straight, 0..<6)
        let first = SparseTable(spec: spec, optimizer: Adam(spec.adam))
        run(first, 0..<3)
        let restored = SparseTable(spec: spec, optimizer: Adam(spec.adam), stripeBits: 2)
        first.forEachRow { key, w, st, step in restored.restoreRow(key: key, weights: w, state: st, step: step) }
        run(restored, 3..<6)
        var a: [UInt64: String] = [:], b: [UInt64: String] = [:]
        straight.forEachRow { k, w, st, step in a[k] = "\(Array(w))\(Array(st))\(step)" }
        restored.forEachRow { k, w, st, step in b[k] = "\(Array(w))\(Array(st))\(step)" }
        XCTAssertEqual(a.count, 270, "keys 0..<270 were touched")
        XCTAssertEqual(a, b)

        let dspec = TableSpec.dense(id: 5, name: "d", size: 12, initKind: .uniform, initScale: 0.3, seed: 1)
        let d1 = DenseTable(spec: dspec, range: 0..<12, optimizer: Adam(dspec.adam), initial: nil)
        let d2 = DenseTable(spec: dspec, range: 0..<12, optimizer: Adam(dspec.adam), initial: nil)
        let gs: [[Float]] = (0..<4).map { _ in (0..<12).map { _ in Float(rng.nextUnit() - 0.5) } }
        for g in gs[0..<2] { g.withUnsafeBufferPointer { d1.push(offset: 0, gradient: $0) } }
        let snap = d1.snapshot()
        d2.restore(weights: snap.weights, state: snap.state, step: snap.step)
        for g in gs[2...] {
            g.withUnsafeBufferPointer { d1.push(offset: 0, gradient: $0) }
            g.withUnsafeBufferPointer { d2.push(offset: 0, gradient: $0) }
        }
        XCTAssertEqual(d1.snapshot().weights, d2.snapshot().weights)
        XCTAssertEqual(d2.snapshot().step, 4)
    }

    func testDenseSliceUsesOrdinaryAdamWithOneCounter() {
        let spec = TableSpec.dense(id: 5, name: "mlp", size: 20, adam: config)
        let range = Sharding.denseRange(size: 20, server: 1, servers: 3)   // [7, 14)
        XCTAssertEqual(range, 7..<14)
        let initial: [Float] = (0..<7).map { Float($0) * 0.1 - 0.3 }
        let table = DenseTable(spec: spec, range: range, optimizer: Adam(config), initial: initial)
        var w = initial.map(Double.init), m = [Double](repeating: 0, count: 7), v = m
        let ref = ReferenceAdam(lr: 0.1, b1: 0.9, b2: 0.999, eps: 1e-8, l2: 0)
        var rng = SplitMix64(seed: 9)
        for t in 1...4 {
            let g: [Float] = (0..<7).map { _ in Float(rng.nextUnit() - 0.5) }
            g.withUnsafeBufferPointer { table.push(offset: 7, gradient: $0) }
            ref.step(w: &w, m: &m, v: &v, g: g.map(Double.init), t: t)
        }
        let snap = table.snapshot()
        XCTAssertEqual(snap.step, 4)
        assertClose(snap.weights, w, "dense weights")
        assertClose(snap.state, m + v, rel: 1e-4, "dense m|v")
        var out = [Float](repeating: 0, count: 3)
        out.withUnsafeMutableBufferPointer { table.pull(offset: 9, count: 3, into: $0.baseAddress!) }
        assertClose(out, Array(w[2..<5]), "dense pull of a sub-slice")
    }

    func testDenseDeterministicInitialisationWithoutInitialValues() {
        let spec = TableSpec.dense(id: 6, name: "d", size: 10, initKind: .uniform, initScale: 0.2, seed: 4)
        let whole = DenseTable(spec: spec, range: 0..<10, optimizer: Adam(spec.adam), initial: nil).snapshot().weights
        let part = DenseTable(spec: spec, range: 4..<7, optimizer: Adam(spec.adam), initial: nil).snapshot().weights
        XCTAssertEqual(Array(whole[4..<7]), part, "a slice's initial values do not depend on the slicing")
        XCTAssertTrue(whole.contains { $0 != 0 })
    }
}
