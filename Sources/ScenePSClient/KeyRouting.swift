import ScenePSCore

/// Where each key of a request goes: duplicates removed, each unique key
/// assigned to its server (`Sharding.server`) and a position in that
/// server's key list. Built with a flat open-addressing map, no per-key
/// allocation.
struct KeyRouting {
    /// Per position in the caller's key list: server and position there.
    var server: [Int32]
    var position: [Int32]
    /// Unique keys per server, in first-seen order.
    var serverKeys: [[UInt64]]

    init(table: UInt32, keys: UnsafeBufferPointer<UInt64>, servers: Int) {
        let n = keys.count
        server = [Int32](repeating: 0, count: n)
        position = [Int32](repeating: 0, count: n)
        serverKeys = Array(repeating: [], count: servers)
        if n == 0 { return }
        for s in 0..<servers { serverKeys[s].reserveCapacity(n / servers + n / (4 * servers) + 16) }
        var capacity = 16
        while capacity < 2 * n { capacity <<= 1 }
        let mask = capacity - 1
        // slot -> index into `keys` of the first occurrence + 1 (0 = empty)
        var slots = [Int32](repeating: 0, count: capacity)
        server.withUnsafeMutableBufferPointer { srv in
            position.withUnsafeMutableBufferPointer { pos in
                slots.withUnsafeMutableBufferPointer { slot in
                    for i in 0..<n {
                        let k = keys[i]
                        var j = Int(truncatingIfNeeded: KeyHash.mix64(k ^ 0x6B65_7973)) & mask
                        while true {
                            let e = slot[j]
                            if e == 0 {
                                slot[j] = Int32(i + 1)
                                let s = Sharding.server(table: table, key: k, servers: servers)
                                srv[i] = Int32(s)
                                pos[i] = Int32(serverKeys[s].count)
                                serverKeys[s].append(k)
                                break
                            }
                            let first = Int(e) - 1
                            if keys[first] == k {
                                srv[i] = srv[first]
                                pos[i] = pos[first]
                                break
                            }
                            j = (j + 1) & mask
                        }
                    }
                }
            }
        }
    }
}
