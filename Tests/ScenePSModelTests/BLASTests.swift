import XCTest

@testable import ScenePSModel

/// The OpenBLAS wrappers against the plain reference kernels, at awkward
/// sizes, every transpose, non-zero alpha/beta and a non-zero starting C.
final class BLASTests: XCTestCase {
    private let sizes = [1, 7, 39]

    private func checkGemm<T: BLASScalar>(_: T.Type, tol: Double) {
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
                                assertClose(fast, slow, tol: tol, "gemm \(T.self) m\(m) n\(n) k\(k) \(ta)\(tb) α\(alpha) β\(beta)")
                            }
                        }
                    }
                }
            }
        }
    }

    func testGemmMatchesReference() {
        checkGemm(Double.self, tol: 1e-13)
        checkGemm(Float.self, tol: 1e-5)
    }

    func testGemmWithEmptyInnerDimensionScalesC() {
        var c: [Double] = [1, 2, 3, 4]
        let a: [Double] = [0], b: [Double] = [0]
        c.withUnsafeMutableBufferPointer { p in
            Double.gemm(.no, .no, m: 2, n: 2, k: 0, alpha: 1, a: a, lda: 1, b: b, ldb: 2, beta: 0.5, c: p.baseAddress!, ldc: 2)
        }
        XCTAssertEqual(c, [0.5, 1, 1.5, 2])
    }

    private func checkGemvAxpy<T: BLASScalar>(_: T.Type, tol: Double) {
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
                        assertClose(fast, slow, tol: tol, "gemv \(T.self) m\(m) n\(n) \(tr)")
                    }
                }
            }
            let x = rnd.vector(m).map { T($0) }, y0 = rnd.vector(m).map { T($0) }
            var fast = y0, slow = y0, inline = y0
            fast.withUnsafeMutableBufferPointer { T.axpy(n: m, alpha: T(0.3), x: x, y: $0.baseAddress!) }
            slow.withUnsafeMutableBufferPointer { BLASKernels.axpyNaive(n: m, alpha: T(0.3), x: x, y: $0.baseAddress!) }
            inline.withUnsafeMutableBufferPointer { BLASKernels.axpy(m, T(0.3), x, $0.baseAddress!) }
            assertClose(fast, slow, tol: tol, "axpy \(T.self) n\(m)")
            assertClose(inline, slow, tol: tol, "inline axpy \(T.self) n\(m)")
        }
    }

    func testGemvAndAxpyMatchReference() {
        checkGemvAxpy(Double.self, tol: 1e-13)
        checkGemvAxpy(Float.self, tol: 1e-5)
    }

    func testSIMDDotMatchesPlainSum() {
        var rnd = TestRandom(seed: 13)
        for n in [1, 7, 8, 9, 16, 39] {
            let a = rnd.vector(n), b = rnd.vector(n)
            var plain = 0.0
            for i in 0..<n { plain += a[i] * b[i] }
            let fast = BLASKernels.dot(a, b, n)
            XCTAssertLessThanOrEqual(abs(fast - plain), 1e-13 * max(1, abs(plain)), "dot n=\(n)")
            let af = a.map { Float($0) }, bf = b.map { Float($0) }
            XCTAssertLessThanOrEqual(abs(Double(BLASKernels.dot(af, bf, n)) - plain), 1e-5 * Double(n), "dot Float n=\(n)")
        }
    }
}
