/// Short-term interest (docs/ARCHITECTURE.md §3 step 4): one pre-LN Transformer encoder block over the
/// packed valid tokens of the batch, then the masked mean per example.
///
///     u1 = LN1(x); q,k,v = u1 W_{q,k,v}ᵀ + b; o = MHA(q, k, v) (keys of the same example)
///     y = x + o W_oᵀ + b_o; u2 = LN2(y); z = y + ReLU(u2 W1ᵀ + b1) W2ᵀ + b2
///     short_b = mean of z over example b's tokens (0 when it has none)
///
/// Queries at padding positions never influence the result in the reference
/// (their outputs are excluded from the mean), so only valid tokens are
/// computed. Every projection is one GEMM over all valid tokens of the batch.
final class TransformerBlock<T: BLASScalar> {
    struct Offsets {
        let ln1g, ln1b, wq, bq, wk, bk, wv, bv, wo, bo, ln2g, ln2b, w1, b1, w2, b2: Int
        init(_ l: ParameterLayout) {
            ln1g = l.offset("short.ln1.gamma"); ln1b = l.offset("short.ln1.beta")
            wq = l.offset("short.W_q"); bq = l.offset("short.b_q")
            wk = l.offset("short.W_k"); bk = l.offset("short.b_k")
            wv = l.offset("short.W_v"); bv = l.offset("short.b_v")
            wo = l.offset("short.W_o"); bo = l.offset("short.b_o")
            ln2g = l.offset("short.ln2.gamma"); ln2b = l.offset("short.ln2.beta")
            w1 = l.offset("short.ffn.W1"); b1 = l.offset("short.ffn.b1")
            w2 = l.offset("short.ffn.W2"); b2 = l.offset("short.ffn.b2")
        }
    }

    let d: Int, heads: Int, ffn: Int, maxLen: Int, maxTokens: Int, maxBatch: Int
    let off: Offsets
    private let ws: Workspace<T>
    /// (T, d) the block's input tokens, filled by the caller before `forward`.
    let input: UnsafeMutablePointer<T>
    /// (B, d) the masked mean, written by `forward`.
    let output: UnsafeMutablePointer<T>
    /// (T, d) gradient w.r.t. `input`, written by `backward`.
    let inputGradient: UnsafeMutablePointer<T>
    // Activations (T rows each unless noted); qkv (T, 3d) is [q | k | v] per row.
    private let u1, mean1, rstd1, qkv, att, o, y, u2, mean2, rstd2, f1, z: UnsafeMutablePointer<T>
    // Gradients; dqkv (T, 3d) like qkv.
    private let dz, df1, du, dqkv, dout: UnsafeMutablePointer<T>
    // W_q, W_k, W_v stacked (3d, d) with their biases (3d), so the three projections are one GEMM; their gradients.
    private let wqkv, bqkv, dwqkv, dbqkv, da: UnsafeMutablePointer<T>

    init(layout: ParameterLayout, d: Int, heads: Int, ffn: Int, maxLen: Int, maxBatch: Int) {
        self.d = d; self.heads = heads; self.ffn = ffn; self.maxLen = maxLen; self.maxBatch = maxBatch
        let tmax = maxBatch * maxLen
        maxTokens = tmax
        off = Offsets(layout)
        let td = tmax * d
        ws = Workspace([td, maxBatch * d, td,                               // input, output, inputGradient
                        td, tmax, tmax, 3 * td, tmax * heads * maxLen, td,  // u1 mean1 rstd1 qkv att o
                        td, td, tmax, tmax, tmax * ffn, td,                // y u2 mean2 rstd2 f1 z
                        td, tmax * ffn, td, 3 * td, td,                    // dz df1 du dqkv dout
                        3 * d * d, 3 * d, 3 * d * d, 3 * d, maxLen])       // wqkv bqkv dwqkv dbqkv da
        let s = ws.slices
        input = s[0]; output = s[1]; inputGradient = s[2]
        u1 = s[3]; mean1 = s[4]; rstd1 = s[5]; qkv = s[6]; att = s[7]; o = s[8]
        y = s[9]; u2 = s[10]; mean2 = s[11]; rstd2 = s[12]; f1 = s[13]; z = s[14]
        dz = s[15]; df1 = s[16]; du = s[17]; dqkv = s[18]; dout = s[19]
        wqkv = s[20]; bqkv = s[21]; dwqkv = s[22]; dbqkv = s[23]; da = s[24]
    }

