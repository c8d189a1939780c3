import ScenePSCore
import ScenePSProtocol
import XCTest
@testable import ScenePSServer

final class SparseTableTests: XCTestCase {
    func testInsertLookupGrowManyKeysLosesNoRow() {
        let spec = TableSpec.sparse(id: 2, name: "item", dim: 3, initKind: .uniform, initScale: 0.5, seed: 11)
        let table = SparseTable(spec: spec, optimizer: Adam(spec.adam), stripeBits: 2)
        var rng = SplitMix64(seed: 77)
        // 150k draws from 100k distinct keys, including key 0 and UInt64.max.
        var distinct = Set<UInt64>([0, UInt64.max])
        var keys: [UInt64] = [0, UInt64.max]
        while distinct.count < 100_000 {
            let k = rng.next()
            if distinct.insert(k).inserted { keys.append(k) }
        }
        let draws = (0..<150_000).map { i in i < keys.count ? keys[i] : keys[Int(rng.next() % UInt64(keys.count))] }
        var out = [Float](repeating: .nan, count: draws.count * 3)
        for start in stride(from: 0, to: draws.count, by: 4096) {
            let end = min(start + 4096, draws.count)
            draws[start..<end].withUnsafeBufferPointer { k in
                out.withUnsafeMutableBufferPointer { o in table.pull(keys: k, into: o.baseAddress! + start * 3) }
            }
        }
        XCTAssertEqual(table.memory().rows, distinct.count)
        // One large pull (stripes visited on several threads) returns the same rows.
        var whole = [Float](repeating: .nan, count: draws.count * 3)
        draws.withUnsafeBufferPointer { k in whole.withUnsafeMutableBufferPointer { table.pull(keys: k, into: $0.baseAddress!) } }
        XCTAssertGreaterThanOrEqual(draws.count, SparseTable.parallelThreshold)
        XCTAssertEqual(whole, out)
        // Every pulled row equals the deterministic initial value of its key.
        var expected = [Float](repeating: 0, count: 3)
        for (i, k) in draws.enumerated() {
            expected.withUnsafeMutableBufferPointer { RowInitializer.fill($0.baseAddress!, count: 3, spec: spec, key: k) }
            if Array(out[(i * 3)..<(i * 3 + 3)]) != expected {
                return XCTFail("row of key \(k) at \(i) is \(out[(i * 3)..<(i * 3 + 3)]), expected \(expected)")
            }
        }
        // Every row is found again after all the growth, and visited exactly once.
        for k in keys {
            guard let row = table.row(k) else { return XCTFail("key \(k) lost") }
            XCTAssertEqual(row.step, 0)
        }
        var seen = Set<UInt64>()
        table.forEachRow { key, w, state, step in
            XCTAssertTrue(seen.insert(key).inserted)
            XCTAssertEqual(w.count, 3)
            XCTAssertEqual(state.count, 6)
            XCTAssertTrue(state.allSatisfy { $0 == 0 })
        }
        XCTAssertEqual(seen, distinct)
        XCTAssertNil(table.row(12345))
    }

    func testInitialValuesAreDeterministicAndDifferPerTableAndKey() {
        let a = TableSpec.sparse(id: 1, name: "a", dim: 8, initKind: .normal, initScale: 0.1, seed: 3)
        var b = a
        b.id = 2
        func row(_ s: TableSpec, _ key: UInt64) -> [Float] {
            var v = [Float](repeating: 0, count: 8)
            v.withUnsafeMutableBufferPointer { RowInitializer.fill($0.baseAddress!, count: 8, spec: s, key: key) }
            return v
        }
        XCTAssertEqual(row(a, 42), row(a, 42))
        XCTAssertNotEqual(row(a, 42), row(a, 43))
        XCTAssertNotEqual(row(a, 42), row(b, 42))
        // Normal(0, 0.1): sample statistics over many rows.
        var sum = 0.0, sq = 0.0
        for k in 0..<5000 { for x in row(a, UInt64(k)) { sum += Double(x); sq += Double(x * x) } }
        let n = 40_000.0
        XCTAssertEqual(sum / n, 0, accuracy: 0.003)
        XCTAssertEqual((sq / n).squareRoot(), 0.1, accuracy: 0.003)
        var u = a
        u.initKind = .uniform
        for k in 0..<1000 { XCTAssertTrue(row(u, UInt64(k)).allSatisfy { abs($0) <= 0.1 }) }
        u.initKind = .zeros
        XCTAssertEqual(row(u, 9), [Float](repeating: 0, count: 8))
    }

    /// Bytes per row (index + arena) against the raw record [w | m | v | step].
    func testBytesPerRowWithinBudget() {
        for (dim, rows) in [(32, 200_000), (8, 200_000), (1, 200_000)] {
            let spec = TableSpec.sparse(id: 1, name: "t", dim: UInt32(dim), initKind: .zeros)
            let table = SparseTable(spec: spec, optimizer: Adam(spec.adam))
            var rng = SplitMix64(seed: UInt64(dim))
            let keys = (0..<rows).map { _ in rng.next() }
            var out = [Float](repeating: 0, count: 4096 * dim)
            for start in stride(from: 0, to: rows, by: 4096) {
                keys[start..<min(start + 4096, rows)].withUnsafeBufferPointer { k in
                    out.withUnsafeMutableBufferPointer { table.pull(keys: k, into: $0.baseAddress!) }
                }
            }
            let m = table.memory()
            XCTAssertEqual(m.rows, rows)
            let perRow = Double(m.totalBytes) / Double(rows)
            let ratio = perRow / Double(table.rawRecordBytes)
            print("bytes/row dim=\(dim): \(String(format: "%.1f", perRow)) (raw record \(table.rawRecordBytes), index \(m.indexBytes / rows), ratio \(String(format: "%.3f", ratio)))")
            if dim == 32 { XCTAssertLessThanOrEqual(ratio, 1.3) }
        }
    }
}
