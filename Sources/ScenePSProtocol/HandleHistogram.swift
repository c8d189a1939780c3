import Foundation

/// The buckets of a server's handling-time histogram (StatsReply `handle_bucket_bounds`/`_counts`) and
/// quantiles read from it. Bounds grow by 2^(1/4) from 5 µs: 80 bounds up to about 4.2 s, so a quantile
/// interpolated inside its bucket is within 19% of the true value.
public enum HandleHistogram {
    static let first = 5e-6
    static let perOctave = 4.0
    /// Upper bounds in seconds; a time above the last goes to the extra, last bucket.
    public static let bounds: [Double] = (0..<80).map { first * pow(2, Double($0) / perOctave) }

    /// The bucket of a request that took `nanos` nanoseconds: the first whose bound holds it.
    @inline(__always)
    public static func bucket(nanos: UInt64) -> Int {
        let s = Double(nanos) / 1e9
        guard s > first else { return 0 }
        var i = Int((perOctave * log2(s / first)).rounded(.up))
        // Rounding at a bound's edge: move to the bucket that really holds s.
        while i > 0 && i - 1 < bounds.count && s <= bounds[i - 1] { i -= 1 }
        while i < bounds.count && s > bounds[i] { i += 1 }
        return min(i, bounds.count)
    }

    /// The `q` quantile (0 < q < 1) in seconds of the requests counted in `counts` minus `since` (an earlier
    /// reading of the same server with the same bounds; nil or not comparable: the whole of `counts`),
    /// interpolated linearly inside its bucket; nil when no request was counted or the shapes do not fit.
    /// A quantile in the last bucket (above every bound) is given as the last bound.
    public static func quantile(_ q: Double, bounds: [Double], counts: [UInt64], since: [UInt64]? = nil) -> Double? {
        guard !bounds.isEmpty, counts.count == bounds.count + 1 else { return nil }
        var c = counts
        if let s = since, s.count == counts.count, zip(counts, s).allSatisfy({ $0 >= $1 }) {
            c = zip(counts, s).map { $0 - $1 }
        }
        let total = c.reduce(0, +)
        guard total > 0 else { return nil }
        let target = q * Double(total)
        var below = 0.0
        for (i, n) in c.enumerated() where n > 0 {
            if below + Double(n) >= target {
                if i == bounds.count { return bounds[bounds.count - 1] }
                let lo = i == 0 ? 0 : bounds[i - 1], hi = bounds[i]
                return lo + (hi - lo) * max(0, min(1, (target - below) / Double(n)))
            }
            below += Double(n)
        }
        return bounds[bounds.count - 1]
    }
}
