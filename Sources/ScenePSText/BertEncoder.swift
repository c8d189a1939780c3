import Foundation
import ScenePSCore

/// The shape of a BERT encoder, from the model's `config.json`.
public struct BertConfig: Sendable, Equatable {
    public var hidden: Int
    public var heads: Int
    public var layers: Int
    public var intermediate: Int
    public var layerNormEps: Float
    public var maxPositions: Int
    public var vocabSize: Int
    public var typeVocabSize: Int

    public init(hidden: Int, heads: Int, layers: Int, intermediate: Int, layerNormEps: Float,
                maxPositions: Int, vocabSize: Int, typeVocabSize: Int) {
        self.hidden = hidden; self.heads = heads; self.layers = layers; self.intermediate = intermediate
        self.layerNormEps = layerNormEps; self.maxPositions = maxPositions
        self.vocabSize = vocabSize; self.typeVocabSize = typeVocabSize
    }

    /// Reads a Hugging Face BERT `config.json`; only what this encoder
    /// computes is accepted (absolute positions, GELU in its erf form).
    public static func read(path: String) throws -> BertConfig {
        let object = try ModelFiles.jsonObject(path: path, what: "model config")
        func int(_ key: String) throws -> Int {
            guard let v = object[key] as? Int, v > 0 else { throw ScenePSError.data("\(path): \"\(key)\" is missing or not a positive integer") }
            return v
        }
        if let type = object["model_type"] as? String, type != "bert" {
            throw ScenePSError.data("\(path): model_type is \"\(type)\", only \"bert\" is supported")
        }
        if let act = object["hidden_act"] as? String, act != "gelu" {
            throw ScenePSError.data("\(path): hidden_act is \"\(act)\", only \"gelu\" (erf form) is supported")
        }
        if let pos = object["position_embedding_type"] as? String, pos != "absolute" {
            throw ScenePSError.data("\(path): position_embedding_type is \"\(pos)\", only \"absolute\" is supported")
        }
        let c = BertConfig(hidden: try int("hidden_size"), heads: try int("num_attention_heads"),
                           layers: try int("num_hidden_layers"), intermediate: try int("intermediate_size"),
                           layerNormEps: Float((object["layer_norm_eps"] as? Double) ?? 1e-12),
                           maxPositions: try int("max_position_embeddings"), vocabSize: try int("vocab_size"),
                           typeVocabSize: try int("type_vocab_size"))
        guard c.hidden % c.heads == 0 else {
            throw ScenePSError.data("\(path): hidden_size \(c.hidden) is not a multiple of num_attention_heads \(c.heads)")
        }
        return c
    }
}

/// A BERT encoder (token + position + type-0 embeddings, LayerNorm, then
/// post-LayerNorm Transformer layers with masked self-attention and a GELU
/// feed-forward) over the weights of a memory-mapped safetensors file, with
/// mean pooling over the real tokens and L2 normalisation on top: the
/// sentence-transformers pipeline of all-MiniLM-L6-v2.
///
/// Weights are read in place from the mapping, except each layer's query,
/// key and value projections, which are copied once into one fused
/// (3d × d) matrix so a layer's projections are a single GEMM.
public final class BertEncoder: @unchecked Sendable {
    public let config: BertConfig
    let weights: SafeTensors

    struct Layer {
        var attnOutW, attnOutB, ln1G, ln1B, interW, interB, outW, outB, ln2G, ln2B: SafeTensors.Tensor
    }
    let word, position, tokenType, embLNG, embLNB: SafeTensors.Tensor
    let layers: [Layer]
    /// Fused [Wq; Wk; Wv] (3d × d) then [bq; bk; bv] (3d), per layer; owned.
    private let fused: UnsafeMutablePointer<Float>
    private let fusedStride: Int

    public init(weights: SafeTensors, config c: BertConfig) throws {
        self.config = c
        self.weights = weights
        let d = c.hidden, f = c.intermediate
        // Checkpoints exported from BertModel name tensors with or without a "bert." prefix.
        let prefix = weights.tensors["embeddings.word_embeddings.weight"] == nil && weights.tensors["bert.embeddings.word_embeddings.weight"] != nil ? "bert." : ""
        func t(_ name: String, _ shape: [Int]) throws -> SafeTensors.Tensor { try weights.float32(prefix + name, shape: shape) }
        word = try t("embeddings.word_embeddings.weight", [c.vocabSize, d])
        position = try t("embeddings.position_embeddings.weight", [c.maxPositions, d])
        tokenType = try t("embeddings.token_type_embeddings.weight", [c.typeVocabSize, d])
        embLNG = try t("embeddings.LayerNorm.weight", [d])
        embLNB = try t("embeddings.LayerNorm.bias", [d])
        fusedStride = 3 * d * d + 3 * d
        fused = .allocate(capacity: fusedStride * c.layers)
        var layers: [Layer] = []
        do {
            for l in 0..<c.layers {
                let p = "encoder.layer.\(l)."
                let dst = fused + l * fusedStride
                for (k, part) in ["query", "key", "value"].enumerated() {
                    let w = try t(p + "attention.self.\(part).weight", [d, d])
                    let b = try t(p + "attention.self.\(part).bias", [d])
                    weights.withBytes { raw in
                        (dst + k * d * d).update(from: (raw.baseAddress! + w.start).assumingMemoryBound(to: Float.self), count: d * d)
                        (dst + 3 * d * d + k * d).update(from: (raw.baseAddress! + b.start).assumingMemoryBound(to: Float.self), count: d)
                    }
                }
                layers.append(Layer(
                    attnOutW: try t(p + "attention.output.dense.weight", [d, d]),
                    attnOutB: try t(p + "attention.output.dense.bias", [d]),
                    ln1G: try t(p + "attention.output.LayerNorm.weight", [d]),
                    ln1B: try t(p + "attention.output.LayerNorm.bias", [d]),
                    interW: try t(p + "intermediate.dense.weight", [f, d]),
                    interB: try t(p + "intermediate.dense.bias", [f]),
                    outW: try t(p + "output.dense.weight", [d, f]),
                    outB: try t(p + "output.dense.bias", [d]),
                    ln2G: try t(p + "output.LayerNorm.weight", [d]),
                    ln2B: try t(p + "output.LayerNorm.bias", [d])))
            }
        } catch {
            fused.deallocate()
            throw error
        }
        self.layers = layers
    }

