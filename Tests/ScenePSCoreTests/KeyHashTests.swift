import XCTest
import ScenePSCore

final class KeyHashTests: XCTestCase {
    /// The id hash is part of the data format: these values must never change.
    func testIdKeyIsStable() {
        XCTAssertEqual(KeyHash.fnv1a64(Array("a".utf8)), 0xAF63_DC4C_8601_EC8C)
        XCTAssertEqual(KeyHash.idKey("42"), KeyHash.mix64(KeyHash.fnv1a64(Array("42".utf8))))
        XCTAssertNotEqual(KeyHash.idKey("42"), KeyHash.idKey("43"))
        XCTAssertNotEqual(KeyHash.idKey(""), 0)
    }

    func testDenseRangesCoverExactlyOnce() {
        for size in [0, 1, 7, 100, 1001] {
            for servers in 1...9 {
                var next = 0
                for s in 0..<servers {
                    let r = Sharding.denseRange(size: size, server: s, servers: servers)
                    XCTAssertEqual(r.lowerBound, next)
                    XCTAssertLessThanOrEqual(r.count, size / servers + 1)
                    next = r.upperBound
                }
                XCTAssertEqual(next, size)
            }
        }
    }
}
