/// The multi-scene interest-fusion model of docs/ARCHITECTURE.md §3 over gathered
/// embeddings, forward and backward by hand (reference: tools/reference/msif.py).
///
/// A step is a fixed sequence over buffers sized for `maxBatch` at init:
///
///     t = item + cat [+ W_text·text]; b_j = item_j + cat_j + bscene_j [+ W_text·text_j]   (valid tokens only, packed)
///     long  = LongInterest(t, e_s, b_{<L_long})             (B, d)
///     short = TransformerBlock(b_{<L_short} + pos)          (B, d)
///     interest = FusionGate(long, short, e_s, t) | long | short
///     x = [t; e_u; e_s; interest; interest ⊙ t]             (B, 5d), rows grouped by scene
///     logit = SceneTower(x) + item_bias                     (B)
///
/// Not thread-safe (one workspace): use one model per compute thread. It is
/// `@unchecked Sendable` so that a worker can hand it to its compute thread.
public final class MSIFModel<Scalar: BLASScalar>: CTRModel, @unchecked Sendable {
    public typealias T = Scalar
    public let config: MSIFConfig
    public let layout: ParameterLayout
    public let maxBatch: Int

    private let long: LongInterest<T>?
    private let block: TransformerBlock<T>?
    private let tower: SceneTower<T>
    private let posOffset: Int, gateW: Int, gateB: Int
    /// Offset of `text.W` (d, textDim), or -1 without title features.
    private let textW: Int
    /// (U, d) projected distinct title rows and their gradient; U ≤ maxTextRows.
    private let proj, dproj: UnsafeMutablePointer<T>
    private let maxTextRows: Int
    private let ws: Workspace<T>
    private let iws: Workspace<Int>
    /// (B, d) each
    private let t, interest, g, dt, du, des, dinterest, dlong, dshort, dpre: UnsafeMutablePointer<T>
    /// (B, 5d)
    private let x: UnsafeMutablePointer<T>
    /// (B) tower output in grouped order, logit gradient in example order, and in grouped order
    private let dlogit, dtower: UnsafeMutablePointer<T>
    /// (Ttok, d) packed valid tokens and their gradient
    private let tok, dtok: UnsafeMutablePointer<T>
    /// per example: token start (B+1), token count, long count, short start (B+1), short count; grouped order (B); groups (S+1)
    private let tokStart, tokCount, longCount, shortStart, shortCount, order, groupStart: UnsafeMutablePointer<Int>
    private let maxTokensPerExample: Int

    public init(config: MSIFConfig, maxBatch: Int) throws {
        try config.validate()
        precondition(maxBatch > 0, "maxBatch must be positive")
        self.config = config
        self.maxBatch = maxBatch
        let layout = config.layout
        self.layout = layout
        let d = config.d, b = maxBatch
        long = config.useLong ? LongInterest(layout: layout, d: d, maxLen: config.lLong, maxBatch: b) : nil
        block = config.useShort
            ? TransformerBlock(layout: layout, d: d, heads: config.heads, ffn: config.ffn, maxLen: config.lShort, maxBatch: b)
            : nil
        tower = SceneTower(layout: layout, config: config, maxBatch: b)
        posOffset = layout.offset("short.pos")
        gateW = layout.offset("gate.W")
        gateB = layout.offset("gate.b")
        textW = config.textDim > 0 ? layout.offset("text.W") : -1
        maxTokensPerExample = max(config.useLong ? config.lLong : 0, config.useShort ? config.lShort : 0)
        let bd = b * d, tokens = b * maxTokensPerExample * d
        maxTextRows = config.textDim > 0 ? b * (1 + config.lLong) : 0
        ws = Workspace([bd, bd, bd, bd, bd, bd, bd, bd, bd, bd, b * 5 * d, b, b, tokens, tokens,
                        max(1, maxTextRows * d), max(1, maxTextRows * d)])
        let s = ws.slices
        proj = s[15]; dproj = s[16]
        t = s[0]; interest = s[1]; g = s[2]; dt = s[3]; du = s[4]; des = s[5]; dinterest = s[6]
        dlong = s[7]; dshort = s[8]; dpre = s[9]; x = s[10]; dlogit = s[11]; dtower = s[12]; tok = s[13]; dtok = s[14]
        iws = Workspace([b + 1, b, b, b + 1, b, b, config.scenes + 1])
        let i = iws.slices
        tokStart = i[0]; tokCount = i[1]; longCount = i[2]; shortStart = i[3]; shortCount = i[4]; order = i[5]; groupStart = i[6]
    }