    deinit { fused.deallocate() }

    /// Scratch memory for batches of up to `tokens` padded tokens, one per thread.
    public final class Workspace {
        public let tokens: Int
        let x, qkv, ctx, tmp, inter, scores: UnsafeMutablePointer<Float>

        public init(config c: BertConfig, tokens: Int) {
            self.tokens = tokens
            x = .allocate(capacity: tokens * c.hidden)
            qkv = .allocate(capacity: tokens * 3 * c.hidden)
            ctx = .allocate(capacity: tokens * c.hidden)
            tmp = .allocate(capacity: tokens * c.hidden)
            inter = .allocate(capacity: tokens * c.intermediate)
            scores = .allocate(capacity: c.maxPositions)
        }

        deinit {
            x.deallocate(); qkv.deallocate(); ctx.deallocate(); tmp.deallocate(); inter.deallocate(); scores.deallocate()
        }
    }

    /// Sentence embeddings of `batch` (token ids, `[CLS]`/`[SEP]` included;
    /// lengths may differ, the batch is padded to the longest), written as
    /// L2-normalised rows of width `hidden` to `out`.
    ///
    /// Preconditions (checked by the caller, `TitleEmbedder`): every id is
    /// below `vocabSize`, every sequence is 1...maxPositions long, and
    /// count × longest fits the workspace.
    public func embed(_ batch: [[Int32]], into out: UnsafeMutablePointer<Float>, workspace ws: Workspace) {
        let c = config, d = c.hidden, f = c.intermediate
        let bsz = batch.count
        guard bsz > 0 else { return }
        let L = batch.map(\.count).max()!
        let rows = bsz * L
        precondition(rows <= ws.tokens && L <= c.maxPositions, "batch exceeds the workspace")
        weights.withBytes { raw in
            let base = raw.baseAddress!
            func p(_ t: SafeTensors.Tensor) -> UnsafePointer<Float> { (base + t.start).assumingMemoryBound(to: Float.self) }
            // x (B·L, d) = word[id] + position[t] + type[0]; padding rows zero.
            let wordP = p(word), posP = p(position), typeP = p(tokenType)
            for (b, seq) in batch.enumerated() {
                for t in 0..<L {
                    let row = ws.x + (b * L + t) * d
                    if t < seq.count {
                        let w = wordP + Int(seq[t]) * d, q = posP + t * d
                        for j in 0..<d { row[j] = w[j] + q[j] + typeP[j] }
                    } else {
                        row.update(repeating: 0, count: d)
                    }
                }
            }
            BertKernels.addLayerNorm(ws.x, residual: nil, rows: rows, n: d, gamma: p(embLNG), beta: p(embLNB), eps: c.layerNormEps)
            for (l, layer) in layers.enumerated() {
                let fw = UnsafePointer(fused + l * fusedStride)
                // qkv (B·L, 3d) = x · [Wq; Wk; Wv]ᵀ + b
                BertKernels.linear(m: rows, n: 3 * d, k: d, x: ws.x, w: fw, b: fw + 3 * d * d, y: ws.qkv)
                for (b, seq) in batch.enumerated() {
                    BertKernels.attention(qkv: ws.qkv + b * L * 3 * d, ctx: ws.ctx + b * L * d, rows: L, length: seq.count,
                                          d: d, heads: c.heads, scores: ws.scores)
                }
                // x = LN(x + ctx · Woᵀ + bo)
                BertKernels.linear(m: rows, n: d, k: d, x: ws.ctx, w: p(layer.attnOutW), b: p(layer.attnOutB), y: ws.tmp)
                BertKernels.addLayerNorm(ws.x, residual: ws.tmp, rows: rows, n: d, gamma: p(layer.ln1G), beta: p(layer.ln1B), eps: c.layerNormEps)
                // inter (B·L, f) = GELU(x · Wiᵀ + bi)
                BertKernels.linear(m: rows, n: f, k: d, x: ws.x, w: p(layer.interW), b: p(layer.interB), y: ws.inter)
                BertKernels.gelu(ws.inter, count: rows * f)
                // x = LN(x + inter · W2ᵀ + b2)
                BertKernels.linear(m: rows, n: d, k: f, x: ws.inter, w: p(layer.outW), b: p(layer.outB), y: ws.tmp)
                BertKernels.addLayerNorm(ws.x, residual: ws.tmp, rows: rows, n: d, gamma: p(layer.ln2G), beta: p(layer.ln2B), eps: c.layerNormEps)
            }
        }
        // Mean over the real tokens, then L2 normalisation (eps 1e-12 as torch's F.normalize).
        for (b, seq) in batch.enumerated() {
            let o = out + b * d
            o.update(repeating: 0, count: d)
            for t in 0..<seq.count { BertKernels.axpy(d, 1, ws.x + (b * L + t) * d, o) }
            let inv = 1 / Float(seq.count)
            var norm: Float = 0
            for j in 0..<d { o[j] *= inv; norm += o[j] * o[j] }
            let scale = 1 / max(norm.squareRoot(), 1e-12)
            for j in 0..<d { o[j] *= scale }
        }
    }
}
