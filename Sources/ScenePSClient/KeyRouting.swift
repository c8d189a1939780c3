import ScenePSCore

/// Where each key of a request goes: duplicates removed, each unique key
/// assigned to its server (`Sharding.server`) and a position in that
/// server's key list. Built with a flat open-addressing map (key and index
/// in separate arrays, so a probe's two loads do not wait on each other),
/// no per-key allocation.
struct KeyRouting {
    /// Per position in the caller's key list: server and position there.
    var server: [Int32]
    var position: [Int32]
    /// Unique keys per server, in first-seen order.
    var serverKeys: [[UInt64]]

    /// `unique`: the caller guarantees no key repeats (the worker's batch
    /// assembler already merged them), so no hash map is built: a sequential
    /// pass instead of a random access per key into a map twice the size.
    init(table: UInt32, keys: UnsafeBufferPointer<UInt64>, servers: Int, unique: Bool = false) {
        let n = keys.count
        serverKeys = Array(repeating: [], count: servers)
        self.server = []
        self.position = []
        if n == 0 { return }
        if unique {
            (self.server, self.position, serverKeys) = Self.routeUnique(keys, table: table, servers: servers)
            return
        }
        var server = [Int32](repeating: 0, count: n)
        var position = [Int32](repeating: 0, count: n)
        defer {
            self.server = server
            self.position = position
        }
        var capacity = 16
        while capacity < 2 * n { capacity <<= 1 }
        let mask = capacity - 1
        var counts = [Int32](repeating: 0, count: servers)
        var uniqueCount = 0
        // unique keys in first-seen order, with their server
        var uniq = [UInt64](repeating: 0, count: n)
        var uniqServer = [Int32](repeating: 0, count: n)
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: capacity) { slotKey in
            withUnsafeTemporaryAllocation(of: Int32.self, capacity: capacity) { slotIdx in
                // slot -> first position of the key + 1 (0 = empty)
                slotIdx.initialize(repeating: 0)
                server.withUnsafeMutableBufferPointer { srv in
                    position.withUnsafeMutableBufferPointer { pos in
                        counts.withUnsafeMutableBufferPointer { cnt in
                            uniq.withUnsafeMutableBufferPointer { uk in
                                uniqServer.withUnsafeMutableBufferPointer { us in
                                    for i in 0..<n {
                                        let k = keys[i]
                                        var j = Int(truncatingIfNeeded: KeyHash.mix64(k ^ 0x6B65_7973)) & mask
                                        while true {
                                            let e = slotIdx[j]
                                            if e == 0 {
                                                slotIdx[j] = Int32(i + 1)
                                                slotKey[j] = k
                                                let s = Sharding.server(table: table, key: k, servers: servers)
                                                srv[i] = Int32(s)
                                                pos[i] = cnt[s]
                                                cnt[s] += 1
                                                uk[uniqueCount] = k
                                                us[uniqueCount] = Int32(s)
                                                uniqueCount += 1
                                                break
                                            }
                                            if slotKey[j] == k {
                                                let first = Int(e) - 1
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
            }
        }
        if servers == 1 {
            uniq.removeLast(n - uniqueCount)
            serverKeys = [uniq]
            return
        }
        var lists = (0..<servers).map { s in [UInt64](repeating: 0, count: Int(counts[s])) }
        var fill = [Int](repeating: 0, count: servers)
        for u in 0..<uniqueCount {
            let s = Int(uniqServer[u])
            lists[s][fill[s]] = uniq[u]
            fill[s] += 1
        }
        serverKeys = lists
    }

    private static func routeUnique(_ keys: UnsafeBufferPointer<UInt64>, table: UInt32, servers: Int)
        -> (server: [Int32], position: [Int32], serverKeys: [[UInt64]]) {
        let n = keys.count
        if servers == 1 {
            return ([Int32](repeating: 0, count: n), (0..<Int32(n)).map { $0 }, [Array(keys)])
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
        var lists = (0..<servers).map { s in [UInt64](repeating: 0, count: Int(counts[s])) }
        for i in 0..<n { lists[Int(server[i])][Int(position[i])] = keys[i] }
        return (server, position, lists)
    }
}
