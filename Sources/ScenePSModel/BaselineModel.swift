/// The baseline CTR model (`model = "baseline"`):
///
///     x = item + cat + user + e_s + mean_{j < n_b} item_j        (B, d), n_b = min(len, L_hist, L)
///     logit = MLP(x) + item_bias                                  ReLU hidden layers, one output
///
/// Same inputs and outputs as `MSIFModel`, so the worker can switch between
/// them. History categories and scenes are not used (their gradient is zero).
public final class BaselineModel<Scalar: BLASScalar>: CTRModel, @unchecked Sendable {
    public typealias T = Scalar
    public let config: BaselineConfig
    public let layout: ParameterLayout
    public let maxBatch: Int

    private let widths: [Int]
    private let wOffsets: [Int], bOffsets: [Int]
    private let ws: Workspace<T>
    private let iws: Workspace<Int>
    /// activations[0] = x (B, d); activations[i + 1] = output of layer i (B, widths[i + 1])
    private let activations: [UnsafeMutablePointer<T>]
    /// gradient scratch, two (B, max width) buffers used alternately; dlogit (B)
    private let gradA, gradB, dlogit: UnsafeMutablePointer<T>
    private let histCount: UnsafeMutablePointer<Int>

    public init(config: BaselineConfig, maxBatch: Int) throws {
        try config.validate()
        precondition(maxBatch > 0, "maxBatch must be positive")
        self.config = config
        self.maxBatch = maxBatch
        layout = config.layout
        widths = [config.d] + config.hidden + [1]
        wOffsets = (0..<(widths.count - 1)).map { [layout] in layout.offset("mlp.\($0).W") }
        bOffsets = (0..<(widths.count - 1)).map { [layout] in layout.offset("mlp.\($0).b") }
        let maxWidth = widths.max()!
        ws = Workspace(widths.map { maxBatch * $0 } + [maxBatch * maxWidth, maxBatch * maxWidth, maxBatch])
        let s = ws.slices
        activations = Array(s[0..<widths.count])
        gradA = s[widths.count]; gradB = s[widths.count + 1]; dlogit = s[widths.count + 2]
        iws = Workspace([maxBatch])
        histCount = iws.slices[0]
    }

    private var entry: ModelEntry<T> { ModelEntry(layout: layout, d: config.d, maxBatch: maxBatch) }

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
                               backward: { backward($0, $1, batch: $3, width: $4, inputGradient: &$5) })
    }

    /// From dlogit (B) back to the MLP's parameters and every input.
    private func backward(_ p: UnsafePointer<T>, _ g: UnsafeMutablePointer<T>, batch n: Int, width L: Int,
                          inputGradient: inout ModelInputGradient<T>) {
        // Back through the MLP: the last layer's output gradient is dlogit (B, 1).
        var dy = UnsafePointer(dlogit)
        for i in stride(from: widths.count - 2, through: 0, by: -1) {
            let x = activations[i], inW = widths[i], outW = widths[i + 1]
            let dx = i % 2 == 0 ? gradA : gradB   // never the buffer dy is in
            Linear.backward(dy, x: x, rows: n, in: inW, out: outW, w: p + wOffsets[i], dw: g + wOffsets[i], db: g + bOffsets[i],
                            dx: dx, accumulate: false)
            if i > 0 { ReLU.backward(dx, output: x, count: n * inW) }
            dy = UnsafePointer(dx)
        }
        // dy now holds dx (B, d) of the input sum.
        let dx = dy, d = config.d, bd = n * d
        inputGradient.targetItem.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: dx, count: bd) }
        inputGradient.targetCategory.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: dx, count: bd) }
        inputGradient.user.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: dx, count: bd) }
        inputGradient.sceneEmbedding.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: dx, count: bd) }
        inputGradient.itemBias.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: dlogit, count: n) }
        inputGradient.historyItem.withUnsafeMutableBufferPointer { buf in
            guard let base = buf.baseAddress else { return }
            for b in 0..<n {
                let row = base + b * L * d, k = histCount[b]
                let inv: T = k > 0 ? 1 / T(k) : 0
                for j in 0..<k {
                    for i in 0..<d { row[j * d + i] = dx[b * d + i] * inv }
                }
                (row + k * d).update(repeating: 0, count: (L - k) * d)
            }
        }
        inputGradient.historyCategory.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
        inputGradient.historyScene.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
    }

    private func forward(_ p: UnsafePointer<T>, _ inp: InputPointers<T>, batch n: Int, width L: Int, logits: UnsafeMutablePointer<T>) {
        let d = config.d, x = activations[0]
        // x (B, d) = item + cat + user + e_s + masked mean of history items
        for b in 0..<n {
            let k = min(max(Int(inp.historyLength[b]), 0), L, config.lHist)
            histCount[b] = k
            let xb = x + b * d, o = b * d
            for i in 0..<d { xb[i] = inp.targetItem[o + i] + inp.targetCategory[o + i] + inp.user[o + i] + inp.sceneEmbedding[o + i] }
            if k > 0 {
                let inv = 1 / T(k)
                for j in 0..<k {
                    let h = inp.historyItem + (b * L + j) * d
                    for i in 0..<d { xb[i] += h[i] * inv }
                }
            }
        }
        // hidden layers (B, w_i) = ReLU(prev Wᵀ + b); last (B, 1) linear
        for i in 0..<(widths.count - 1) {
            let out = activations[i + 1]
            Linear.forward(activations[i], rows: n, in: widths[i], out: widths[i + 1], w: p + wOffsets[i], b: p + bOffsets[i], y: out)
            if i < widths.count - 2 { ReLU.forward(out, count: n * widths[i + 1]) }
        }
        let out = activations[widths.count - 1]
        for b in 0..<n { logits[b] = out[b] + inp.itemBias[b] }
    }
}
