import XCTest

@testable import ScenePSModel

/// The OpenBLAS wrappers against the plain reference kernels, at awkward
/// sizes, every transpose, non-zero alpha/beta and a non-zero starting C.
final class BLASTests: XCTestCase {
    private let sizes = [1, 7, 39]

    /// Tolerance: the round-off bound of each element's own sum (`roundOffBound`): k products, the
    /// α scaling and the β·C term, whatever order and fused multiply-adds the chosen OpenBLAS kernel
    /// uses. Against a plain loop that is the most two correct computations may differ by.
    private func checkGemm<T: BLASScalar>(_: T.Type) {
        var rnd = TestRandom(seed: 11)
        for m in sizes {
            for n in sizes {
                for k in sizes {
                    for ta in [Transpose.no, .yes] {
                        for tb in [Transpose.no, .yes] {
                            // Leading dimensions wider than the rows, as in the column-block GEMMs.
                            let lda = (ta == .no ? k : m) + 2, ldb = (tb == .no ? n : k) + 1, ldc = n + 3
                            let aRows = ta == .no ? m : k, bRows = tb == .no ? k : n
                            let a = rnd.vector(aRows * lda).map { T($0) }
                            let b = rnd.vector(bRows * ldb).map { T($0) }
                            let c0 = rnd.vector(m * ldc).map { T($0) }
                            for (alpha, beta) in [(T(1), T(0)), (T(0.7), T(1)), (T(-1.3), T(0.25))] {
                                var fast = c0, slow = c0
                                fast.withUnsafeMutableBufferPointer { c in
                                    T.gemm(ta, tb, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                                           beta: beta, c: c.baseAddress!, ldc: ldc)
                                }
                                slow.withUnsafeMutableBufferPointer { c in
                                    BLASKernels.gemmNaive(ta, tb, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                                                          beta: beta, c: c.baseAddress!, ldc: ldc)
                                }
                                // Σ_l |α a_il b_lj| + |β c_ij| per element, from the same (row-major, strided) operands.
                                var bounds = [Double](repeating: 0, count: m * ldc)
                                for i in 0..<m {
                                    for j in 0..<n {
                                        var mag = abs(Double(beta) * Double(c0[i * ldc + j]))
                                        for l in 0..<k {
                                            let x = ta == .no ? a[i * lda + l] : a[l * lda + i]
                                            let y = tb == .no ? b[l * ldb + j] : b[j * ldb + l]
                                            mag += abs(Double(alpha) * Double(x) * Double(y))
                                        }
                                        bounds[i * ldc + j] = roundOffBound(T.self, terms: k + 2, magnitude: mag)
                                    }
                                }
                                // Columns beyond n of each row of C are untouched: equal.
                                assertWithin(fast, slow, bounds: bounds, "gemm \(T.self) m\(m) n\(n) k\(k) \(ta)\(tb) α\(alpha) β\(beta)")
                            }
                        }
                    }
                }
            }
        }
    }

    func testGemmMatchesReference() {
        checkGemm(Double.self)
        checkGemm(Float.self)
    }

    func testGemmWithEmptyInnerDimensionScalesC() {
        var c: [Double] = [1, 2, 3, 4]
        let a: [Double] = [0], b: [Double] = [0]
        c.withUnsafeMutableBufferPointer { p in
            Double.gemm(.no, .no, m: 2, n: 2, k: 0, alpha: 1, a: a, lda: 1, b: b, ldb: 2, beta: 0.5, c: p.baseAddress!, ldc: 2)
        }
        XCTAssertEqual(c, [0.5, 1, 1.5, 2])
    }

    /// Tolerance: the round-off bound of each element's own sum, as for gemm.
    private func checkGemvAxpy<T: BLASScalar>(_: T.Type) {
        var rnd = TestRandom(seed: 12)
        for m in sizes {
            for n in sizes {
                for tr in [Transpose.no, .yes] {
                    let lda = n + 2
                    let a = rnd.vector(m * lda).map { T($0) }
                    let x = rnd.vector(tr == .no ? n : m).map { T($0) }
                    let y0 = rnd.vector(tr == .no ? m : n).map { T($0) }
                    for (alpha, beta) in [(T(1), T(0)), (T(-0.6), T(1.5))] {
                        var fast = y0, slow = y0
                        fast.withUnsafeMutableBufferPointer {
                            T.gemv(tr, m: m, n: n, alpha: alpha, a: a, lda: lda, x: x, beta: beta, y: $0.baseAddress!)
                        }
                        slow.withUnsafeMutableBufferPointer {
                            BLASKernels.gemvNaive(tr, m: m, n: n, alpha: alpha, a: a, lda: lda, x: x, beta: beta, y: $0.baseAddress!)
                        }
                        let bounds = (0..<y0.count).map { r -> Double in
                            var mag = abs(Double(beta) * Double(y0[r]))
                            for c in 0..<x.count {
                                mag += abs(Double(alpha) * Double(tr == .no ? a[r * lda + c] : a[c * lda + r]) * Double(x[c]))
                            }
                            return roundOffBound(T.self, terms: x.count + 2, magnitude: mag)
                        }
                        assertWithin(fast, slow, bounds: bounds, "gemv \(T.self) m\(m) n\(n) \(tr)")
                    }
                }
            }
            let x = rnd.vector(m).map { T($0) }, y0 = rnd.vector(m).map { T($0) }
            var fast = y0, slow = y0, inline = y0
            fast.withUnsafeMutableBufferPointer { T.axpy(n: m, alpha: T(0.3), x: x, y: $0.baseAddress!) }
            slow.withUnsafeMutableBufferPointer { BLASKernels.axpyNaive(n: m, alpha: T(0.3), x: x, y: $0.baseAddress!) }
            inline.withUnsafeMutableBufferPointer { BLASKernels.axpy(m, T(0.3), x, $0.baseAddress!) }
            // One multiply-add per element (fused or not): two terms.
            let bounds = (0..<m).map { roundOffBound(T.self, terms: 2, magnitude: abs(0.3 * Double(x[$0])) + abs(Double(y0[$0]))) }
            assertWithin(fast, slow, bounds: bounds, "axpy \(T.self) n\(m)")
            assertWithin(inline, slow, bounds: bounds, "inline axpy \(T.self) n\(m)")
        }
    }

    func testGemvAndAxpyMatchReference() {
        checkGemvAxpy(Double.self)
        checkGemvAxpy(Float.self)
    }

    func testSIMDDotMatchesPlainSum() {
        var rnd = TestRandom(seed: 13)
        for n in [1, 7, 8, 9, 16, 39] {
            let a = rnd.vector(n), b = rnd.vector(n)
            var plain = 0.0
            for i in 0..<n { plain += a[i] * b[i] }
            let fast = BLASKernels.dot(a, b, n)
            // Tolerance: the round-off bound of n products (any summation order), in Double.
            let mag = (0..<n).map { abs(a[$0] * b[$0]) }.reduce(0, +)
            assertWithin([fast], [plain], bounds: [roundOffBound(Double.self, terms: n, magnitude: mag)], "dot n=\(n)")
            let af = a.map { Float($0) }, bf = b.map { Float($0) }
            // Float against the exact (Double) sum of the Float inputs: the Float sum's own bound, once.
            let exactF = (0..<n).map { Double(af[$0]) * Double(bf[$0]) }.reduce(0, +)
            assertWithin([Double(BLASKernels.dot(af, bf, n))], [exactF],
                         bounds: [roundOffBound(Float.self, terms: n, magnitude: mag) / 2 * 1.01], "dot Float n=\(n)")
        }
    }
}
