import ScenePSCore

/// A worker's copy of the rows of a pull-only table (`FeatureTable.alwaysFrozen`,
/// `item_text`): frozen rows never change, so each key is pulled from the
/// servers once per worker and read from here afterwards. A 384-float row
/// per key would otherwise be most of every pull (BENCHMARKS.md, "Title
/// features"). Rows are appended, never evicted: a catalogue of N items
/// costs at most N × 384 × 4 bytes per worker (30 MB for 20,000 items).
///
/// An all-zero row is a key with no title vector (the item is not in the
/// embedded catalogue; the servers start it as zeros, and a title vector is
/// never zero: it has norm 1). Such keys are counted in `zeroKeys`, so the
/// worker reports them rather than training on them silently.
public final class FrozenRowCache {
    public let table: UInt32
    public let dim: Int
    /// Key → cache row (rows in order of first insertion; never reset).
    private var rowOfKey = KeyIndexer(capacity: 4096)
    private(set) var values: [Float] = []
    /// Keys whose row is all zeros (no title vector).
    public private(set) var zeroKeys = 0

    public init(table: UInt32, dim: Int) {
        self.table = table
        self.dim = dim
    }

    public var count: Int { rowOfKey.count }

    /// The cached keys (tests).
    var seen: [UInt64] { rowOfKey.keys }

    /// The keys of `keys` not cached yet (to pull).
    public func missing(_ keys: [UInt64]) -> [UInt64] { keys.filter { rowOfKey.find($0) == nil } }

    /// Adds the pulled rows of `keys` (`values`: keys.count × dim); a key already cached is kept as it is.
    public func insert(keys: [UInt64], values v: [Float]) {
        precondition(v.count == keys.count * dim, "cache insert: \(v.count) values for \(keys.count) keys of width \(dim)")
        for (i, k) in keys.enumerated() where rowOfKey.find(k) == nil {
            let row = v[(i * dim)..<((i + 1) * dim)]
            if row.allSatisfy({ $0 == 0 }) { zeroKeys += 1 }
            _ = rowOfKey.index(of: k)
            values.append(contentsOf: row)
        }
    }

    /// The cache row of every key (each must be cached).
    func rows(of keys: [UInt64]) -> [Int32] {
        keys.map { k in
            guard let r = rowOfKey.find(k) else { preconditionFailure("key \(k) of table \(table) was neither cached nor pulled") }
            return r
        }
    }
}
