/// Scene-conditioned experts and per-scene heads (docs/ARCHITECTURE.md §3 steps 6-7), without the item bias:
///
///     E_k(x) = ReLU(W2_k ReLU(W1_k x + b1_k) + b2_k)        K shared experts
///     γ = softmax(G_s x + c_s);  h = Σ_k γ_k E_k(x)          per-scene gate
///     out = w_s · ReLU(U_s h + u_s) + β_s                     per-scene head
///
/// Rows of x arrive grouped by scene: group s is rows
/// `groupStart[s] ..< groupStart[s + 1]` and uses gate and head s, so each
/// per-scene layer is one GEMM over its group. The experts see all rows.
final class SceneTower<T: BLASScalar> {
    struct Expert { let w1, b1, w2, b2: Int }
    struct Scene { let g, c, u, ub, w, beta: Int }

    let inWidth: Int, hidden: Int, width: Int, headWidth: Int, experts: Int, scenes: Int, maxBatch: Int
    let expertOffsets: [Expert]
    let sceneOffsets: [Scene]
    private let ws: Workspace<T>
    /// (B) written by `forward`.
    let output: UnsafeMutablePointer<T>
    /// (B, IN) written by `backward`.
    let inputGradient: UnsafeMutablePointer<T>
    private let h1, e, gam, h, hp, dh, dhp, dz, de, dh1: UnsafeMutablePointer<T>

    init(layout: ParameterLayout, config c: MSIFConfig, maxBatch: Int) {
        inWidth = 5 * c.d; hidden = c.expertWidths[0]; width = c.expertWidths[1]
        headWidth = c.headWidth; experts = c.experts; scenes = c.scenes; self.maxBatch = maxBatch
        expertOffsets = (0..<c.experts).map { k in
            Expert(w1: layout.offset("experts.\(k).W1"), b1: layout.offset("experts.\(k).b1"),
                   w2: layout.offset("experts.\(k).W2"), b2: layout.offset("experts.\(k).b2"))
        }
        sceneOffsets = (0..<c.scenes).map { s in
            Scene(g: layout.offset("scene_gate.\(s).G"), c: layout.offset("scene_gate.\(s).c"),
                  u: layout.offset("head.\(s).U"), ub: layout.offset("head.\(s).u"),
                  w: layout.offset("head.\(s).w"), beta: layout.offset("head.\(s).beta"))
        }
        let b = maxBatch
        ws = Workspace([b, b * inWidth,
                        experts * b * hidden, experts * b * width, b * experts, b * width, b * headWidth,
                        b * width, b * headWidth, b * experts, b * width, b * hidden])
        let s = ws.slices
        output = s[0]; inputGradient = s[1]
        h1 = s[2]; e = s[3]; gam = s[4]; h = s[5]; hp = s[6]
        dh = s[7]; dhp = s[8]; dz = s[9]; de = s[10]; dh1 = s[11]
    }

    /// x (B, IN) grouped by scene -> output (B)
    func forward(params p: UnsafePointer<T>, input x: UnsafePointer<T>, groupStart: UnsafePointer<Int>, batch: Int) {
        precondition(batch <= maxBatch)
        let K = experts, w1 = hidden, w2 = width, hw = headWidth, inW = inWidth
        // experts: h1_k (B, w1) = ReLU(x W1ᵀ + b1); e_k (B, w2) = ReLU(h1_k W2ᵀ + b2)
        for k in 0..<K {
            let o = expertOffsets[k], h1k = h1 + k * maxBatch * w1, ek = e + k * maxBatch * w2
            Linear.forward(x, rows: batch, in: inW, out: w1, w: p + o.w1, b: p + o.b1, y: h1k)
            ReLU.forward(h1k, count: batch * w1)
            Linear.forward(h1k, rows: batch, in: w1, out: w2, w: p + o.w2, b: p + o.b2, y: ek)
            ReLU.forward(ek, count: batch * w2)
        }
        for s in 0..<scenes {
            let r0 = groupStart[s], n = groupStart[s + 1] - r0
            if n == 0 { continue }
            let o = sceneOffsets[s]
            // γ (n, K) = softmax(x G_sᵀ + c_s)
            Linear.forward(x + r0 * inW, rows: n, in: inW, out: K, w: p + o.g, b: p + o.c, y: gam + r0 * K)
            for r in r0..<(r0 + n) { Softmax.inPlace(gam + r * K, count: K) }
        }
        // h (B, w2) = Σ_k γ_k e_k
        for r in 0..<batch {
            let hr = h + r * w2
            hr.update(repeating: 0, count: w2)
            for k in 0..<K { BLASKernels.axpy(w2, gam[r * K + k], e + k * maxBatch * w2 + r * w2, hr) }
        }
        for s in 0..<scenes {
            let r0 = groupStart[s], n = groupStart[s + 1] - r0
            if n == 0 { continue }
            let o = sceneOffsets[s]
            // hp (n, hw) = ReLU(h U_sᵀ + u_s); out = hp · w_s + β_s
            Linear.forward(h + r0 * w2, rows: n, in: w2, out: hw, w: p + o.u, b: p + o.ub, y: hp + r0 * hw)
            ReLU.forward(hp + r0 * hw, count: n * hw)
            T.gemv(.no, m: n, n: hw, alpha: 1, a: hp + r0 * hw, lda: hw, x: p + o.w, beta: 0, y: output + r0)
            for r in r0..<(r0 + n) { output[r] += p[o.beta] }
        }
    }

