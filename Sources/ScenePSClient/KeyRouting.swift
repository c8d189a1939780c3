import ScenePSCore

/// Where each key of a request goes: its server (`Sharding.server`) and its
/// position in that server's key list, for keys the caller made distinct.
/// Routing also checks that they are (`KeyHash.firstRepeat`; the servers
/// check pushes again).
struct KeyRouting {
    /// Per position in the caller's key list: server and position there.
    let server: [Int32]
    let position: [Int32]
    /// Keys per server, in the caller's order.
    let serverKeys: [[UInt64]]

    /// Nil when a key repeats; `duplicate` then holds it.
    init?(table: UInt32, keys: [UInt64], servers: Int, duplicate: inout UInt64?) {
        if let d = KeyHash.firstRepeat(in: keys) {
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