    private var entry: ModelEntry<T> { ModelEntry(layout: layout, d: config.d, maxBatch: maxBatch, textDim: config.textDim) }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func logits(parameters: UnsafeBufferPointer<Scalar>, input: ModelInput<Scalar>, into logits: inout [Scalar]) {
        entry.logits(parameters: parameters, input: input, into: &logits) { forward($0, $1, batch: $2, width: $3, logits: $4) }
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func lossAndGradients(parameters: UnsafeBufferPointer<Scalar>, input: ModelInput<Scalar>,
                                 labels: UnsafeBufferPointer<Scalar>,
                                 parameterGradient: UnsafeMutableBufferPointer<Scalar>,
                                 inputGradient: inout ModelInputGradient<Scalar>, logits: inout [Scalar]) -> Scalar {
        entry.lossAndGradients(parameters: parameters, input: input, labels: labels, parameterGradient: parameterGradient,
                               inputGradient: &inputGradient, logits: &logits, dlogit: dlogit,
                               forward: { forward($0, $1, batch: $2, width: $3, logits: $4) },
                               backward: { p, g, inp, n, width, grad in
                                   backward(p, g, inp, batch: n, width: width)
                                   writeInputGradient(&grad, batch: n, width: width)
                               })
    }

    // MARK: - Forward

    /// inputs -> logits (B); keeps every activation the backward pass needs.
    private func forward(_ p: UnsafePointer<T>, _ inp: InputPointers<T>, batch n: Int, width L: Int,
                         logits: UnsafeMutablePointer<T>) {
        let c = config, d = c.d
        // Token counts: valid prefix, clamped to the history width and to each window.
        var total = 0, shortTotal = 0
        for b in 0..<n {
            let hl = min(max(Int(inp.historyLength[b]), 0), L)
            let nl = c.useLong ? min(hl, c.lLong) : 0, ns = c.useShort ? min(hl, c.lShort) : 0
            tokStart[b] = total; tokCount[b] = max(nl, ns); longCount[b] = nl
            shortStart[b] = shortTotal; shortCount[b] = ns
            total += max(nl, ns); shortTotal += ns
        }
        tokStart[n] = total; shortStart[n] = shortTotal
        // t (B, d) = item + cat
        let ti = inp.targetItem, tc = inp.targetCategory
        for i in 0..<(n * d) { t[i] = ti[i] + tc[i] }
        let K = c.textDim
        if K > 0 {   // proj = textRows · W_textᵀ, each distinct title once; t_b += proj[row_b]
            let u = inp.textRowCount
            precondition(u <= maxTextRows, "\(u) distinct title rows, the model has room for \(maxTextRows)")
            proj.update(repeating: 0, count: u * d)
            TextProjection.forward(inp.textRows, rows: u, textDim: K, d: d, w: p + textW, addTo: proj)
            for b in 0..<n {
                let r = Int(inp.targetTextRow[b])
                if r < 0 { continue }
                let src = proj + r * d, dst = t + b * d
                for i in 0..<d { dst[i] += src[i] }
            }
        }
        // tok (T, d): b_j = item_j + cat_j + bscene_j for the valid tokens
        for b in 0..<n {
            for j in 0..<tokCount[b] {
                let src = (b * L + j) * d, dst = tok + (tokStart[b] + j) * d
                let hi = inp.historyItem + src, hc = inp.historyCategory + src, hs = inp.historyScene + src
                for i in 0..<d { dst[i] = hi[i] + hc[i] + hs[i] }
            }
            if K > 0 {   // b_j += proj[row_j]
                for j in 0..<tokCount[b] {
                    let r = Int(inp.historyTextRow[b * L + j])
                    if r < 0 { continue }
                    let src = proj + r * d, dst = tok + (tokStart[b] + j) * d
                    for i in 0..<d { dst[i] += src[i] }
                }
            }
        }
        if let long {
            long.forward(params: p, target: t, scene: inp.sceneEmbedding, tokens: tok, start: tokStart, count: longCount, batch: n)
        }
        if let block {
            // block input (Ts, d) = b_j + pos_j
            for b in 0..<n {
                for j in 0..<shortCount[b] {
                    let src = tok + (tokStart[b] + j) * d, pos = p + posOffset + j * d, dst = block.input + (shortStart[b] + j) * d
                    for i in 0..<d { dst[i] = src[i] + pos[i] }
                }
            }
            block.forward(params: p, start: shortStart, count: shortCount, batch: n, tokens: shortTotal)
        }
        // interest (B, d)
        let interestPtr: UnsafePointer<T>
        if let long, let block {
            FusionGate.forward(long: long.output, short: block.output, scene: inp.sceneEmbedding, target: t, batch: n, width: d,
                               w: p + gateW, b: p + gateB, g: g, interest: interest)
            interestPtr = UnsafePointer(interest)
        } else {
            interestPtr = UnsafePointer(long?.output ?? block!.output)
        }
        // Group rows by scene (stable counting sort); without scene gates every row is group 0.
        groupStart.update(repeating: 0, count: c.scenes + 1)
        if c.sceneGates {
            for b in 0..<n {
                let s = Int(inp.scene[b])
                precondition(s >= 0 && s < c.scenes, "scene index \(s) outside 0..<\(c.scenes)")
                groupStart[s + 1] += 1
            }
            for s in 0..<c.scenes { groupStart[s + 1] += groupStart[s] }
            for b in 0..<n {
                let s = Int(inp.scene[b])
                order[groupStart[s]] = b
                groupStart[s] += 1
            }
            // groupStart now holds the ends; shift back to starts.
            for s in stride(from: c.scenes, to: 0, by: -1) { groupStart[s] = groupStart[s - 1] }
            groupStart[0] = 0
        } else {
            for b in 0..<n { order[b] = b }
            for s in 1...c.scenes { groupStart[s] = n }
        }
        // x (B, 5d), row r = [t; e_u; e_s; interest; interest ⊙ t] of example order[r]
        for r in 0..<n {
            let b = order[r], xr = x + r * 5 * d, o = b * d
            for i in 0..<d {
                xr[i] = t[o + i]
                xr[d + i] = inp.user[o + i]
                xr[2 * d + i] = inp.sceneEmbedding[o + i]
                xr[3 * d + i] = interestPtr[o + i]
                xr[4 * d + i] = interestPtr[o + i] * t[o + i]
            }
        }
        tower.forward(params: p, input: x, groupStart: groupStart, batch: n)
        for r in 0..<n {
            let b = order[r]
            logits[b] = tower.output[r] + inp.itemBias[b]
        }
    }

    // MARK: - Backward

    /// dlogit (B) -> parameter gradients +=, dt/du/des/dtok filled.
    private func backward(_ p: UnsafePointer<T>, _ gr: UnsafeMutablePointer<T>, _ inp: InputPointers<T>, batch n: Int,
                          width L: Int) {
        let c = config, d = c.d
        for r in 0..<n { dtower[r] = dlogit[order[r]] }
        tower.backward(params: p, grads: gr, outputGradient: dtower, input: x, groupStart: groupStart, batch: n)
        // split dx rows back to examples
        let dx = tower.inputGradient
        let interestPtr: UnsafePointer<T> = (long != nil && block != nil)
            ? UnsafePointer(interest) : UnsafePointer(long?.output ?? block!.output)
        for r in 0..<n {
            let b = order[r], dxr = dx + r * 5 * d, o = b * d
            for i in 0..<d {
                let dprod = dxr[4 * d + i]
                dt[o + i] = dxr[i] + dprod * interestPtr[o + i]
                du[o + i] = dxr[d + i]
                des[o + i] = dxr[2 * d + i]
                dinterest[o + i] = dxr[3 * d + i] + dprod * t[o + i]
            }
        }
        let dLong: UnsafePointer<T>, dShort: UnsafePointer<T>
        if let long, let block {
            FusionGate.backward(dinterest, long: long.output, short: block.output, scene: inp.sceneEmbedding, target: t, g: g,
                                batch: n, width: d, w: p + gateW, dw: gr + gateW, db: gr + gateB,
                                dlong: dlong, dshort: dshort, des: des, dt: dt, scratch: dpre)
            dLong = UnsafePointer(dlong); dShort = UnsafePointer(dshort)
        } else {
            dLong = UnsafePointer(dinterest); dShort = UnsafePointer(dinterest)
        }
        let totalTokens = tokStart[n]
        dtok.update(repeating: 0, count: totalTokens * d)
        if let long {
            long.backward(params: p, grads: gr, outputGradient: dLong, target: t, scene: inp.sceneEmbedding,
                          tokens: tok, start: tokStart, count: longCount, batch: n, dt: dt, des: des, dtokens: dtok)
        }
        if let block {
            block.backward(params: p, grads: gr, outputGradient: dShort, start: shortStart, count: shortCount, batch: n,
                           tokens: shortStart[n])
            let dpos = gr + posOffset
            for b in 0..<n {
                for j in 0..<shortCount[b] {
                    let src = block.inputGradient + (shortStart[b] + j) * d, dst = dtok + (tokStart[b] + j) * d, dp = dpos + j * d
                    for i in 0..<d {
                        dst[i] += src[i]
                        dp[i] += src[i]
                    }
                }
            }
        }
        let K = c.textDim
        if K > 0 {   // dproj[r] = Σ of dt / dtok over the positions reading row r; dW_text += dprojᵀ · textRows
            let u = inp.textRowCount
            dproj.update(repeating: 0, count: u * d)
            for b in 0..<n {
                let r = Int(inp.targetTextRow[b])
                if r >= 0 {
                    let src = dt + b * d, dst = dproj + r * d
                    for i in 0..<d { dst[i] += src[i] }
                }
                for j in 0..<tokCount[b] {
                    let r = Int(inp.historyTextRow[b * L + j])
                    if r < 0 { continue }
                    let src = dtok + (tokStart[b] + j) * d, dst = dproj + r * d
                    for i in 0..<d { dst[i] += src[i] }
                }
            }
            TextProjection.backward(dproj, x: inp.textRows, rows: u, textDim: K, d: d, dw: gr + textW)
        }
    }

    /// Copies dt/du/des/dlogit/dtok into the caller's gradient arrays (padding → 0).
    private func writeInputGradient(_ grad: inout ModelInputGradient<T>, batch n: Int, width L: Int) {
        let d = config.d, bd = n * d
        grad.targetItem.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: dt, count: bd) }
        grad.targetCategory.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: dt, count: bd) }
        grad.user.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: du, count: bd) }
        grad.sceneEmbedding.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: des, count: bd) }
        grad.itemBias.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: dlogit, count: n) }
        func history(_ a: inout [T]) {
            a.withUnsafeMutableBufferPointer { buf in
                guard let base = buf.baseAddress else { return }
                for b in 0..<n {
                    let row = base + b * L * d, k = tokCount[b]
                    row.update(from: dtok + tokStart[b] * d, count: k * d)
                    (row + k * d).update(repeating: 0, count: (L - k) * d)
                }
            }
        }
        history(&grad.historyItem)
        history(&grad.historyCategory)
        history(&grad.historyScene)
    }
}
