import Foundation
import XCTest
@testable import ScenePSProtocol

/// The servers' handling-time histogram (StatsReply) and the quantiles psctl status reads from it.
final class HandleHistogramTests: XCTestCase {
    let bounds = HandleHistogram.bounds

    func testEveryTimeGoesToTheFirstBucketWhoseBoundHoldsIt() {
        XCTAssertEqual(bounds.count, 80)
        XCTAssertEqual(bounds[0], 5e-6, accuracy: 1e-12)
        XCTAssertEqual(HandleHistogram.bucket(nanos: 0), 0)
        XCTAssertEqual(HandleHistogram.bucket(nanos: 5_000), 0)
        XCTAssertEqual(HandleHistogram.bucket(nanos: 60_000_000_000), bounds.count, "above every bound: the last bucket")
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            let ns = UInt64.random(in: 1...5_000_000_000, using: &rng) >> UInt64.random(in: 0...20, using: &rng)
            let s = Double(ns) / 1e9, i = HandleHistogram.bucket(nanos: ns)
            if i < bounds.count { XCTAssertLessThanOrEqual(s, bounds[i], "\(ns) ns") }
            if i > 0 { XCTAssertGreaterThan(s, bounds[i - 1], "\(ns) ns") }
        }
        // Exactly on a bound: that bucket.
        for i in [1, 17, 40] {
            let ns = UInt64((bounds[i] * 1e9).rounded(.down))
            XCTAssertEqual(HandleHistogram.bucket(nanos: ns), i, "\(ns) ns, bound \(bounds[i])")
        }
    }

    func testQuantilesOfAKnownDistributionAreWithinABucket() {
        // 10 000 times spread evenly (in log) from 20 µs to 20 ms: the true p50 is 632 µs, p99 ~18.6 ms.
        var counts = [UInt64](repeating: 0, count: bounds.count + 1)
        var times: [Double] = []
        for k in 0..<10_000 {
            let s = 20e-6 * pow(1000, Double(k) / 9_999)
            times.append(s)
            counts[HandleHistogram.bucket(nanos: UInt64(s * 1e9))] += 1
        }
        for q in [0.5, 0.9, 0.99] {
            let truth = times[Int(q * Double(times.count)) - 1]
            let got = try! XCTUnwrap(HandleHistogram.quantile(q, bounds: bounds, counts: counts))
            XCTAssertEqual(got / truth, 1, accuracy: 0.19, "q \(q): \(got) against \(truth)")
        }
        // Since an earlier reading: only the requests in between count.
        var later = counts
        later[HandleHistogram.bucket(nanos: 2_000_000_000)] += 100_000   // 2 s each, after the first reading
        let p50 = try! XCTUnwrap(HandleHistogram.quantile(0.5, bounds: bounds, counts: later, since: counts))
        XCTAssertEqual(p50, 2, accuracy: 2 * 0.19)
        // A reading that is not comparable (a restarted server: fewer counts) is ignored, not subtracted.
        XCTAssertEqual(HandleHistogram.quantile(0.5, bounds: bounds, counts: counts, since: later),
                       HandleHistogram.quantile(0.5, bounds: bounds, counts: counts))
    }

    func testUnknownWhenEmptyOrMisshapen() {
        XCTAssertNil(HandleHistogram.quantile(0.5, bounds: [], counts: []), "an older server")
        XCTAssertNil(HandleHistogram.quantile(0.5, bounds: bounds, counts: [UInt64](repeating: 0, count: bounds.count + 1)), "no request")
        XCTAssertNil(HandleHistogram.quantile(0.5, bounds: bounds, counts: [1, 2]), "counts must be bounds + 1")
        XCTAssertEqual(HandleHistogram.quantile(0.99, bounds: [1, 2], counts: [0, 0, 5]), 2, "above every bound: the last bound")
    }
}
