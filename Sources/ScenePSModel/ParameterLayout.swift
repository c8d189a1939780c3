import ScenePSCore

/// Where each named dense tensor lives in the model's one flat parameter
/// buffer. Names are those of the reference (`attn_long.W_q`,
/// `short.ln1.gamma`, `experts.0.W1`, `scene_gate.2.G`, `head.1.beta`, …);
/// matrices are [out, in] row-major.
public struct ParameterLayout: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public let name: String
        public let shape: [Int]
        public let offset: Int
        public var count: Int { shape.reduce(1, *) }
    }

    public let entries: [Entry]
    /// Total number of scalars.
    public let count: Int
    private let index: [String: Int]

    /// Entries laid out back to back in the given order.
    public init(_ tensors: [(name: String, shape: [Int])]) {
        var entries: [Entry] = []
        var index: [String: Int] = [:]
        var offset = 0
        for (name, shape) in tensors {
            precondition(!shape.isEmpty && shape.allSatisfy { $0 > 0 }, "bad shape \(shape) for \(name)")
            precondition(index[name] == nil, "duplicate parameter \(name)")
            index[name] = entries.count
            entries.append(Entry(name: name, shape: shape, offset: offset))
            offset += shape.reduce(1, *)
        }
        self.entries = entries
        self.index = index
        self.count = offset
    }

    public subscript(name: String) -> Entry? { index[name].map { entries[$0] } }

    /// Offset of a tensor the model itself declared (a missing name is a bug).
    func offset(_ name: String) -> Int {
        guard let i = index[name] else { preconditionFailure("no parameter named \(name)") }
        return entries[i].offset
    }

    /// Deterministic initial values, the rule of msif.py `reset_parameters`:
    /// names ending in `gamma` → 1, other 1-D tensors → 0, 2-D [out, in] →
    /// U(−b, b) with b = sqrt(6 / (in + out)). Each tensor draws from its own
    /// SplitMix64 stream seeded by (seed, name), so adding a tensor does not
    /// change the others.
    public func initialValues<T: BLASScalar>(seed: UInt64) -> [T] {
        var values = [T](repeating: 0, count: count)
        for e in entries {
            if e.name.hasSuffix("gamma") {
                for i in 0..<e.count { values[e.offset + i] = 1 }
            } else if e.shape.count >= 2 {
                let fanOut = e.shape[0], fanIn = e.count / fanOut
                let bound = (6.0 / Double(fanIn + fanOut)).squareRoot()
                var rng = SplitMix64(seed: KeyHash.mix64(seed ^ KeyHash.fnv1a64(e.name.utf8)))
                for i in 0..<e.count { values[e.offset + i] = T((2 * rng.nextUnit() - 1) * bound) }
            }
        }
        return values
    }
}
