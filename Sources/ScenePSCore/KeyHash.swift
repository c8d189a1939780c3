/// Stable 64-bit hashing of ids and keys. These functions are part of the
/// data format and the sharding contract: never change them.
///
/// - `idKey(_:)`: the key of an id string from a log (user, item, category,
///   scene): FNV-1a 64 over its UTF-8 bytes, then the SplitMix64 finaliser to
///   mix the bits. Key 0 is reserved for padding; an id that would hash to 0
///   gets key 1. Integer ids are hashed as their decimal text, so "42" and 42
///   are the same id.
/// - `mix64(_:)`: the SplitMix64 finaliser, a bijection on UInt64 with full
///   avalanche. Used for sharding and deterministic initialisation.
public enum KeyHash {
    @inlinable
    public static func mix64(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    @inlinable
    public static func fnv1a64<Bytes: Sequence>(_ bytes: Bytes) -> UInt64 where Bytes.Element == UInt8 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in bytes {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01B3
        }
        return h
    }

    /// Key of an id given as raw UTF-8 bytes (as read from a CSV field).
    @inlinable
    public static func idKey(utf8 bytes: UnsafeBufferPointer<UInt8>) -> UInt64 {
        let k = mix64(fnv1a64(bytes))
        return k == 0 ? 1 : k
    }

    @inlinable
    public static func idKey(_ id: String) -> UInt64 {
        var s = id
        return s.withUTF8 { idKey(utf8: $0) }
    }
}

/// Deterministic, splittable random numbers (SplitMix64). Seeded everywhere
/// randomness matters: initialisation, generators, tests.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    @inlinable
    public mutating func next() -> UInt64 {
        state = state &+ 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1) with 53 bits.
    @inlinable
    public mutating func nextUnit() -> Double {
        Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
    }
}

extension KeyHash {
    /// The first key of `keys` that occurs twice, if any: the check the
    /// client runs on each table's keys of every pull and push, and a server
    /// on every push. One probe per key into a flat open-addressing table of
    /// positions (at least twice the keys, no per-key allocation); its cost is
    /// in BENCHMARKS.md (ps-bench --cases keycheck).
    public static func firstRepeat(in keys: [UInt64]) -> UInt64? {
        let n = keys.count
        if n < 2 { return nil }
        var capacity = 16
        while capacity < 2 * n { capacity <<= 1 }
        let mask = capacity - 1
        return keys.withUnsafeBufferPointer { k in
            withUnsafeTemporaryAllocation(of: Int32.self, capacity: capacity) { slot in
                slot.initialize(repeating: -1)   // slot -> position of the key there
                for i in 0..<n {
                    let key = k[i]
                    var j = Int(truncatingIfNeeded: KeyHash.mix64(key ^ 0x6B65_7973)) & mask
                    while true {
                        let at = slot[j]
                        if at < 0 { slot[j] = Int32(i); break }
                        if k[Int(at)] == key { return key }
                        j = (j + 1) & mask
                    }
                }
                return nil
            }
        }
    }
}
