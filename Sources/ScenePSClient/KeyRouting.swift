import ScenePSCore

/// Where each key of a request goes: its server (`Sharding.server`) and its
/// position in that server's key list, for keys the caller made distinct.
/// Routing also checks that they are (`PSClient.firstRepeatedKey`).
struct KeyRouting {
    /// Per position in the caller's key list: server and position there.
    let server: [Int32]
    let position: [Int32]
    /// Keys per server, in the caller's order.
    let serverKeys: [[UInt64]]

    /// Nil when a key repeats; `duplicate` then holds it.
    init?(table: UInt32, keys: [UInt64], servers: Int, duplicate: inout UInt64?) {
        if let d = PSClient.firstRepeatedKey(keys) {
            duplicate = d
            return nil
        }
        let n = keys.count
        if servers == 1 {
            server = [Int32](repeating: 0, count: n)
            position = (0..<Int32(n)).map { $0 }
            serverKeys = [keys]
            return
        }
        var server = [Int32](repeating: 0, count: n)
        var position = [Int32](repeating: 0, count: n)
        var counts = [Int32](repeating: 0, count: servers)
        for i in 0..<n {
            let s = Sharding.server(table: table, key: keys[i], servers: servers)
            server[i] = Int32(s)
            position[i] = counts[s]
            counts[s] += 1
        }
        var lists = (0..<servers).map { [UInt64](repeating: 0, count: Int(counts[$0])) }
        for i in 0..<n { lists[Int(server[i])][Int(position[i])] = keys[i] }
        self.server = server
        self.position = position
        serverKeys = lists
    }
}

extension PSClient {
    /// The first key of `keys` that occurs twice, if any: the check every
    /// pull and push runs on each table's keys. One probe per key into a
    /// flat open-addressing table of positions (at least twice the keys, no
    /// per-key allocation); its cost is in BENCHMARKS.md (ps-bench --cases keycheck).
    public static func firstRepeatedKey(_ keys: [UInt64]) -> UInt64? {
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
