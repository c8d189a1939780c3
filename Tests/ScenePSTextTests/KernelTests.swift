import Foundation
import XCTest
@testable import ScenePSText

final class KernelTests: XCTestCase {
    func testErfApproximationAgainstLibm() {
        var worst: Float = 0
        var x: Float = -6
        while x <= 6 {
            let v = BertKernels.erf8(SIMD8(repeating: x))[0]
            worst = max(worst, abs(v - erff(x)))
            x += 0.001
        }
        XCTAssertLessThan(worst, 5e-7)   // measured 3.6e-7: six ulp of 1.0
        // GELU: vector body and scalar tail agree with the reference at an awkward length.
        var g = (0..<39).map { Float($0) * 0.37 - 7 }
        let ref = g.map(BertKernels.geluReference)
        g.withUnsafeMutableBufferPointer { BertKernels.gelu($0.baseAddress!, count: $0.count) }
        for (a, b) in zip(g, ref) { XCTAssertEqual(a, b, accuracy: 1e-6) }
    }

    /// Masked attention equals the plain padded-and-masked reference at awkward lengths.
    func testAttentionMatchesReference() {
        var rng = SystemRandomNumberGenerator()
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
            for (a, b) in zip(fast, ref) { XCTAssertEqual(a, b, accuracy: 1e-5, "rows \(rows) length \(length)") }
        }
    }

    func testLayerNormMatchesDefinition() {
        let n = 13
        var x = (0..<(2 * n)).map { Float($0 % 5) * 0.3 - 0.4 }
        let res = (0..<(2 * n)).map { Float($0) * 0.01 }
        let gamma = (0..<n).map { 1 + Float($0) * 0.1 }, beta = (0..<n).map { Float($0) * -0.05 }
        var expected = [Float]()
        for r in 0..<2 {
            let row = (0..<n).map { Double(x[r * n + $0] + res[r * n + $0]) }
            let m = row.reduce(0, +) / Double(n)
            let v = row.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(n)
            expected += (0..<n).map { Float((row[$0] - m) / (v + 1e-12).squareRoot()) * gamma[$0] + beta[$0] }
        }
        x.withUnsafeMutableBufferPointer { xp in
            BertKernels.addLayerNorm(xp.baseAddress!, residual: res, rows: 2, n: n, gamma: gamma, beta: beta, eps: 1e-12)
        }
        for (a, b) in zip(x, expected) { XCTAssertEqual(a, b, accuracy: 1e-5) }
    }
}
