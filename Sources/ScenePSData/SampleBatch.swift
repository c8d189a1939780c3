/// A minibatch of samples in columnar form, as the worker's model reads it.
/// Histories are fixed-width rows of `lLong` entries, most recent first,
/// padded with key 0 (and scene 0) after `histLen[b]` valid entries.
public struct SampleBatch: Sendable {
    public var count: Int
    public let lLong: Int
    public var user: [UInt64]
    public var item: [UInt64]
    public var category: [UInt64]
    /// Scene index (position in `DatasetManifest.scenes`).
    public var scene: [Int32]
    /// 0 or 1.
    public var label: [Float]
    /// 0-based data row in the original log (header excluded).
    public var row: [Int64]
    /// True click probability; NaN when unknown.
    public var truth: [Float]
    /// The target item never occurs in the training rows (train ∪ valid).
    public var cold: [Bool]
    public var histLen: [Int32]
    /// `count * lLong` each.
    public var histItem: [UInt64]
    public var histCategory: [UInt64]
    public var histScene: [Int32]

    public init(lLong: Int, capacity: Int) {
        precondition(lLong >= 0 && capacity >= 0)
        self.lLong = lLong
        count = 0
        user = []; item = []; category = []; scene = []; label = []; row = []
        truth = []; cold = []; histLen = []
        histItem = []; histCategory = []; histScene = []
        reserve(capacity)
    }

    public mutating func reserve(_ capacity: Int) {
        user.reserveCapacity(capacity); item.reserveCapacity(capacity)
        category.reserveCapacity(capacity); scene.reserveCapacity(capacity)
        label.reserveCapacity(capacity); row.reserveCapacity(capacity)
        truth.reserveCapacity(capacity); cold.reserveCapacity(capacity)
        histLen.reserveCapacity(capacity)
        histItem.reserveCapacity(capacity * lLong)
        histCategory.reserveCapacity(capacity * lLong)
        histScene.reserveCapacity(capacity * lLong)
    }

    /// Empties the batch, keeping its capacity.
    public mutating func removeAll() {
        count = 0
        user.removeAll(keepingCapacity: true); item.removeAll(keepingCapacity: true)
        category.removeAll(keepingCapacity: true); scene.removeAll(keepingCapacity: true)
        label.removeAll(keepingCapacity: true); row.removeAll(keepingCapacity: true)
        truth.removeAll(keepingCapacity: true); cold.removeAll(keepingCapacity: true)
        histLen.removeAll(keepingCapacity: true)
        histItem.removeAll(keepingCapacity: true)
        histCategory.removeAll(keepingCapacity: true)
        histScene.removeAll(keepingCapacity: true)
    }
}
