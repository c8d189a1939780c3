/// Per-example inputs gathered from the sparse tables by the worker. All
/// row-major; `d` is the embedding width, `historyWidth` (L) the padded
/// history length of the batch, most recent behaviour first. Tokens at
/// positions `>= historyLength[b]` are padding: their values are never read.
///
/// The same type carries the gradient w.r.t. every field
/// (`ModelInputGradient`): padding positions get zero; `historyLength` and
/// `scene` are copied from the input.
public struct ModelInput<T: BLASScalar>: Sendable {
    public var batch: Int
    public var historyWidth: Int
    public var d: Int
    /// Width of a title vector (384), or 0 for a model without title features
    /// (then `targetText` and `historyText` are empty).
    public var textDim: Int
    /// Embedding rows, B·d each.
    public var targetItem: [T], targetCategory: [T], user: [T], sceneEmbedding: [T]
    /// `item_bias` row of the target item, B.
    public var itemBias: [T]
    /// Behaviour tokens, B·L·d each.
    public var historyItem: [T], historyCategory: [T], historyScene: [T]
    /// Frozen title vectors, by reference: `textRows` holds the batch's
    /// distinct title vectors (U·textDim, U = textRows.count / textDim), and
    /// `targetTextRow` (B) and `historyTextRow` (B·L) the row of each
    /// target and behaviour token, -1 for none (padding). The model projects
    /// each distinct row once (one matrix product, not one per token). Their
    /// gradients are never computed (the table is pull-only): the gradient
    /// holder leaves these fields alone.
    public var textRows: [T]
    public var targetTextRow: [Int32], historyTextRow: [Int32]
    /// Number of valid history tokens, B (values outside 0...L are clamped).
    public var historyLength: [Int32]
    /// Scene index of each example (selects the gate and head), B.
    public var scene: [Int32]

    /// Empty batch with room for `capacity` examples.
    public init(d: Int, historyWidth: Int, capacity: Int, textDim: Int = 0) {
        precondition(d > 0 && historyWidth >= 0 && capacity >= 0 && textDim >= 0)
        self.batch = 0
        self.historyWidth = historyWidth
        self.d = d
        self.textDim = textDim
        func empty<E>(_ n: Int) -> [E] {
            var a: [E] = []
            a.reserveCapacity(n)
            return a
        }
        targetItem = empty(capacity * d)
        targetCategory = empty(capacity * d)
        user = empty(capacity * d)
        sceneEmbedding = empty(capacity * d)
        itemBias = empty(capacity)
        historyItem = empty(capacity * historyWidth * d)
        historyCategory = empty(capacity * historyWidth * d)
        historyScene = empty(capacity * historyWidth * d)
        textRows = empty(textDim > 0 ? capacity * (1 + historyWidth) * textDim : 0)
        targetTextRow = empty(textDim > 0 ? capacity : 0)
        historyTextRow = empty(textDim > 0 ? capacity * historyWidth : 0)
        historyLength = empty(capacity)
        scene = empty(capacity)
    }

    /// Sets the batch size: arrays keep their capacity, new space is zero.
    /// (Inlinable so that the caller's module specialises it: unspecialised
    /// generic appends cost about as much as a training step.)
    @inlinable
    public mutating func resize(batch newBatch: Int) {
        precondition(newBatch >= 0)
        let bd = newBatch * d, bld = newBatch * historyWidth * d
        Self.fit(&targetItem, bd)
        Self.fit(&targetCategory, bd)
        Self.fit(&user, bd)
        Self.fit(&sceneEmbedding, bd)
        Self.fit(&itemBias, newBatch)
        Self.fit(&historyItem, bld)
        Self.fit(&historyCategory, bld)
        Self.fit(&historyScene, bld)
        if textDim > 0 {
            Self.fit(&targetTextRow, newBatch)
            Self.fit(&historyTextRow, newBatch * historyWidth)
        }
        Self.fit(&historyLength, newBatch)
        Self.fit(&scene, newBatch)
        batch = newBatch
    }

    @inlinable
    static func fit<E: Numeric>(_ a: inout [E], _ n: Int) {
        if a.count > n {
            a.removeLast(a.count - n)
        } else if a.count < n {
            a.append(contentsOf: repeatElement(0, count: n - a.count))
        }
    }

    /// Every array has the length its shape says (checked at model entry).
    var isConsistent: Bool {
        let bd = batch * d, bld = batch * historyWidth * d
        return targetItem.count == bd && targetCategory.count == bd && user.count == bd
            && sceneEmbedding.count == bd && itemBias.count == batch
            && historyItem.count == bld && historyCategory.count == bld && historyScene.count == bld
            && textIsConsistent
            && historyLength.count == batch && scene.count == batch
    }
}

extension ModelInput {
    /// Distinct title rows of the batch.
    var textRowCount: Int { textDim > 0 ? textRows.count / textDim : 0 }

    /// Without title features the text fields are empty; with them every
    /// row index is -1 or a row of `textRows`.
    var textIsConsistent: Bool {
        guard textDim > 0 else { return textRows.isEmpty && targetTextRow.isEmpty && historyTextRow.isEmpty }
        let u = Int32(textRowCount)
        return textRows.count % textDim == 0 && targetTextRow.count == batch && historyTextRow.count == batch * historyWidth
            && targetTextRow.allSatisfy { $0 >= -1 && $0 < u } && historyTextRow.allSatisfy { $0 >= -1 && $0 < u }
    }
}

/// Gradients w.r.t. every `ModelInput` field above (same shapes); padding positions get zero.
public typealias ModelInputGradient<T: BLASScalar> = ModelInput<T>

/// A CTR model over gathered embeddings: the MSIF model or the baseline.
///
/// Not thread-safe: a model owns the workspace of its largest batch; use one
/// model per compute thread.
public protocol CTRModel<Scalar>: AnyObject {
    associatedtype Scalar: BLASScalar
    /// The dense parameters, one flat buffer of `layout.count` scalars.
    var layout: ParameterLayout { get }
    /// Largest batch the workspace was sized for.
    var maxBatch: Int { get }
    /// Forward only: logits for every example (`into` is resized to the batch).
    func logits(parameters: UnsafeBufferPointer<Scalar>, input: ModelInput<Scalar>, into: inout [Scalar])
    /// Forward + backward of the mean binary cross-entropy. Gradients are ADDED
    /// (+=) into `parameterGradient` (count = layout.count) and WRITTEN into
    /// `inputGradient` (resized to the input's batch and history width).
    /// Returns the mean loss; `logits` receives the logits.
    func lossAndGradients(parameters: UnsafeBufferPointer<Scalar>, input: ModelInput<Scalar>,
                          labels: UnsafeBufferPointer<Scalar>,
                          parameterGradient: UnsafeMutableBufferPointer<Scalar>,
                          inputGradient: inout ModelInputGradient<Scalar>, logits: inout [Scalar]) -> Scalar
}
