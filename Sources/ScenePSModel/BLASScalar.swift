import CBLAS

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Whether a BLAS operand is used as stored or transposed.
public enum Transpose: Sendable {
    case no, yes

    var cblas: CBLAS_TRANSPOSE { self == .no ? CblasNoTrans : CblasTrans }
}

/// The scalar types the model runs in: `Float` (training) and `Double`
/// (gradient checks and fixtures). Every BLAS call goes through these static
/// wrappers, always row-major, so the layers are written once.
///
/// Shapes follow BLAS: `gemm` computes `C = alpha * op(A) * op(B) + beta * C`
/// with `op(A)` m×k, `op(B)` k×n, `C` m×n; leading dimensions are the row
/// strides of the matrices as stored.
public protocol BLASScalar: BinaryFloatingPoint, SIMDScalar, Codable, Sendable {
    static func gemm(_ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
                     alpha: Self, a: UnsafePointer<Self>, lda: Int,
                     b: UnsafePointer<Self>, ldb: Int,
                     beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int)
    /// `y = alpha * op(A) * x + beta * y`, `A` stored m×n.
    static func gemv(_ trans: Transpose, m: Int, n: Int, alpha: Self, a: UnsafePointer<Self>, lda: Int,
                     x: UnsafePointer<Self>, beta: Self, y: UnsafeMutablePointer<Self>)
    /// `y += alpha * x`.
    static func axpy(n: Int, alpha: Self, x: UnsafePointer<Self>, y: UnsafeMutablePointer<Self>)
    static func exp(_ x: Self) -> Self
    static func log1p(_ x: Self) -> Self
}

extension Float: BLASScalar {
    public static func gemm(_ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
                            alpha: Float, a: UnsafePointer<Float>, lda: Int,
                            b: UnsafePointer<Float>, ldb: Int,
                            beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        if m == 0 || n == 0 { return }
        if k == 0 { BLASKernels.scale(c, rows: m, cols: n, ld: ldc, by: beta); return }
        cblas_sgemm(CblasRowMajor, transA.cblas, transB.cblas, Int32(m), Int32(n), Int32(k),
                    alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    public static func gemv(_ trans: Transpose, m: Int, n: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                            x: UnsafePointer<Float>, beta: Float, y: UnsafeMutablePointer<Float>) {
        let rows = trans == .no ? m : n, inner = trans == .no ? n : m
        if rows == 0 { return }
        if inner == 0 { BLASKernels.scale(y, rows: 1, cols: rows, ld: rows, by: beta); return }
        cblas_sgemv(CblasRowMajor, trans.cblas, Int32(m), Int32(n), alpha, a, Int32(lda), x, 1, beta, y, 1)
    }

    public static func axpy(n: Int, alpha: Float, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        if n == 0 { return }
        cblas_saxpy(Int32(n), alpha, x, 1, y, 1)
    }

    public static func exp(_ x: Float) -> Float { expf(x) }
    public static func log1p(_ x: Float) -> Float { log1pf(x) }
}

extension Double: BLASScalar {
    public static func gemm(_ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
                            alpha: Double, a: UnsafePointer<Double>, lda: Int,
                            b: UnsafePointer<Double>, ldb: Int,
                            beta: Double, c: UnsafeMutablePointer<Double>, ldc: Int) {
        if m == 0 || n == 0 { return }
        if k == 0 { BLASKernels.scale(c, rows: m, cols: n, ld: ldc, by: beta); return }
        cblas_dgemm(CblasRowMajor, transA.cblas, transB.cblas, Int32(m), Int32(n), Int32(k),
                    alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    public static func gemv(_ trans: Transpose, m: Int, n: Int, alpha: Double, a: UnsafePointer<Double>, lda: Int,
                            x: UnsafePointer<Double>, beta: Double, y: UnsafeMutablePointer<Double>) {
        let rows = trans == .no ? m : n, inner = trans == .no ? n : m
        if rows == 0 { return }
        if inner == 0 { BLASKernels.scale(y, rows: 1, cols: rows, ld: rows, by: beta); return }
        cblas_dgemv(CblasRowMajor, trans.cblas, Int32(m), Int32(n), alpha, a, Int32(lda), x, 1, beta, y, 1)
    }

    public static func axpy(n: Int, alpha: Double, x: UnsafePointer<Double>, y: UnsafeMutablePointer<Double>) {
        if n == 0 { return }
        cblas_daxpy(Int32(n), alpha, x, 1, y, 1)
    }

    public static func exp(_ x: Double) -> Double { libmExp(x) }
    public static func log1p(_ x: Double) -> Double { libmLog1p(x) }
}

// Free functions so that `exp` inside `extension Double` names libm, not the
// static requirement.
private func libmExp(_ x: Double) -> Double { exp(x) }
private func libmLog1p(_ x: Double) -> Double { log1p(x) }
