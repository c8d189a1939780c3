import ScenePSCore
import ScenePSProtocol

/// An optimiser plug-in (monolith's `runtime/hash_table/optimizer/` shape:
/// Init / Optimize / Save / Restore): it owns `stateWidth` floats of state per
/// weight, updates weights and state in place from a gradient, and says how
/// its state is saved (the names of its state rows, its settings in the
/// checkpoint manifest) and what a restored state must satisfy. Sparse rows
/// store its state inside their record (`SparseRecordLayout`); dense slices
/// keep the same per-weight state in one buffer, state-major.
public protocol Optimizer: Sendable {
    /// The manifest's `optimiser.name` for tables it trains.
    var name: String { get }
    /// Floats of state per weight (Adam: 2, for m and v). A stored constant,
    /// not `stateNames.count`: the tables read it for every row they touch.
    var stateWidth: Int { get }
    /// One name per state row of a weight, in record order (Adam: m, v);
    /// `stateWidth` of them.
    var stateNames: [String] { get }

    /// One update of `count` weights.
    /// - weights: `count` floats; state: `stateWidth * count` floats laid out
    ///   state-major (`[m(count) | v(count)]` for Adam); gradient: `count` floats.
    /// - step: the 1-based number of this update of these weights (a sparse
    ///   row's own update count; a dense slice's counter).
    /// - lrScale: multiplies the learning rate (the pushing worker's schedule).
    func update(weights: UnsafeMutablePointer<Float>, state: UnsafeMutablePointer<Float>,
                gradient: UnsafePointer<Float>, count: Int, step: UInt32, lrScale: Float)

    /// Save: this optimiser's settings as the checkpoint manifest records them.
    var manifestEntry: CheckpointManifest.Optimiser { get }

    /// Restore: checks state read from a checkpoint (already known finite)
    /// for `rows` groups of `count` weights, group r's `stateWidth * count`
    /// floats (state-major) starting at `state + r * stride`: a sparse batch
    /// of records (stride = the record) or one dense slice (rows 1). Returns
    /// the first group this optimiser cannot have reached, what is wrong and
    /// the check's name, e.g. (row 3, "negative second moment", "moments").
    func checkRestored(state: UnsafePointer<Float>, count: Int, rows: Int, stride: Int) -> (row: Int, problem: String, check: String)?
}

/// The optimiser that trains a table: the one place a `TableSpec` (from a
/// declaration or a checkpoint's manifest) becomes an `Optimizer`.
public enum Optimizers {
    public static func make(for spec: TableSpec) -> any Optimizer { Adam(spec.adam) }
}

/// The one description of a sparse row's record, in memory (`SparseTable`)
/// and, byte for byte, in a checkpoint's shard file (`CheckpointFile`):
///
///     key u64 | step u32 | weights f32[dim] | state f32[stateWidth × dim]
///
/// with the state state-major (Adam: m f32[dim] then v f32[dim]). The key
/// and step lead so the lookup's key compare brings in the first cache line
/// of the weights. Offsets and sizes are in floats.
public struct SparseRecordLayout: Sendable, Equatable {
    public let dim: Int
    public let stateWidth: Int
    public init(dim: Int, stateWidth: Int) {
        self.dim = dim
        self.stateWidth = stateWidth
    }
    public var keyOffset: Int { 0 }
    public var stepOffset: Int { 2 }
    public var weightsOffset: Int { 3 }
    public var stateOffset: Int { 3 + dim }
    /// Floats per record: key (2) + step (1) + weights + state.
    public var floats: Int { 3 + dim * (1 + stateWidth) }
    public var bytes: Int { floats * MemoryLayout<Float>.size }
}
