/// Fusion gate (docs/ARCHITECTURE.md §3 step 5): `g = sigmoid(W_g [long; short; e_s; t] + b_g)`,
/// `interest = g ⊙ long + (1 − g) ⊙ short`. W_g (d, 4d) is used as four
/// column blocks, so the concatenation is never built.
enum FusionGate {
    /// long, short, es, t (B, d); w (d, 4d), b (d) -> g (B, d), interest (B, d)
    static func forward<T: BLASScalar>(long: UnsafePointer<T>, short: UnsafePointer<T>, scene es: UnsafePointer<T>,
                                       target t: UnsafePointer<T>, batch: Int, width d: Int,
                                       w: UnsafePointer<T>, b: UnsafePointer<T>,
                                       g: UnsafeMutablePointer<T>, interest: UnsafeMutablePointer<T>) {
        BLASKernels.broadcastRows(g, rows: batch, cols: d, ld: d, b)
        func add(_ part: Int, _ x: UnsafePointer<T>) {
            T.gemm(.no, .yes, m: batch, n: d, k: d, alpha: 1, a: x, lda: d, b: w + part * d, ldb: 4 * d,
                   beta: 1, c: g, ldc: d)
        }
        add(0, long); add(1, short); add(2, es); add(3, t)
        for i in 0..<(batch * d) {
            let gi = Sigmoid.value(g[i])
            g[i] = gi
            interest[i] = gi * long[i] + (1 - gi) * short[i]
        }
    }

    /// dinterest (B, d) -> dlong, dshort (B, d) written; des, dt (B, d) +=; dw, db +=.
    /// `scratch` (B, d) holds the pre-activation gradient.
    static func backward<T: BLASScalar>(_ dinterest: UnsafePointer<T>, long: UnsafePointer<T>, short: UnsafePointer<T>,
                                        scene es: UnsafePointer<T>, target t: UnsafePointer<T>, g: UnsafePointer<T>,
                                        batch: Int, width d: Int, w: UnsafePointer<T>,
                                        dw: UnsafeMutablePointer<T>, db: UnsafeMutablePointer<T>,
                                        dlong: UnsafeMutablePointer<T>, dshort: UnsafeMutablePointer<T>,
                                        des: UnsafeMutablePointer<T>, dt: UnsafeMutablePointer<T>,
                                        scratch dpre: UnsafeMutablePointer<T>) {
        for i in 0..<(batch * d) {
            let gi = g[i], di = dinterest[i]
            dlong[i] = di * gi
            dshort[i] = di * (1 - gi)
            dpre[i] = di * (long[i] - short[i]) * gi * (1 - gi)
        }
        BLASKernels.addColumnSums(dpre, rows: batch, cols: d, ld: d, into: db)
        func back(_ part: Int, _ x: UnsafePointer<T>, _ dx: UnsafeMutablePointer<T>) {
            // dW[:, part] (d, d) += dpreᵀ x_part ; dx_part += dpre W[:, part]
            T.gemm(.yes, .no, m: d, n: d, k: batch, alpha: 1, a: dpre, lda: d, b: x, ldb: d,
                   beta: 1, c: dw + part * d, ldc: 4 * d)
            T.gemm(.no, .no, m: batch, n: d, k: d, alpha: 1, a: dpre, lda: d, b: w + part * d, ldb: 4 * d,
                   beta: 1, c: dx, ldc: d)
        }
        back(0, long, dlong); back(1, short, dshort); back(2, es, des); back(3, t, dt)
    }
}

/// Mean binary cross-entropy with logits, computed stably:
/// `ℓ = max(z, 0) − z y + log(1 + exp(−|z|))`, `∂ℓ/∂z = sigmoid(z) − y`.
enum BinaryCrossEntropy {
    /// z, y (B) -> mean loss; dz (B) = (sigmoid(z) − y) / B when given
    static func forward<T: BLASScalar>(logits z: UnsafePointer<T>, labels y: UnsafePointer<T>, count n: Int,
                                       dlogits dz: UnsafeMutablePointer<T>?) -> T {
        if n == 0 { return 0 }
        var total: T = 0
        let inv = 1 / T(n)
        for i in 0..<n {
            let zi = z[i], yi = y[i]
            total += max(zi, 0) - zi * yi + T.log1p(T.exp(-abs(zi)))
            if let dz { dz[i] = (Sigmoid.value(zi) - yi) * inv }
        }
        return total * inv
    }
}
