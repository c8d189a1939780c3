import ScenePSProtocol

/// This server's slice `[range.lowerBound, range.upperBound)` of a dense
/// table, with ordinary Adam (one step counter for the slice).
public final class DenseTable: @unchecked Sendable {
    // @unchecked: all mutable state is guarded by `lock`.
    public let spec: TableSpec
    public let range: Range<Int>
    public let optimizer: any Optimizer
    private let lock = Lock()
    private var weights: [Float]
    private var state: [Float]
    private var step: UInt32 = 0
    private var pulls: UInt64 = 0, pushes: UInt64 = 0

    /// - initial: this slice's initial values, or nil for the deterministic
    ///   initialiser of `spec` (by global index).
    public init(spec: TableSpec, range: Range<Int>, optimizer: any Optimizer, initial: [Float]?) {
        precondition(spec.kind == .dense)
        self.spec = spec
        self.range = range
        self.optimizer = optimizer
        if let initial {
            precondition(initial.count == range.count)
            weights = initial
        } else {
            weights = range.map { RowInitializer.denseValue(spec: spec, index: UInt64($0)) }
        }
        state = [Float](repeating: 0, count: range.count * optimizer.stateWidth)
    }

    /// Copies global `[offset, offset + count)` (inside `range`) into `out`.
    public func pull(offset: Int, count: Int, into out: UnsafeMutablePointer<Float>) {
        precondition(offset >= range.lowerBound && offset + count <= range.upperBound)
        lock.withLock {
            weights.withUnsafeBufferPointer { w in
                out.update(from: w.baseAddress! + (offset - range.lowerBound), count: count)
            }
            pulls &+= 1
        }
    }

    /// One Adam step on global `[offset, offset + count)` (inside `range`).
    /// Only that part of the slice moves; the slice's step counts pushes.
    public func push(offset: Int, gradient: UnsafeBufferPointer<Float>, lrScale: Float = 1) {
        let count = gradient.count
        precondition(offset >= range.lowerBound && offset + count <= range.upperBound)
        let local = offset - range.lowerBound, n = range.count, width = optimizer.stateWidth
        lock.withLock {
            step &+= 1
            let t = step
            weights.withUnsafeMutableBufferPointer { w in
                state.withUnsafeMutableBufferPointer { s in
                    if local == 0 && count == n {
                        optimizer.update(weights: w.baseAddress!, state: s.baseAddress!, gradient: gradient.baseAddress!,
                                         count: n, step: t, lrScale: lrScale)
                    } else {
                        // State is laid out [m(n) | v(n)]: gather the part, update, scatter.
                        var part = [Float](repeating: 0, count: count * width)
                        for k in 0..<width { for i in 0..<count { part[k * count + i] = s[k * n + local + i] } }
                        part.withUnsafeMutableBufferPointer { p in
                            optimizer.update(weights: w.baseAddress! + local, state: p.baseAddress!,
                                             gradient: gradient.baseAddress!, count: count, step: t, lrScale: lrScale)
                        }
                        for k in 0..<width { for i in 0..<count { s[k * n + local + i] = part[k * count + i] } }
                    }
                }
            }
            pushes &+= 1
        }
    }

    public func snapshot() -> (weights: [Float], state: [Float], step: UInt32) {
        lock.withLock { (weights, state, step) }
    }

    /// Replaces the slice's weights, state and step (checkpoint restore).
    public func restore(weights: [Float], state: [Float], step: UInt32) {
        precondition(weights.count == range.count && state.count == range.count * optimizer.stateWidth, "slice shape mismatch")
        lock.withLock {
            self.weights = weights
            self.state = state
            self.step = step
        }
    }

    public var bytes: Int { (range.count * (1 + optimizer.stateWidth)) * MemoryLayout<Float>.size }
    public func counts() -> (pulls: UInt64, pushes: UInt64) { lock.withLock { (pulls, pushes) } }
}
