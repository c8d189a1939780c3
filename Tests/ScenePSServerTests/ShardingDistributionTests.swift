import ScenePSCore
import XCTest

final class ShardingDistributionTests: XCTestCase {
    func testKeysSpreadEvenlyOverTwoToSixteenServers() {
        var rng = SplitMix64(seed: 2024)
        let n = 400_000
        let keys = (0..<n).map { _ in rng.next() }
        // Sequential keys (ids hashed badly upstream) must spread too.
        let sequential = (0..<UInt64(n)).map { $0 }
        for (name, set) in [("random", keys), ("sequential", sequential)] {
            for servers in 2...16 {
                for table: UInt32 in [0, 7] {
                    var counts = [Int](repeating: 0, count: servers)
                    for k in set { counts[Sharding.server(table: table, key: k, servers: servers)] += 1 }
                    let mean = Double(n) / Double(servers)
                    for (s, c) in counts.enumerated() {
                        let dev = abs(Double(c) - mean) / mean
                        XCTAssertLessThan(dev, 0.03, "\(name) keys, table \(table), \(servers) servers: server \(s) has \(c), mean \(mean)")
                    }
                }
            }
        }
    }

    func testTablesArePlacedIndependently() {
        // The same key goes to different servers for different tables about (1 - 1/S) of the time.
        var rng = SplitMix64(seed: 5)
        var same = 0
        let n = 100_000
        for _ in 0..<n {
            let k = rng.next()
            if Sharding.server(table: 1, key: k, servers: 4) == Sharding.server(table: 2, key: k, servers: 4) { same += 1 }
        }
        XCTAssertEqual(Double(same) / Double(n), 0.25, accuracy: 0.01)
    }

    func testDenseRangesTileTheVectorWithSizesWithinOne() {
        for size in [0, 1, 7, 39, 1000, 100_003] {
            for servers in 1...16 {
                var next = 0
                var sizes: [Int] = []
                for s in 0..<servers {
                    let r = Sharding.denseRange(size: size, server: s, servers: servers)
                    XCTAssertEqual(r.lowerBound, next, "size \(size) servers \(servers) server \(s)")
                    next = r.upperBound
                    sizes.append(r.count)
                }
                XCTAssertEqual(next, size)
                XCTAssertLessThanOrEqual(sizes.max()! - sizes.min()!, 1)
            }
        }
    }
}