    /// doutput (B) -> inputGradient (B, IN) written, parameter gradients +=
    func backward(params p: UnsafePointer<T>, grads g: UnsafeMutablePointer<T>, outputGradient dout: UnsafePointer<T>,
                  input x: UnsafePointer<T>, groupStart: UnsafePointer<Int>, batch: Int) {
        let K = experts, w1 = hidden, w2 = width, hw = headWidth, inW = inWidth
        for s in 0..<scenes {
            let r0 = groupStart[s], n = groupStart[s + 1] - r0
            if n == 0 { continue }
            let o = sceneOffsets[s]
            // head: dw_s += hpᵀ dout ; dβ_s += Σ dout ; dhp = dout w_s ⊙ [hp > 0]
            T.gemv(.yes, m: n, n: hw, alpha: 1, a: hp + r0 * hw, lda: hw, x: dout + r0, beta: 1, y: g + o.w)
            var sum: T = 0
            for r in r0..<(r0 + n) {
                sum += dout[r]
                BLASKernels.reluMask(dhp + r * hw, p + o.w, scale: dout[r], where: hp + r * hw, hw)
            }
            g[o.beta] += sum
            Linear.backward(dhp + r0 * hw, x: h + r0 * w2, rows: n, in: w2, out: hw, w: p + o.u,
                            dw: g + o.u, db: g + o.ub, dx: dh + r0 * w2, accumulate: false)
        }
        // mixture: dγ_k = dh · e_k ; dz = γ ⊙ (dγ − Σ γ dγ)
        for r in 0..<batch {
            let dhr = dh + r * w2, gr = gam + r * K, dzr = dz + r * K
            var mean: T = 0
            for k in 0..<K {
                let dg = BLASKernels.dot(dhr, e + k * maxBatch * w2 + r * w2, w2)
                dzr[k] = dg
                mean += gr[k] * dg
            }
            for k in 0..<K { dzr[k] = gr[k] * (dzr[k] - mean) }
        }
        for s in 0..<scenes {
            let r0 = groupStart[s], n = groupStart[s + 1] - r0
            if n == 0 { continue }
            let o = sceneOffsets[s]
            Linear.backward(dz + r0 * K, x: x + r0 * inW, rows: n, in: inW, out: K, w: p + o.g,
                            dw: g + o.g, db: g + o.c, dx: inputGradient + r0 * inW, accumulate: false)
        }
        // experts: de_k = γ_k dh ⊙ [e_k > 0] ; back through W2, ReLU, W1
        for k in 0..<K {
            let o = expertOffsets[k], h1k = h1 + k * maxBatch * w1, ek = e + k * maxBatch * w2
            for r in 0..<batch {
                BLASKernels.reluMask(de + r * w2, dh + r * w2, scale: gam[r * K + k], where: ek + r * w2, w2)
            }
            Linear.backward(de, x: h1k, rows: batch, in: w1, out: w2, w: p + o.w2, dw: g + o.w2, db: g + o.b2,
                            dx: dh1, accumulate: false)
            ReLU.backward(dh1, output: h1k, count: batch * w1)
            Linear.backward(dh1, x: x, rows: batch, in: inW, out: w1, w: p + o.w1, dw: g + o.w1, db: g + o.b1,
                            dx: inputGradient, accumulate: true)
        }
    }
}

enum Softmax {
    /// x (N) = softmax(x) in place, max-shifted.
    @inline(__always)
    static func inPlace<T: BLASScalar>(_ x: UnsafeMutablePointer<T>, count n: Int) {
        var mx = -T.infinity
        for i in 0..<n where x[i] > mx { mx = x[i] }
        var sum: T = 0
        for i in 0..<n {
            x[i] = T.exp(x[i] - mx)
            sum += x[i]
        }
        let inv = 1 / sum
        for i in 0..<n { x[i] *= inv }
    }
}
