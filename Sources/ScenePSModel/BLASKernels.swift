/// Small vector kernels used by the layers, and the plain reference versions
/// of the BLAS calls (llm.c's `matmul_forward_naive`) that the tests hold the
/// OpenBLAS wrappers to.
///
/// All matrices are row-major; `ld` is the row stride. Internal code is
/// specialised for Float and Double inside the module.
public enum BLASKernels {
    // MARK: - Reference kernels (naive, obviously right)

    /// `C = alpha * op(A) * op(B) + beta * C`, as `BLASScalar.gemm`.
    public static func gemmNaive<T: BLASScalar>(_ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
                                                alpha: T, a: UnsafePointer<T>, lda: Int,
                                                b: UnsafePointer<T>, ldb: Int,
                                                beta: T, c: UnsafeMutablePointer<T>, ldc: Int) {
        for i in 0..<m {
            for j in 0..<n {
                var s: T = 0
                for p in 0..<k {
                    let aip = transA == .no ? a[i * lda + p] : a[p * lda + i]
                    let bpj = transB == .no ? b[p * ldb + j] : b[j * ldb + p]
                    s += aip * bpj
                }
                // beta == 0 must ignore whatever C held (BLAS semantics: NaN is not propagated).
                c[i * ldc + j] = alpha * s + (beta == 0 ? 0 : beta * c[i * ldc + j])
            }
        }
    }

    /// `y = alpha * op(A) * x + beta * y`, `A` stored m×n, as `BLASScalar.gemv`.
    public static func gemvNaive<T: BLASScalar>(_ trans: Transpose, m: Int, n: Int, alpha: T, a: UnsafePointer<T>, lda: Int,
                                                x: UnsafePointer<T>, beta: T, y: UnsafeMutablePointer<T>) {
        let rows = trans == .no ? m : n, inner = trans == .no ? n : m
        for i in 0..<rows {
            var s: T = 0
            for p in 0..<inner { s += (trans == .no ? a[i * lda + p] : a[p * lda + i]) * x[p] }
            y[i] = alpha * s + (beta == 0 ? 0 : beta * y[i])
        }
    }

    /// `y += alpha * x`.
    public static func axpyNaive<T: BLASScalar>(n: Int, alpha: T, x: UnsafePointer<T>, y: UnsafeMutablePointer<T>) {
        for i in 0..<n { y[i] += alpha * x[i] }
    }

    // MARK: - Vector kernels

    /// `C *= beta` over an m×n block (beta == 0 writes zeros).
    static func scale<T: BLASScalar>(_ c: UnsafeMutablePointer<T>, rows: Int, cols: Int, ld: Int, by beta: T) {
        for i in 0..<rows {
            let row = c + i * ld
            if beta == 0 {
                row.update(repeating: 0, count: cols)
            } else {
                for j in 0..<cols { row[j] *= beta }
            }
        }
    }

    /// Dot product with eight independent lanes (a scalar loop would be one
    /// long dependency chain: floating-point sums are not reassociated).
    @inline(__always)
    static func dot<T: BLASScalar>(_ a: UnsafePointer<T>, _ b: UnsafePointer<T>, _ n: Int) -> T {
        var acc = SIMD8<T>.zero
        var i = 0
        let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
        let stride = MemoryLayout<T>.stride
        while i + 8 <= n {
            let va = ra.loadUnaligned(fromByteOffset: i * stride, as: SIMD8<T>.self)
            let vb = rb.loadUnaligned(fromByteOffset: i * stride, as: SIMD8<T>.self)
            // Not addProduct: without FMA in the baseline x86-64 target it becomes a libm fmaf call per lane.
            acc += va * vb
            i += 8
        }
        var s = acc.sum()
        while i < n {
            s += a[i] * b[i]
            i += 1
        }
        return s
    }

    /// Σ x with four independent partial sums (LLVM turns them into one vector
    /// accumulator; a single running sum is a chain of dependent adds).
    @inline(__always)
    static func sum<T: BLASScalar>(_ x: UnsafePointer<T>, _ n: Int) -> T {
        var s0: T = 0, s1: T = 0, s2: T = 0, s3: T = 0
        var i = 0
        while i + 4 <= n {
            s0 += x[i]; s1 += x[i + 1]; s2 += x[i + 2]; s3 += x[i + 3]
            i += 4
        }
        while i < n {
            s0 += x[i]
            i += 1
        }
        return (s0 + s1) + (s2 + s3)
    }

