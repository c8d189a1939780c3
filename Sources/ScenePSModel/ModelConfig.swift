import ScenePSCore

/// Sizes and ablation switches of the multi-scene interest-fusion model
/// (docs/ARCHITECTURE.md §3). Defaults are the design's.
///
/// "Same-scene history only" is not here: the worker filters a history to
/// the example's scene before the model sees it.
public struct MSIFConfig: Sendable, Equatable {
    /// Embedding width.
    public var d: Int
    /// Tokens seen by the long-term target attention (most recent first).
    public var lLong: Int
    /// Tokens seen by the short-term Transformer block.
    public var lShort: Int
    /// Attention heads of the Transformer block; must divide `d`.
    public var heads: Int
    /// Feed-forward width of the Transformer block.
    public var ffn: Int
    /// Number of shared experts K.
    public var experts: Int
    /// Hidden and output width of each expert: exactly two entries.
    public var expertWidths: [Int]
    /// Hidden width of each per-scene head.
    public var headWidth: Int
    /// Scenes (per-scene gates and heads); scene indices are 0 ..< scenes.
    public var scenes: Int
    /// Ablations: long-term interest, short-term interest, per-scene gates and heads
    /// (false: scene 0's gate and head serve every scene).
    public var useLong: Bool, useShort: Bool, sceneGates: Bool
    /// Width of the frozen title vectors added through `text.W` (d × textDim)
    /// to the target and every behaviour token's item vector; 0 = no title features.
    public var textDim: Int

    /// The sizes and ablation of a config's `model` section (whose defaults
    /// are the design's) for a data set of `scenes` scenes.
    public init(_ m: ClusterConfig.Model = ClusterConfig.Model(), scenes: Int = 3) {
        d = m.d; lLong = m.lLong; lShort = m.lShort
        heads = m.heads; ffn = m.ffn; experts = m.experts
        expertWidths = m.expertWidths; headWidth = m.headWidth
        self.scenes = scenes
        useLong = m.ablation != .shortOnly
        useShort = m.ablation != .longOnly
        sceneGates = m.ablation != .noSceneGates
        textDim = m.textFeatures ? m.textDim : 0
    }

    /// Throws `ScenePSError(.config, …)` naming the first inconsistent setting.
    public func validate() throws {
        func need(_ ok: Bool, _ message: @autoclosure () -> String) throws {
            if !ok { throw ScenePSError.config("model: \(message())") }
        }
        try need(d > 0, "d must be positive, got \(d)")
        try need(lLong > 0, "l_long must be positive, got \(lLong)")
        try need(lShort > 0, "l_short must be positive, got \(lShort)")
        try need(lShort <= lLong, "l_short (\(lShort)) must not exceed l_long (\(lLong))")
        try need(heads > 0, "heads must be positive, got \(heads)")
        try need(d % heads == 0, "heads (\(heads)) must divide d (\(d))")
        try need(ffn > 0, "ffn must be positive, got \(ffn)")
        try need(experts > 0, "experts must be positive, got \(experts)")
        try need(expertWidths.count == 2, "expert_widths must have exactly 2 entries, got \(expertWidths)")
        try need(expertWidths.allSatisfy { $0 > 0 }, "expert_widths must be positive, got \(expertWidths)")
        try need(headWidth > 0, "head_width must be positive, got \(headWidth)")
        try need(scenes > 0, "scenes must be positive, got \(scenes)")
        try need(useLong || useShort, "at least one of the long-term and short-term interests must be on")
        try need(textDim >= 0, "text width must not be negative, got \(textDim)")
    }

    /// The dense tensors of the model, in the reference's order.
    public var layout: ParameterLayout {
        let d = d
        var t: [(name: String, shape: [Int])] = [
            ("attn_long.W_q", [d, 2 * d]), ("attn_long.b_q", [d]),
            ("attn_long.W_k", [d, d]), ("attn_long.W_v", [d, d]),
            ("short.pos", [lShort, d]),
            ("short.ln1.gamma", [d]), ("short.ln1.beta", [d]),
            ("short.ln2.gamma", [d]), ("short.ln2.beta", [d]),
        ]
        for n in ["q", "k", "v", "o"] { t += [("short.W_\(n)", [d, d]), ("short.b_\(n)", [d])] }
        t += [("short.ffn.W1", [ffn, d]), ("short.ffn.b1", [ffn]),
              ("short.ffn.W2", [d, ffn]), ("short.ffn.b2", [d]),
              ("gate.W", [d, 4 * d]), ("gate.b", [d])]
        let w1 = expertWidths[0], w2 = expertWidths[1]
        for k in 0..<experts {
            t += [("experts.\(k).W1", [w1, 5 * d]), ("experts.\(k).b1", [w1]),
                  ("experts.\(k).W2", [w2, w1]), ("experts.\(k).b2", [w2])]
        }
        for s in 0..<scenes {
            t += [("scene_gate.\(s).G", [experts, 5 * d]), ("scene_gate.\(s).c", [experts]),
                  ("head.\(s).U", [headWidth, w2]), ("head.\(s).u", [headWidth]),
                  ("head.\(s).w", [headWidth]), ("head.\(s).beta", [1])]
        }
        // Last, so that a model without title features has the same offsets.
        if textDim > 0 { t += [("text.W", [d, textDim])] }
        return ParameterLayout(t)
    }
}

/// The baseline CTR model of the core issue:
/// `x = t_item + t_cat + user + scene + masked mean of the history items`,
/// an MLP with ReLU hidden layers, one output, plus the item bias.
public struct BaselineConfig: Sendable, Equatable {
    public var d: Int
    /// History tokens averaged (most recent first).
    public var lHist: Int
    /// Hidden widths of the MLP.
    public var hidden: [Int]

    /// The baseline's sizes from a config's `model` section (d, l_long,
    /// baseline_hidden), whose defaults are the design's.
    public init(_ m: ClusterConfig.Model = ClusterConfig.Model()) {
        d = m.d; lHist = m.lLong; hidden = m.baselineHidden
    }

    public func validate() throws {
        if d <= 0 { throw ScenePSError.config("baseline: d must be positive, got \(d)") }
        if lHist <= 0 { throw ScenePSError.config("baseline: l_hist must be positive, got \(lHist)") }
        if hidden.contains(where: { $0 <= 0 }) {
            throw ScenePSError.config("baseline: hidden widths must be positive, got \(hidden)")
        }
    }

    /// `mlp.i.W` [out, in], `mlp.i.b` [out]; the last layer has one output.
    public var layout: ParameterLayout {
        var t: [(name: String, shape: [Int])] = []
        var width = d
        for (i, h) in (hidden + [1]).enumerated() {
            t += [("mlp.\(i).W", [h, width]), ("mlp.\(i).b", [h])]
            width = h
        }
        return ParameterLayout(t)
    }
}
