import ScenePSCore
import XCTest

/// Golden values of the hashing and sharding contract, computed once from the
/// implementation of 2026-12 and committed as literals. They are the contract:
/// a checkpoint, a prepared data set and a cluster of mixed versions all depend
/// on every id landing on the same key and every key on the same server.
/// NEVER change these values; a change that makes this test fail is a format
/// break, not a test to update.
final class GoldenValueTests: XCTestCase {
    static let idKeys: [(String, UInt64)] = [
        ("", 0xC381_7C01_6BA4_FF30),
        ("a", 0x5F29_C2AA_DD9B_8527),
        ("42", 0x2E3F_71EE_82C2_E0F4),
        ("user_17", 0xA4C7_42B3_587E_EE37),
        ("item-123456", 0x8AF9_8E0C_34A0_E3A1),
        ("home", 0x0C72_29CF_FFBC_77BF),
        ("shop", 0xE410_311B_E6DE_9B08),
        ("搜索", 0xE66B_1761_7D21_4781),
    ]

    static let mixes: [(UInt64, UInt64)] = [
        (0x0000_0000_0000_0000, 0xE220_A839_7B1D_CDAF),
        (0x0000_0000_0000_0001, 0x910A_2DEC_8902_5CC1),
        (0x0000_0000_0000_002A, 0xBDD7_3226_2FEB_6E95),
        (0xFFFF_FFFF_FFFF_FFFF, 0xE4D9_7177_1B65_2C20),
        (0x0123_4567_89AB_CDEF, 0x157A_3807_A48F_AA9D),
    ]

    func testIdKeyGoldenValues() {
        for (id, key) in Self.idKeys {
            XCTAssertEqual(KeyHash.idKey(id), key, "idKey(\"\(id)\")")
            var bytes = Array(id.utf8)
            XCTAssertEqual(bytes.withUnsafeMutableBufferPointer { KeyHash.idKey(utf8: UnsafeBufferPointer($0)) }, key,
                           "idKey(utf8:) of \"\(id)\" agrees with idKey(_:)")
        }
        XCTAssertEqual(KeyHash.idKey("42"), KeyHash.idKey(String(42)), "integer ids hash as their decimal text")
    }

    func testMix64GoldenValues() {
        for (x, y) in Self.mixes { XCTAssertEqual(KeyHash.mix64(x), y, "mix64(\(x))") }
    }

    /// (table, servers, shard of idKey("user_0") … idKey("user_9")).
    static let shards: [(UInt32, Int, [Int])] = [
        (1, 1, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        (1, 2, [1, 1, 1, 1, 1, 1, 1, 0, 0, 1]),
        (1, 3, [2, 2, 1, 2, 2, 2, 2, 0, 0, 2]),
        (1, 4, [3, 3, 2, 3, 3, 2, 3, 0, 0, 2]),
        (1, 5, [4, 4, 2, 4, 4, 3, 4, 1, 0, 3]),
        (1, 6, [4, 5, 3, 5, 4, 4, 4, 1, 0, 4]),
        (1, 7, [5, 6, 3, 6, 5, 4, 5, 1, 0, 5]),
        (1, 8, [6, 7, 4, 7, 6, 5, 6, 1, 0, 5]),
        (1, 9, [7, 8, 4, 8, 7, 6, 7, 1, 0, 6]),
        (1, 10, [8, 9, 5, 9, 8, 7, 8, 2, 0, 7]),
        (1, 11, [8, 10, 5, 10, 8, 7, 9, 2, 0, 8]),
        (1, 12, [9, 11, 6, 11, 9, 8, 9, 2, 0, 8]),
        (1, 13, [10, 12, 6, 11, 10, 9, 10, 2, 0, 9]),
        (1, 14, [11, 13, 7, 12, 11, 9, 11, 2, 0, 10]),
        (1, 15, [12, 14, 7, 13, 12, 10, 12, 3, 0, 11]),
        (1, 16, [12, 15, 8, 14, 13, 11, 13, 3, 0, 11]),
        (6, 1, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        (6, 2, [1, 1, 1, 0, 0, 0, 0, 1, 1, 0]),
        (6, 3, [1, 2, 2, 0, 1, 0, 0, 1, 2, 0]),
        (6, 4, [2, 3, 3, 0, 1, 0, 0, 2, 3, 1]),
        (6, 5, [3, 4, 4, 1, 2, 0, 0, 3, 4, 1]),
        (6, 6, [3, 5, 5, 1, 2, 0, 0, 3, 5, 1]),
        (6, 7, [4, 6, 6, 1, 3, 1, 0, 4, 6, 2]),
        (6, 8, [5, 6, 7, 1, 3, 1, 0, 5, 7, 2]),
        (6, 9, [5, 7, 8, 1, 4, 1, 1, 5, 8, 2]),
        (6, 10, [6, 8, 9, 2, 4, 1, 1, 6, 9, 3]),
        (6, 11, [7, 9, 10, 2, 5, 1, 1, 6, 10, 3]),
        (6, 12, [7, 10, 11, 2, 5, 1, 1, 7, 11, 3]),
        (6, 13, [8, 11, 12, 2, 6, 1, 1, 8, 12, 4]),
        (6, 14, [9, 12, 13, 2, 6, 2, 1, 8, 13, 4]),
        (6, 15, [9, 13, 14, 3, 7, 2, 1, 9, 13, 4]),
        (6, 16, [10, 13, 15, 3, 7, 2, 1, 10, 14, 5]),
    ]

    func testShardOfAKeyForOneToSixteenServers() {
        let keys = (0..<10).map { KeyHash.idKey("user_\($0)") }
        XCTAssertEqual(Self.shards.count, 32, "tables 1 and 6, 1...16 servers")
        for (table, servers, want) in Self.shards {
            XCTAssertEqual(keys.map { Sharding.server(table: table, key: $0, servers: servers) }, want,
                           "table \(table), \(servers) servers")
        }
    }

    func testSplitMix64GoldenSequence() {
        var r = SplitMix64(seed: 42)
        XCTAssertEqual((0..<3).map { _ in r.next() }, [0xBDD7_3226_2FEB_6E95, 0x28EF_E333_B266_F103, 0x4752_6757_130F_9F52])
    }
}