    /// Σ (x − m)², four partial sums.
    @inline(__always)
    static func sumSquaredDeviations<T: BLASScalar>(_ x: UnsafePointer<T>, from m: T, _ n: Int) -> T {
        var s0: T = 0, s1: T = 0, s2: T = 0, s3: T = 0
        var i = 0
        while i + 4 <= n {
            let a = x[i] - m, b = x[i + 1] - m, c = x[i + 2] - m, d = x[i + 3] - m
            s0 += a * a; s1 += b * b; s2 += c * c; s3 += d * d
            i += 4
        }
        while i < n {
            let a = x[i] - m
            s0 += a * a
            i += 1
        }
        return (s0 + s1) + (s2 + s3)
    }

    /// LayerNorm backward's two row sums: Σ dy⊙γ and Σ dy⊙γ⊙x̂, x̂ = (x − mean)·rstd.
    @inline(__always)
    static func layerNormSums<T: BLASScalar>(dy: UnsafePointer<T>, gamma: UnsafePointer<T>, x: UnsafePointer<T>,
                                             mean m: T, rstd r: T, _ n: Int, sumD: inout T, sumDX: inout T) {
        var d0: T = 0, d1: T = 0, d2: T = 0, d3: T = 0
        var e0: T = 0, e1: T = 0, e2: T = 0, e3: T = 0
        var i = 0
        while i + 4 <= n {
            let g0 = dy[i] * gamma[i], g1 = dy[i + 1] * gamma[i + 1], g2 = dy[i + 2] * gamma[i + 2], g3 = dy[i + 3] * gamma[i + 3]
            d0 += g0; d1 += g1; d2 += g2; d3 += g3
            e0 += g0 * ((x[i] - m) * r); e1 += g1 * ((x[i + 1] - m) * r)
            e2 += g2 * ((x[i + 2] - m) * r); e3 += g3 * ((x[i + 3] - m) * r)
            i += 4
        }
        while i < n {
            let g = dy[i] * gamma[i]
            d0 += g
            e0 += g * ((x[i] - m) * r)
            i += 1
        }
        sumD = (d0 + d1) + (d2 + d3)
        sumDX = (e0 + e1) + (e2 + e3)
    }

    /// `dst[i] = y[i] > 0 ? alpha * src[i] : 0` (dst must not overlap src or y). Written so
    /// that LLVM vectorises it into compare-and-mask: both sides computed, one
    /// unconditional store (a conditional store becomes a mispredicted branch).
    @inline(__always)
    static func reluMask<T: BLASScalar>(_ dst: UnsafeMutablePointer<T>, _ src: UnsafePointer<T>, scale alpha: T,
                                        where y: UnsafePointer<T>, _ n: Int) {
        for i in 0..<n {
            let v = y[i], s = alpha * src[i]
            dst[i] = v > 0 ? s : 0
        }
    }

    /// `x[i] *= (y[i] > 0 ? 1 : 0)`, in place (x may be y): ReLU and its backward.
    /// A multiply by the 0/1 mask vectorises; `x[i] = cond ? x[i] : 0` does not.
    @inline(__always)
    static func reluInPlace<T: BLASScalar>(_ x: UnsafeMutablePointer<T>, where y: UnsafePointer<T>, _ n: Int) {
        for i in 0..<n {
            let m: T = y[i] > 0 ? 1 : 0
            x[i] *= m
        }
    }

    /// `y += alpha * x` without a library call (n is small: one token of width d).
    /// Eight lanes at a time: the plain loop is vectorised behind a runtime
    /// aliasing check whose cost dominates at the model's widths (16, 32).
    @inline(__always)
    static func axpy<T: BLASScalar>(_ n: Int, _ alpha: T, _ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>) {
        let stride = MemoryLayout<T>.stride
        let rx = UnsafeRawPointer(x), ry = UnsafeMutableRawPointer(y)
        var i = 0
        while i + 8 <= n {
            let vx = rx.loadUnaligned(fromByteOffset: i * stride, as: SIMD8<T>.self)
            let vy = UnsafeRawPointer(ry).loadUnaligned(fromByteOffset: i * stride, as: SIMD8<T>.self)
            ry.storeBytes(of: vy + vx * alpha, toByteOffset: i * stride, as: SIMD8<T>.self)
            i += 8
        }
        while i < n {
            y[i] += alpha * x[i]
            i += 1
        }
    }

    /// Every row of the m×n matrix `y` (row stride `ld`) set to `b`.
    static func broadcastRows<T: BLASScalar>(_ y: UnsafeMutablePointer<T>, rows: Int, cols: Int, ld: Int, _ b: UnsafePointer<T>) {
        for i in 0..<rows { (y + i * ld).update(from: b, count: cols) }
    }

    /// `db += Σ_rows dy` (bias gradient).
    static func addColumnSums<T: BLASScalar>(_ dy: UnsafePointer<T>, rows: Int, cols: Int, ld: Int, into db: UnsafeMutablePointer<T>) {
        for i in 0..<rows {
            let row = dy + i * ld
            for j in 0..<cols { db[j] += row[j] }
        }
    }
}
