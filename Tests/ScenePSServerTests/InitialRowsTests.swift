import Foundation
import ScenePSCore
import ScenePSProtocol
import XCTest
@testable import ScenePSServer

/// A sparse table whose initial rows come from a directory of
/// embeddings.npy + item_ids.txt (`TableSpec.initFile`): the frozen title
/// vectors. Listed keys start as their file row, others as `init` (counted);
/// a bad directory is a declaration error naming the file.
final class InitialRowsTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "initial-rows-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func write(ids: [String], rows: Int, cols: Int, values: [Float]) throws {
        try NPY.write(path: dir + "/embeddings.npy", rows: rows, cols: cols, values)
        try (ids.joined(separator: "\n") + "\n").write(toFile: dir + "/item_ids.txt", atomically: true, encoding: .utf8)
    }

    func spec(_ file: String, dim: UInt32 = 3) -> TableSpec {
        TableSpec.sparse(id: 7, name: "item_text", dim: dim, initKind: .zeros, initScale: 0, seed: 1, frozen: true, initFile: file)
    }

    func testListedKeysStartAsTheirFileRowOthersAsZerosAndAreCounted() throws {
        try write(ids: ["i0", "i1", "shoe"], rows: 3, cols: 3, values: [1, 0, 0, 0, 1, 0, 0.6, 0.8, 0])
        let r = TableRegistry(shardIndex: 0, shardCount: 1)
        XCTAssertNil(r.declare(DeclareTables(tables: [spec(dir)])))
        guard case .sparse(let t)? = r.table(7) else { return XCTFail("no table") }
        let keys = [KeyHash.idKey("shoe"), KeyHash.idKey("i0"), KeyHash.idKey("not-listed")]
        var out = [Float](repeating: .nan, count: 9)
        keys.withUnsafeBufferPointer { k in out.withUnsafeMutableBufferPointer { t.pull(keys: k, into: $0.baseAddress!) } }
        XCTAssertEqual(out, [0.6, 0.8, 0, 1, 0, 0, 0, 0, 0])
        XCTAssertEqual(t.initialRows?.missing, 1)
        XCTAssertEqual(t.initialRows?.count, 3)
        // The same declaration again is fine; another file is a conflict naming init_file.
        XCTAssertNil(r.declare(DeclareTables(tables: [spec(dir)])))
        let e = r.declare(DeclareTables(tables: [spec(dir + "-other")]))
        XCTAssertEqual(e?.status, .conflict)
        XCTAssertTrue(e?.message.contains("init_file") == true, e?.message ?? "")
    }

    func testTheFileTravelsInTheWireSpec() throws {
        let env = Envelope(requestID: 1, sender: "t", body: .declare(DeclareTables(tables: [spec("/some/dir")])))
        let decoded = try WireCodec.decode(WireCodec.encode(env))
        guard case .declare(let d) = decoded.body else { return XCTFail("\(decoded.body)") }
        XCTAssertEqual(d.tables.first?.initFile, "/some/dir")
    }

    func assertRefused(_ what: String, _ expected: [String], dim: UInt32 = 3, file: StaticString = #filePath, line: UInt = #line) {
        let r = TableRegistry(shardIndex: 0, shardCount: 1)
        let e = r.declare(DeclareTables(tables: [spec(dir, dim: dim)]))
        XCTAssertEqual(e?.status, .badRequest, what, file: file, line: line)
        for s in expected {
            XCTAssertTrue(e?.message.contains(s) == true, "\(what): '\(e?.message ?? "nil")' lacks '\(s)'", file: file, line: line)
        }
        XCTAssertNil(r.table(7), "\(what): no table is created", file: file, line: line)
    }

    func testBadDirectoriesAreRefusedNamingTheFile() throws {
        assertRefused("missing files", [dir + "/embeddings.npy", "missing", "psctl embed-titles"])
        try write(ids: ["a", "b"], rows: 3, cols: 3, values: [Float](repeating: 0.5, count: 9))
        assertRefused("row count", [dir + "/item_ids.txt", "2 ids", "3 rows"])
        try write(ids: ["a", "b", "c"], rows: 3, cols: 3, values: [Float](repeating: 0.5, count: 9))
        assertRefused("width", [dir + "/embeddings.npy", "3 wide", "4"], dim: 4)
        try write(ids: ["a", "b", "a"], rows: 3, cols: 3, values: [Float](repeating: 0.5, count: 9))
        assertRefused("repeated id", [dir + "/item_ids.txt:3", "'a'"])
        try write(ids: ["a", "b", "c"], rows: 3, cols: 3, values: [0.5, .nan, 0, 0, 0, 0, 0, 0, 0])
        assertRefused("NaN", [dir + "/embeddings.npy", "NaN"])
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: dir + "/embeddings.npy"))
        assertRefused("not npy", [dir + "/embeddings.npy", "not a .npy"])
    }
}
