import Foundation
import ScenePSCore
import XCTest
@testable import ScenePSText

final class KernelTests: XCTestCase {
    /// erf8 against Double erf (the truth to ~1e-16, not libm's erff, whose code path may differ by CPU),
    /// and GELU's vector body and scalar tail against GELU in Double, at an awkward length.
    func testErfApproximationAgainstLibm() {
        var worst = 0.0
        var x: Float = -6
        while x <= 6 {
            let v = BertKernels.erf8(SIMD8(repeating: x))[0]
            worst = max(worst, abs(Double(v) - erf(Double(x))))
            x += 0.001
        }
        // erf8 is plain Swift SIMD code (the same operations on every CPU): its error is the minimax
        // approximation's plus Float round-off, measured 3.6e-7 (six ulp of 1.0). Bound: eight ulp of 1.
        let erfBound = 8 * Double(Float.ulpOfOne)
        XCTAssertLessThan(worst, erfBound, "erf8 against erf in Double")
        var g = (0..<39).map { Float($0) * 0.37 - 7 }
        let input = g
        g.withUnsafeMutableBufferPointer { BertKernels.gelu($0.baseAddress!, count: $0.count) }
        for (y, x) in zip(g, input) {
            let ref = Double(x) * 0.5 * (1 + erf(Double(x) * 0.7071067811865476))
            // |x|/2 times erf8's bound, plus four ulp of the result for the Float products and sum.
            assertWithin(Double(y), ref, Double(abs(x)) / 2 * erfBound + 4 * Double(Float.ulpOfOne) * abs(ref), "gelu(\(x))")
        }
        // The scalar reference the kernels are written against agrees with the vector body the same way.
        for x in input {
            let ref = Double(x) * 0.5 * (1 + erf(Double(x) * 0.7071067811865476))
            assertWithin(Double(BertKernels.geluReference(x)), ref, Double(abs(x)) / 2 * erfBound + 4 * Double(Float.ulpOfOne) * abs(ref),
                         "geluReference(\(x))")
        }
    }

    /// Masked attention equals the plain padded-and-masked reference at awkward lengths.
    func testAttentionMatchesReference() {
        var rng = SplitMix64(seed: 41)
        let d = 24, heads = 3
        for (rows, length) in [(1, 1), (7, 7), (7, 3), (39, 17), (39, 39)] {
            let qkv = (0..<(rows * 3 * d)).map { _ in Float.random(in: -2...2, using: &rng) }
            var fast = [Float](repeating: 9, count: rows * d)
            var ref = [Float](repeating: 9, count: rows * d)
            var scores = [Float](repeating: 0, count: rows)
            qkv.withUnsafeBufferPointer { q in
                fast.withUnsafeMutableBufferPointer { f in
                    scores.withUnsafeMutableBufferPointer { s in
                        BertKernels.attention(qkv: q.baseAddress!, ctx: f.baseAddress!, rows: rows, length: length, d: d, heads: heads, scores: s.baseAddress!)
                    }
                }
                ref.withUnsafeMutableBufferPointer { BertKernels.attentionReference(qkv: q.baseAddress!, ctx: $0.baseAddress!, rows: rows, length: length, d: d, heads: heads) }
            }
            // Bound per output element, first order in the unit round-off u (the kernel is Float SIMD code and
            // glibc's expf, whose code path may differ by CPU): each score's dot product is off by at most
            // δ = γ_dh·Σ|q k|/√dh, which moves each softmax weight by at most 2δ relative; expf, the sum of
            // the weights and the weighted sum of values add γ_(2·length+8) relative; all of it times
            // M = Σ_j w_j |v_j|, then doubled for the terms of second order.
            let dh = d / heads, ld = 3 * d
            for i in 0..<rows {
                for h in 0..<heads {
                    for t in 0..<dh {
                        let k = i * d + h * dh + t
                        guard i < length else { XCTAssertEqual(fast[k], 0, "padded query row \(i)"); continue }
                        var s = [Double](), mag = [Double]()
                        for j in 0..<length {
                            var acc = 0.0, abs = 0.0
                            for u in 0..<dh {
                                let p = Double(qkv[i * ld + h * dh + u]) * Double(qkv[j * ld + d + h * dh + u])
                                acc += p; abs += Swift.abs(p)
                            }
                            s.append(acc / Double(dh).squareRoot()); mag.append(abs / Double(dh).squareRoot())
                        }
                        let top = s.max()!, e = s.map { Foundation.exp($0 - top) }, z = e.reduce(0, +)
                        let m = (0..<length).map { e[$0] / z * Swift.abs(Double(qkv[$0 * ld + 2 * d + h * dh + t])) }.reduce(0, +)
                        let delta = floatRoundOff(terms: dh + 1, magnitude: mag.max()!)
                        let bound = 2 * (2 * delta + floatRoundOff(terms: 2 * length + 8, magnitude: 1)) * m
                        assertWithin(Double(fast[k]), Double(ref[k]), bound, "rows \(rows) length \(length) [\(i), \(h), \(t)]")
                    }
                }
            }
        }
    }

    func testLayerNormMatchesDefinition() {
        let n = 13
        var x = (0..<(2 * n)).map { Float($0 % 5) * 0.3 - 0.4 }
        let res = (0..<(2 * n)).map { Float($0) * 0.01 }
        let gamma = (0..<n).map { 1 + Float($0) * 0.1 }, beta = (0..<n).map { Float($0) * -0.05 }
        var expected = [Float]()
        let expectedInput = zip(x, res).map { $0 + $1 }   // the kernel adds the residual in Float first
        for r in 0..<2 {
            let row = (0..<n).map { Double(x[r * n + $0] + res[r * n + $0]) }
            let m = row.reduce(0, +) / Double(n)
            let v = row.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(n)
            expected += (0..<n).map { Float((row[$0] - m) / (v + 1e-12).squareRoot()) * gamma[$0] + beta[$0] }
        }
        x.withUnsafeMutableBufferPointer { xp in
            BertKernels.addLayerNorm(xp.baseAddress!, residual: res, rows: 2, n: n, gamma: gamma, beta: beta, eps: 1e-12)
        }
        // Bound per element, first order in u: the mean and variance are Float sums of n terms (any order),
        // so x̂ = (x − μ)/σ is off by (γ_n·mean|x| + u·|x − μ|)/σ + γ_(n+4)·|x̂|; times |γ|, plus the final
        // rounding of the products and sum to the output, 2u·|out| (in both); doubled for second-order terms.
        for r in 0..<2 {
            let row = (0..<n).map { Double(expectedInput[r * n + $0]) }
            let mu = row.reduce(0, +) / Double(n)
            let sigma = (row.map { ($0 - mu) * ($0 - mu) }.reduce(0, +) / Double(n) + 1e-12).squareRoot()
            let meanAbs = row.map { Swift.abs($0) }.reduce(0, +) / Double(n)
            for j in 0..<n {
                let xhat = (row[j] - mu) / sigma
                let u = Double(Float.ulpOfOne) / 2
                let bound = 2 * (((floatRoundOff(terms: n, magnitude: meanAbs) + u * Swift.abs(row[j] - mu)) / sigma
                                  + floatRoundOff(terms: n + 4, magnitude: Swift.abs(xhat))) * Double(Swift.abs(gamma[j]))
                                 + 2 * u * Swift.abs(Double(expected[r * n + j])))
                assertWithin(Double(x[r * n + j]), Double(expected[r * n + j]), bound, "layer norm [\(r), \(j)]")
            }
        }
    }
}