    /// input (T, d) packed, example b in rows start[b] ..< start[b] + count[b] -> output (B, d)
    /// `tokens` = T = start[batch − 1] + count[batch − 1] (rows are contiguous, in example order).
    func forward(params p: UnsafePointer<T>, start: UnsafePointer<Int>, count: UnsafePointer<Int>,
                 batch: Int, tokens n: Int) {
        precondition(batch <= maxBatch && n <= maxTokens)
        let d = d, o_ = off
        // u1 (T, d) = LN1(x)
        LayerNorm.forward(input, rows: n, width: d, gamma: p + o_.ln1g, beta: p + o_.ln1b, y: u1, mean: mean1, rstd: rstd1)
        // qkv (T, 3d) = u1 [W_q; W_k; W_v]ᵀ + [b_q; b_k; b_v]
        func stack(_ i: Int, _ w: Int, _ b: Int) {
            (wqkv + i * d * d).update(from: p + w, count: d * d)
            (bqkv + i * d).update(from: p + b, count: d)
        }
        stack(0, o_.wq, o_.bq); stack(1, o_.wk, o_.bk); stack(2, o_.wv, o_.bv)
        Linear.forward(u1, rows: n, in: d, out: 3 * d, w: wqkv, b: bqkv, y: qkv)
        // o (T, d) = MHA, att (T, H, maxLen)
        MaskedSelfAttention.forward(q: qkv, k: qkv + d, v: qkv + 2 * d, ld: 3 * d, width: d, heads: heads, maxLen: maxLen,
                                    start: start, count: count, batch: batch, att: att, o: o)
        // y (T, d) = x + o W_oᵀ + b_o
        Linear.forward(o, rows: n, in: d, out: d, w: p + o_.wo, b: p + o_.bo, y: y)
        for i in 0..<(n * d) { y[i] += input[i] }
        // u2 (T, d) = LN2(y); f1 (T, ffn) = ReLU(u2 W1ᵀ + b1); z (T, d) = y + f1 W2ᵀ + b2
        LayerNorm.forward(y, rows: n, width: d, gamma: p + o_.ln2g, beta: p + o_.ln2b, y: u2, mean: mean2, rstd: rstd2)
        Linear.forward(u2, rows: n, in: d, out: ffn, w: p + o_.w1, b: p + o_.b1, y: f1)
        ReLU.forward(f1, count: n * ffn)
        Linear.forward(f1, rows: n, in: ffn, out: d, w: p + o_.w2, b: p + o_.b2, y: z)
        for i in 0..<(n * d) { z[i] += y[i] }
        // output (B, d) = masked mean of z
        MaskedMean.forward(z, width: d, start: start, count: count, batch: batch, out: output)
    }

