/// Long-term interest (docs/ARCHITECTURE.md §3 step 3): scene-aware target attention over the last
/// L_long behaviour tokens.
///
///     q = W_q [t; e_s] + b_q            (B, d)
///     q̃ = W_kᵀ q                        (B, d)   so that q·k_j = q̃·b_j
///     a = softmax_j(q̃·b_j / sqrt(d)),  c = Σ_j a_j b_j   over valid tokens
///     long = W_v c                      (B, d)   = Σ_j a_j W_v b_j
///
/// Algebraically the reference's `k_j = W_k b_j`, `v_j = W_v b_j`, but the
/// projections act on one vector per example instead of on every token.
final class LongInterest<T: BLASScalar> {
    struct Offsets {
        let wq, bq, wk, wv: Int
        init(_ l: ParameterLayout) {
            wq = l.offset("attn_long.W_q"); bq = l.offset("attn_long.b_q")
            wk = l.offset("attn_long.W_k"); wv = l.offset("attn_long.W_v")
        }
    }

    let d: Int, maxBatch: Int, maxTokens: Int
    let off: Offsets
    private let ws: Workspace<T>
    /// (B, d) written by `forward`.
    let output: UnsafeMutablePointer<T>
    private let q, qt, c, a, da, dc, dq, dqt: UnsafeMutablePointer<T>

    init(layout: ParameterLayout, d: Int, maxLen: Int, maxBatch: Int) {
        self.d = d; self.maxBatch = maxBatch
        maxTokens = maxBatch * maxLen
        off = Offsets(layout)
        let bd = maxBatch * d
        ws = Workspace([bd, bd, bd, bd, maxTokens, maxTokens, bd, bd, bd])
        let s = ws.slices
        output = s[0]; q = s[1]; qt = s[2]; c = s[3]; a = s[4]; da = s[5]; dc = s[6]; dq = s[7]; dqt = s[8]
    }

    /// t, es (B, d), tokens (T, d) packed (example b: rows start[b] ..< start[b] + count[b]) -> output (B, d)
    func forward(params p: UnsafePointer<T>, target t: UnsafePointer<T>, scene es: UnsafePointer<T>,
                 tokens: UnsafePointer<T>, start: UnsafePointer<Int>, count: UnsafePointer<Int>, batch: Int) {
        precondition(batch <= maxBatch)
        let d = d, o = off
        // q (B, d) = [t; es] W_qᵀ + b_q, W_q (d, 2d) used as two column blocks
        BLASKernels.broadcastRows(q, rows: batch, cols: d, ld: d, p + o.bq)
        T.gemm(.no, .yes, m: batch, n: d, k: d, alpha: 1, a: t, lda: d, b: p + o.wq, ldb: 2 * d, beta: 1, c: q, ldc: d)
        T.gemm(.no, .yes, m: batch, n: d, k: d, alpha: 1, a: es, lda: d, b: p + o.wq + d, ldb: 2 * d, beta: 1, c: q, ldc: d)
        // q̃ (B, d) = q W_k   (row form of W_kᵀ q)
        T.gemm(.no, .no, m: batch, n: d, k: d, alpha: 1, a: q, lda: d, b: p + o.wk, ldb: d, beta: 0, c: qt, ldc: d)
        // c (B, d), a (T)
        TargetAttention.forward(qt: qt, tokens: tokens, width: d, start: start, count: count, batch: batch,
                                scale: 1 / T(d).squareRoot(), a: a, c: c)
        // output (B, d) = c W_vᵀ
        Linear.forward(c, rows: batch, in: d, out: d, w: p + o.wv, b: nil, y: output)
    }

    /// doutput (B, d) -> dt, des (B, d) +=, dtokens (T, d) +=, parameter gradients +=
    func backward(params p: UnsafePointer<T>, grads g: UnsafeMutablePointer<T>, outputGradient: UnsafePointer<T>,
                  target t: UnsafePointer<T>, scene es: UnsafePointer<T>,
                  tokens: UnsafePointer<T>, start: UnsafePointer<Int>, count: UnsafePointer<Int>, batch: Int,
                  dt: UnsafeMutablePointer<T>, des: UnsafeMutablePointer<T>, dtokens: UnsafeMutablePointer<T>) {
        let d = d, o = off
        // dW_v += doutᵀ c ; dc = dout W_v
        Linear.backward(outputGradient, x: c, rows: batch, in: d, out: d, w: p + o.wv, dw: g + o.wv, db: nil,
                        dx: dc, accumulate: false)
        TargetAttention.backward(dc: dc, qt: qt, tokens: tokens, width: d, start: start, count: count, batch: batch,
                                 scale: 1 / T(d).squareRoot(), a: a, scratch: da, dqt: dqt, dtok: dtokens)
        // q̃ = q W_k: dW_k (d, d) += qᵀ dq̃ ; dq = dq̃ W_kᵀ
        T.gemm(.yes, .no, m: d, n: d, k: batch, alpha: 1, a: q, lda: d, b: dqt, ldb: d, beta: 1, c: g + o.wk, ldc: d)
        T.gemm(.no, .yes, m: batch, n: d, k: d, alpha: 1, a: dqt, lda: d, b: p + o.wk, ldb: d, beta: 0, c: dq, ldc: d)
        // q = [t; es] W_qᵀ + b_q
        BLASKernels.addColumnSums(dq, rows: batch, cols: d, ld: d, into: g + o.bq)
        T.gemm(.yes, .no, m: d, n: d, k: batch, alpha: 1, a: dq, lda: d, b: t, ldb: d, beta: 1, c: g + o.wq, ldc: 2 * d)
        T.gemm(.yes, .no, m: d, n: d, k: batch, alpha: 1, a: dq, lda: d, b: es, ldb: d, beta: 1, c: g + o.wq + d, ldc: 2 * d)
        T.gemm(.no, .no, m: batch, n: d, k: d, alpha: 1, a: dq, lda: d, b: p + o.wq, ldb: 2 * d, beta: 1, c: dt, ldc: d)
        T.gemm(.no, .no, m: batch, n: d, k: d, alpha: 1, a: dq, lda: d, b: p + o.wq + d, ldb: 2 * d, beta: 1, c: des, ldc: d)
    }
}
