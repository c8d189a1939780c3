/// The two attention kernels of the model. Both work on *packed* tokens: the
/// valid history tokens of the whole minibatch stored back to back, example b
/// owning rows `start[b] ..< start[b] + count[b]`. Padding is never stored, so
/// masking is by construction and padding can get no gradient; an example
/// with no valid token gets a zero output (the reference's "all padding" case).

/// Scene-aware target attention of docs/ARCHITECTURE.md §3 step 3, per example:
/// `s_j = tok_j · q̃ / sqrt(d)`, `a = softmax(s)`, `c = Σ_j a_j tok_j`.
///
/// The model feeds it `q̃ = W_kᵀ q` and applies `W_v` to `c` afterwards:
/// `q · (W_k b_j) = (W_kᵀ q) · b_j` and `Σ a_j W_v b_j = W_v Σ a_j b_j`, so the
/// key and value projections cost one (B, d)·(d, d) GEMM each instead of one
/// over all B·L tokens.
enum TargetAttention {
    /// qt (B, C), tok (T, C) packed -> c (B, C), a (T) attention weights
    static func forward<T: BLASScalar>(qt: UnsafePointer<T>, tokens tok: UnsafePointer<T>, width dim: Int,
                                       start: UnsafePointer<Int>, count: UnsafePointer<Int>, batch: Int,
                                       scale: T, a: UnsafeMutablePointer<T>, c: UnsafeMutablePointer<T>) {
        for b in 0..<batch {
            let n = count[b], s0 = start[b]
            let q = qt + b * dim, cb = c + b * dim
            cb.update(repeating: 0, count: dim)
            if n == 0 { continue }
            let ab = a + s0
            var mx = -T.infinity
            for j in 0..<n {
                let s = scale * BLASKernels.dot(tok + (s0 + j) * dim, q, dim)
                ab[j] = s
                if s > mx { mx = s }
            }
            var sum: T = 0
            for j in 0..<n {
                let e = T.exp(ab[j] - mx)
                ab[j] = e
                sum += e
            }
            let inv = 1 / sum
            for j in 0..<n {
                ab[j] *= inv
                BLASKernels.axpy(dim, ab[j], tok + (s0 + j) * dim, cb)
            }
        }
    }

    /// dc (B, C) -> dqt (B, C) written, dtok (T, C) +=; `scratch` (T) holds dc·tok_j
    static func backward<T: BLASScalar>(dc: UnsafePointer<T>, qt: UnsafePointer<T>, tokens tok: UnsafePointer<T>, width dim: Int,
                                        start: UnsafePointer<Int>, count: UnsafePointer<Int>, batch: Int,
                                        scale: T, a: UnsafePointer<T>, scratch da: UnsafeMutablePointer<T>,
                                        dqt: UnsafeMutablePointer<T>, dtok: UnsafeMutablePointer<T>) {
        for b in 0..<batch {
            let n = count[b], s0 = start[b]
            let q = qt + b * dim, dcb = dc + b * dim, dq = dqt + b * dim
            dq.update(repeating: 0, count: dim)
            if n == 0 { continue }
            let ab = a + s0, dab = da + s0
            // da_j = dc · tok_j ; ds_j = a_j (da_j − Σ_k a_k da_k)
            var mean: T = 0
            for j in 0..<n {
                dab[j] = BLASKernels.dot(dcb, tok + (s0 + j) * dim, dim)
                mean += ab[j] * dab[j]
            }
            for j in 0..<n {
                let tj = tok + (s0 + j) * dim, dtj = dtok + (s0 + j) * dim
                let aj = ab[j], ds = aj * (dab[j] - mean) * scale
                // dtok_j += a_j dc + scale ds_j q̃ ; dq̃ += scale ds_j tok_j
                for i in 0..<dim { dtj[i] += aj * dcb[i] + ds * q[i] }
                BLASKernels.axpy(dim, ds, tj, dq)
            }
        }
    }
}

