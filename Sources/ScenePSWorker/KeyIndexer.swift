/// Maps the keys of one minibatch to dense local indices 0..<unique, in order
/// of first appearance: the worker pulls each unique key once and sums the
/// gradients of duplicates before pushing (docs/ARCHITECTURE.md §2).
///
/// Open addressing with generation stamps, so `reset()` is O(1) and nothing
/// is allocated per batch once the table has grown to the batch's size.
public struct KeyIndexer: Sendable {
    private var slotKeys: [UInt64] = []
    private var slotValues: [Int32] = []
    private var slotStamps: [UInt32] = []
    private var stamp: UInt32 = 1
    private var mask = 0
    /// Unique keys in order of first appearance.
    public private(set) var keys: [UInt64] = []

    public init(capacity: Int = 1024) { grow(to: capacity) }

    public var count: Int { keys.count }

    public mutating func reset() {
        keys.removeAll(keepingCapacity: true)
        stamp &+= 1
        if stamp == 0 {   // wrapped: clear for real
            for i in slotStamps.indices { slotStamps[i] = 0 }
            stamp = 1
        }
    }

    /// Local index of `key`, inserting it if new.
    public mutating func index(of key: UInt64) -> Int32 {
        if (keys.count + 1) * 2 > slotKeys.count { rehash(to: slotKeys.count * 2) }
        return insert(key)
    }

    /// Local index of `key`, or nil when it has not been indexed.
    @inline(__always)
    public func find(_ key: UInt64) -> Int32? {
        var i = Int(truncatingIfNeeded: KeyHash_mix(key)) & mask
        while slotStamps[i] == stamp {
            if slotKeys[i] == key { return slotValues[i] }
            i = (i + 1) & mask
        }
        return nil
    }

    mutating func insert(_ key: UInt64) -> Int32 {
        var i = Int(truncatingIfNeeded: KeyHash_mix(key)) & mask
        while slotStamps[i] == stamp {
            if slotKeys[i] == key { return slotValues[i] }
            i = (i + 1) & mask
        }
        let v = Int32(keys.count)
        slotStamps[i] = stamp
        slotKeys[i] = key
        slotValues[i] = v
        keys.append(key)
        return v
    }

    private mutating func grow(to capacity: Int) {
        var n = 16
        while n < capacity * 2 { n <<= 1 }
        slotKeys = Array(repeating: 0, count: n)
        slotValues = Array(repeating: 0, count: n)
        slotStamps = Array(repeating: 0, count: n)
        mask = n - 1
        stamp = 1
    }

    mutating func rehash(to n: Int) {
        let old = keys
        grow(to: n / 2)
        keys.removeAll(keepingCapacity: true)
        for k in old { _ = insert(k) }
    }
}

@inline(__always)
func KeyHash_mix(_ x: UInt64) -> UInt64 {
    // Keys are already well mixed by KeyHash.idKey; one multiply spreads
    // small test keys too.
    (x &* 0x9E37_79B9_7F4A_7C15) >> 17 ^ x
}
