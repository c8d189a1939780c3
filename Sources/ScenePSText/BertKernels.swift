import CBLAS

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The encoder's row kernels (LayerNorm, GELU, masked attention) and its one
/// BLAS call. Each fast kernel has a plain reference beside it that the tests
/// hold it to.
enum BertKernels {
    // MARK: - BLAS

    /// `y (m×n) = x (m×k) · Wᵀ + b`, W stored n×k row-major (PyTorch's Linear layout).
    @inline(__always)
    static func linear(m: Int, n: Int, k: Int, x: UnsafePointer<Float>, w: UnsafePointer<Float>,
                       b: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        if m == 0 { return }
        for i in 0..<m { (y + i * n).update(from: b, count: n) }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k),
                    1, x, Int32(k), w, Int32(k), 1, y, Int32(n))
    }

    static func setBLASThreads(_ n: Int) { openblas_set_num_threads(Int32(n)) }

    // MARK: - LayerNorm

    /// `x[r] = LayerNorm(x[r] + residual[r]) * gamma + beta` for each of `rows` rows of width n.
    static func addLayerNorm(_ x: UnsafeMutablePointer<Float>, residual: UnsafePointer<Float>?, rows: Int, n: Int,
                             gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>, eps: Float) {
        for r in 0..<rows {
            let row = x + r * n
            if let residual {
                let res = residual + r * n
                for j in 0..<n { row[j] += res[j] }
            }
            var s0: Float = 0, s1: Float = 0, s2: Float = 0, s3: Float = 0
            var j = 0
            while j + 4 <= n { s0 += row[j]; s1 += row[j + 1]; s2 += row[j + 2]; s3 += row[j + 3]; j += 4 }
            while j < n { s0 += row[j]; j += 1 }
            let mean = ((s0 + s1) + (s2 + s3)) / Float(n)
            var v0: Float = 0, v1: Float = 0, v2: Float = 0, v3: Float = 0
            j = 0
            while j + 4 <= n {
                let a = row[j] - mean, b = row[j + 1] - mean, c = row[j + 2] - mean, d = row[j + 3] - mean
                v0 += a * a; v1 += b * b; v2 += c * c; v3 += d * d
                j += 4
            }
            while j < n { let a = row[j] - mean; v0 += a * a; j += 1 }
            let rstd = 1 / (((v0 + v1) + (v2 + v3)) / Float(n) + eps).squareRoot()
            for j in 0..<n { row[j] = (row[j] - mean) * rstd * gamma[j] + beta[j] }
        }
    }

    // MARK: - GELU

    /// GELU, erf form: `x · ½ · (1 + erf(x / √2))`, in place, eight lanes at a time.
    static func gelu(_ x: UnsafeMutablePointer<Float>, count n: Int) {
        let raw = UnsafeMutableRawPointer(x)
        let stride = MemoryLayout<Float>.stride
        var i = 0
        while i + 8 <= n {
            let v = raw.loadUnaligned(fromByteOffset: i * stride, as: SIMD8<Float>.self)
            let e = erf8(v * Float(0.7071067811865476))
            raw.storeBytes(of: v * 0.5 * (1 + e), toByteOffset: i * stride, as: SIMD8<Float>.self)
            i += 8
        }
        while i < n {
            x[i] = geluReference(x[i])
            i += 1
        }
    }

    static func geluReference(_ x: Float) -> Float { x * 0.5 * (1 + erff(x * 0.7071067811865476)) }

    /// erf in single precision: a rational minimax approximation on [-4, 4]
    /// (erf is ±1 in Float beyond), odd numerator over even denominator, the
    /// one Eigen and XLA use; within 4e-7 of libm's erff (tested).
    @inline(__always)
    static func erf8(_ a: SIMD8<Float>) -> SIMD8<Float> {
        // Clamped by masks: SIMD's clamped(lowerBound:upperBound:) was not inlined (3% of a run).
        var x = a
        x.replace(with: SIMD8(repeating: 4), where: x .> 4)
        x.replace(with: SIMD8(repeating: -4), where: x .< -4)
        let x2 = x * x
        var p = x2 * -2.72614225801306e-10 + 2.77068142495902e-08
        p = x2 * p + -2.10102402082508e-06
        p = x2 * p + -5.69250639462346e-05
        p = x2 * p + -7.34990630326855e-04
        p = x2 * p + -2.95459980854025e-03
        p = x2 * p + -1.60960333262415e-02
        p = x * p
        var q = x2 * -1.45660718464996e-05 + -2.13374055278905e-04
        q = x2 * q + -1.68282697438203e-03
        q = x2 * q + -7.37332916720468e-03
        q = x2 * q + -1.42647390514189e-02
        return p / q
    }

    // MARK: - Attention

    /// Masked multi-head self-attention of one sequence, from the fused
    /// projection `qkv` (L×3d: queries | keys | values, head h at columns
    /// h·dh ..< (h+1)·dh of each) into `ctx` (L×d). Only the first `length`
    /// rows are real: padded keys get no weight and padded query rows are
    /// written as zeros. `scores` has room for `length` floats.
    static func attention(qkv: UnsafePointer<Float>, ctx: UnsafeMutablePointer<Float>, rows: Int, length: Int,
                          d: Int, heads: Int, scores: UnsafeMutablePointer<Float>) {
        let dh = d / heads
        let ld = 3 * d
        let scale = 1 / Float(dh).squareRoot()
        for i in 0..<length {
            let out = ctx + i * d
            for h in 0..<heads {
                let q = qkv + i * ld + h * dh
                var maxScore = -Float.infinity
                for j in 0..<length {
                    let s = dot(q, qkv + j * ld + d + h * dh, dh) * scale
                    scores[j] = s
                    maxScore = max(maxScore, s)
                }
                var total: Float = 0
                for j in 0..<length {
                    let e = expf(scores[j] - maxScore)
                    scores[j] = e
                    total += e
                }
                let o = out + h * dh
                o.update(repeating: 0, count: dh)
                let inv = 1 / total
                for j in 0..<length {
                    axpy(dh, scores[j] * inv, qkv + j * ld + 2 * d + h * dh, o)
                }
            }
        }
        if rows > length { (ctx + length * d).update(repeating: 0, count: (rows - length) * d) }
    }

    /// The same attention written plainly with a padded key range and an
    /// additive mask, as the reference implementation computes it.
    static func attentionReference(qkv: UnsafePointer<Float>, ctx: UnsafeMutablePointer<Float>, rows: Int, length: Int,
                                   d: Int, heads: Int) {
        let dh = d / heads, ld = 3 * d
        for i in 0..<rows {
            for h in 0..<heads {
                var s = [Double](repeating: 0, count: rows)
                for j in 0..<rows {
                    var acc = 0.0
                    for t in 0..<dh { acc += Double(qkv[i * ld + h * dh + t]) * Double(qkv[j * ld + d + h * dh + t]) }
                    s[j] = acc / Double(dh).squareRoot() + (j < length ? 0 : -1e30)
                }
                let m = s.max()!
                let e = s.map { exp($0 - m) }
                let z = e.reduce(0, +)
                for t in 0..<dh {
                    var acc = 0.0
                    for j in 0..<rows { acc += e[j] / z * Double(qkv[j * ld + 2 * d + h * dh + t]) }
                    ctx[i * d + h * dh + t] = i < length ? Float(acc) : 0
                }
            }
        }
    }

    @inline(__always)
    static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc = SIMD8<Float>.zero
        let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
        let stride = MemoryLayout<Float>.stride
        var i = 0
        while i + 8 <= n {
            acc += ra.loadUnaligned(fromByteOffset: i * stride, as: SIMD8<Float>.self)
                * rb.loadUnaligned(fromByteOffset: i * stride, as: SIMD8<Float>.self)
            i += 8
        }
        var s = acc.sum()
        while i < n { s += a[i] * b[i]; i += 1 }
        return s
    }

    @inline(__always)
    static func axpy(_ n: Int, _ alpha: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
        let rx = UnsafeRawPointer(x), ry = UnsafeMutableRawPointer(y)
        let stride = MemoryLayout<Float>.stride
        var i = 0
        while i + 8 <= n {
            let vx = rx.loadUnaligned(fromByteOffset: i * stride, as: SIMD8<Float>.self)
            let vy = UnsafeRawPointer(ry).loadUnaligned(fromByteOffset: i * stride, as: SIMD8<Float>.self)
            ry.storeBytes(of: vy + vx * alpha, toByteOffset: i * stride, as: SIMD8<Float>.self)
            i += 8
        }
        while i < n { y[i] += alpha * x[i]; i += 1 }
    }
}
