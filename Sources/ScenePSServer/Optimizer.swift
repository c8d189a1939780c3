import ScenePSProtocol

/// An optimiser plug-in (monolith's `runtime/hash_table/optimizer/` shape):
/// it owns `stateWidth` floats of state per weight and updates weights and
/// state in place from a gradient. Sparse rows store
/// `[weights(dim) | state(stateWidth * dim) | step | key]` as one record;
/// dense slices keep the same per-weight state in one buffer.
public protocol Optimizer: Sendable {
    /// Floats of state per weight (Adam: 2, for m and v).
    var stateWidth: Int { get }

    /// One update of `count` weights.
    /// - weights: `count` floats; state: `stateWidth * count` floats laid out
    ///   state-major (`[m(count) | v(count)]` for Adam); gradient: `count` floats.
    /// - step: the 1-based number of this update of these weights (a sparse
    ///   row's own update count; a dense slice's counter).
    /// - lrScale: multiplies the learning rate (the pushing worker's schedule).
    func update(weights: UnsafeMutablePointer<Float>, state: UnsafeMutablePointer<Float>,
                gradient: UnsafePointer<Float>, count: Int, step: UInt32, lrScale: Float)
}