/// Multi-head self-attention among the valid tokens of each example (keys
/// masked to the example's valid tokens; the fixtures' key masking).
/// q, k, v are (T, C) views with row stride `ld` (they may be column blocks of
/// one fused QKV matrix); C = H · dh, head h in columns h·dh ..< (h+1)·dh.
enum MaskedSelfAttention {
    /// q, k, v (T, C) stride ld -> o (T, C) dense, att (T, H, maxLen) softmax weights
    static func forward<T: BLASScalar>(q: UnsafePointer<T>, k: UnsafePointer<T>, v: UnsafePointer<T>, ld: Int,
                                       width dim: Int, heads: Int, maxLen: Int,
                                       start: UnsafePointer<Int>, count: UnsafePointer<Int>, batch: Int,
                                       att: UnsafeMutablePointer<T>, o: UnsafeMutablePointer<T>) {
        let dh = dim / heads
        let scale = 1 / T(dh).squareRoot()
        for b in 0..<batch {
            let n = count[b], s0 = start[b]
            assert(n <= maxLen)
            for i in 0..<n {
                let ti = s0 + i
                let oi = o + ti * dim
                oi.update(repeating: 0, count: dim)
                for h in 0..<heads {
                    let ar = att + (ti * heads + h) * maxLen
                    let qi = q + ti * ld + h * dh
                    var mx = -T.infinity
                    for j in 0..<n {
                        let s = scale * BLASKernels.dot(qi, k + (s0 + j) * ld + h * dh, dh)
                        ar[j] = s
                        if s > mx { mx = s }
                    }
                    var sum: T = 0
                    for j in 0..<n {
                        let e = T.exp(ar[j] - mx)
                        ar[j] = e
                        sum += e
                    }
                    let inv = 1 / sum
                    let oh = oi + h * dh
                    for j in 0..<n {
                        ar[j] *= inv
                        BLASKernels.axpy(dh, ar[j], v + (s0 + j) * ld + h * dh, oh)
                    }
                }
            }
        }
    }

    /// do (T, C) dense -> dq, dk, dv (T, C) stride ld, written; `scratch` (maxLen) holds da_j
    static func backward<T: BLASScalar>(dout: UnsafePointer<T>, q: UnsafePointer<T>, k: UnsafePointer<T>, v: UnsafePointer<T>, ld: Int,
                                        width dim: Int, heads: Int, maxLen: Int,
                                        start: UnsafePointer<Int>, count: UnsafePointer<Int>, batch: Int,
                                        att: UnsafePointer<T>, scratch da: UnsafeMutablePointer<T>,
                                        dq: UnsafeMutablePointer<T>, dk: UnsafeMutablePointer<T>, dv: UnsafeMutablePointer<T>) {
        let dh = dim / heads
        let scale = 1 / T(dh).squareRoot()
        for b in 0..<batch {
            let n = count[b], s0 = start[b]
            if n == 0 { continue }
            for i in 0..<n {
                (dq + (s0 + i) * ld).update(repeating: 0, count: dim)
                (dk + (s0 + i) * ld).update(repeating: 0, count: dim)
                (dv + (s0 + i) * ld).update(repeating: 0, count: dim)
            }
            for i in 0..<n {
                let ti = s0 + i
                for h in 0..<heads {
                    let ar = att + (ti * heads + h) * maxLen
                    let doi = dout + ti * dim + h * dh
                    let qi = q + ti * ld + h * dh, dqi = dq + ti * ld + h * dh
                    // da_j = do_i · v_j ; dv_j += a_j do_i ; ds_j = a_j (da_j − Σ a da)
                    var mean: T = 0
                    for j in 0..<n {
                        let off = (s0 + j) * ld + h * dh
                        da[j] = BLASKernels.dot(doi, v + off, dh)
                        mean += ar[j] * da[j]
                        BLASKernels.axpy(dh, ar[j], doi, dv + off)
                    }
                    for j in 0..<n {
                        let off = (s0 + j) * ld + h * dh
                        let ds = ar[j] * (da[j] - mean) * scale
                        BLASKernels.axpy(dh, ds, k + off, dqi)
                        BLASKernels.axpy(dh, ds, qi, dk + off)
                    }
                }
            }
        }
    }
}