    /// doutput (B, d) -> inputGradient (T, d) written, parameter gradients +=
    func backward(params p: UnsafePointer<T>, grads g: UnsafeMutablePointer<T>, outputGradient: UnsafePointer<T>,
                  start: UnsafePointer<Int>, count: UnsafePointer<Int>, batch: Int, tokens n: Int) {
        let d = d, o_ = off
        // dz (T, d): each token of example b gets dshort_b / count_b
        MaskedMean.backward(outputGradient, width: d, start: start, count: count, batch: batch, dx: dz)
        // FFN: dz flows to y directly (residual) and through W2, ReLU, W1, LN2.
        Linear.backward(dz, x: f1, rows: n, in: ffn, out: d, w: p + o_.w2, dw: g + o_.w2, db: g + o_.b2, dx: df1, accumulate: false)
        ReLU.backward(df1, output: f1, count: n * ffn)
        Linear.backward(df1, x: u2, rows: n, in: d, out: ffn, w: p + o_.w1, dw: g + o_.w1, db: g + o_.b1, dx: du, accumulate: false)
        // dy = dz + LN2ᵀ(du): accumulate into dz, which now holds dy
        LayerNorm.backward(du, x: y, rows: n, width: d, gamma: p + o_.ln2g, mean: mean2, rstd: rstd2,
                           dx: dz, dgamma: g + o_.ln2g, dbeta: g + o_.ln2b)
        // attention output projection: do = dy W_o
        Linear.backward(dz, x: o, rows: n, in: d, out: d, w: p + o_.wo, dw: g + o_.wo, db: g + o_.bo, dx: dout, accumulate: false)
        MaskedSelfAttention.backward(dout: dout, q: qkv, k: qkv + d, v: qkv + 2 * d, ld: 3 * d, width: d, heads: heads,
                                     maxLen: maxLen, start: start, count: count, batch: batch, att: att, scratch: da,
                                     dq: dqkv, dk: dqkv + d, dv: dqkv + 2 * d)
        // du1 = dqkv [W_q; W_k; W_v]; the stacked weight gradient is split back to the three tensors
        dwqkv.update(repeating: 0, count: 3 * d * d)
        dbqkv.update(repeating: 0, count: 3 * d)
        Linear.backward(dqkv, x: u1, rows: n, in: d, out: 3 * d, w: wqkv, dw: dwqkv, db: dbqkv, dx: du, accumulate: false)
        func unstack(_ i: Int, _ w: Int, _ b: Int) {
            let gw = g + w, gb = g + b, sw = dwqkv + i * d * d, sb = dbqkv + i * d
            for j in 0..<(d * d) { gw[j] += sw[j] }
            for j in 0..<d { gb[j] += sb[j] }
        }
        unstack(0, o_.wq, o_.bq); unstack(1, o_.wk, o_.bk); unstack(2, o_.wv, o_.bv)
        // dx = dy (residual) + LN1ᵀ(du1)
        inputGradient.update(from: dz, count: n * d)
        LayerNorm.backward(du, x: input, rows: n, width: d, gamma: p + o_.ln1g, mean: mean1, rstd: rstd1,
                           dx: inputGradient, dgamma: g + o_.ln1g, dbeta: g + o_.ln1b)
    }
}

/// Mean over each example's packed tokens; zero for an example without tokens.
enum MaskedMean {
    /// x (T, C) packed -> out (B, C)
    static func forward<T: BLASScalar>(_ x: UnsafePointer<T>, width c: Int, start: UnsafePointer<Int>, count: UnsafePointer<Int>,
                                       batch: Int, out: UnsafeMutablePointer<T>) {
        for b in 0..<batch {
            let ob = out + b * c
            ob.update(repeating: 0, count: c)
            let n = count[b]
            if n == 0 { continue }
            for j in 0..<n { BLASKernels.axpy(c, 1, x + (start[b] + j) * c, ob) }
            let inv = 1 / T(n)
            for i in 0..<c { ob[i] *= inv }
        }
    }

    /// dout (B, C) -> dx (T, C) written
    static func backward<T: BLASScalar>(_ dout: UnsafePointer<T>, width c: Int, start: UnsafePointer<Int>, count: UnsafePointer<Int>,
                                        batch: Int, dx: UnsafeMutablePointer<T>) {
        for b in 0..<batch {
            let n = count[b]
            if n == 0 { continue }
            let inv = 1 / T(n)
            let db = dout + b * c
            for j in 0..<n {
                let r = dx + (start[b] + j) * c
                for i in 0..<c { r[i] = db[i] * inv }
            }
        }
    }
}
