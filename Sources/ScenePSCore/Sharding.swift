/// Which server owns what. A pure function of (table, key, server count), so
/// every worker and every restore agrees without talking.
public enum Sharding {
    /// Server of a sparse key. The key is mixed with the table id first, so
    /// that a table's keys are not all placed like another table's.
    @inlinable
    public static func server(table: UInt32, key: UInt64, servers: Int) -> Int {
        precondition(servers > 0)
        let h = KeyHash.mix64(key ^ (UInt64(table) &* 0xD6E8_FEB8_6659_FD93))
        // Lemire's multiply-high range reduction: unbiased enough, no division.
        return Int(h.multipliedFullWidth(by: UInt64(servers)).high)
    }

    /// The slice [lower, upper) of a dense table of `size` floats held by
    /// `server`: contiguous, sizes differ by at most one float.
    @inlinable
    public static func denseRange(size: Int, server: Int, servers: Int) -> Range<Int> {
        precondition(servers > 0 && server >= 0 && server < servers)
        let base = size / servers, extra = size % servers
        let lower = server * base + min(server, extra)
        return lower..<(lower + base + (server < extra ? 1 : 0))
    }
}
