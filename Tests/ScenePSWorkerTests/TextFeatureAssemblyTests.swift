import Foundation
import ScenePSCore
import ScenePSData
import ScenePSModel
import XCTest

@testable import ScenePSWorker

/// The title-vector slots (by reference: distinct rows + an index per
/// position) and the worker's cache of frozen rows.
final class TextFeatureAssemblyTests: XCTestCase {
    static var textModel: ClusterConfig.Model {
        var m = ClusterConfig.Model()
        m.textFeatures = true
        m.textEmbeddings = "/emb"
        m.textDim = 384   // the widest rows (model.text_dim's default, 64, works the same way)
        return m
    }

    /// Rows whose values name their table and key (BatchAssemblerTests.value); item_text rows of width 384.
    static func rows(_ a: BatchAssembler) -> [[Float]] {
        a.widePulls.map { p in p.keys.flatMap { k in (0..<p.dim).map { BatchAssemblerTests.value(p.table, k, $0) } } }
    }

    func testTitleRowsAreGatheredByReferenceAndGetNoGradient() throws {
        var s = SampleBatch(lLong: 4, capacity: 2)
        s.count = 2
        s.user = [7, 8]; s.item = [5, 6]; s.category = [9, 9]; s.scene = [0, 0]
        s.label = [1, 0]; s.row = [0, 1]; s.truth = [.nan, .nan]; s.cold = [false, false]
        s.histLen = [3, 1]
        s.histItem = [6, 5, 4, 0, 5, 0, 0, 0]; s.histCategory = [9, 9, 9, 0, 9, 0, 0, 0]; s.histScene = [0, 0, 0, 0, 0, 0, 0, 0]
        var a = BatchAssembler(d: 2, historyWidth: 4, sameSceneOnly: false, sceneKeys: [77],
                               tables: FeatureSchema.tables(for: Self.textModel), textDim: Self.textModel.textDim)
        try a.index(s)
        XCTAssertEqual(a.pulls.last?.tableID, FeatureTable.itemText.id)
        XCTAssertEqual(a.pulls.last?.keys, [5, 6, 4], "the item table's keys: targets first, then history")
        XCTAssertEqual(a.widePulls.last?.dim, 384)
        var input = ModelInput<Float>(d: 2, historyWidth: 4, capacity: 2, textDim: 384)
        let rows = Self.rows(a)
        a.gather(rows: rows, into: &input)
        XCTAssertEqual(input.textRows, rows.last!)
        XCTAssertEqual(input.targetTextRow, [0, 1])
        XCTAssertEqual(input.historyTextRow, [1, 0, 2, -1, 0, -1, -1, -1])
        XCTAssertEqual(input.historyItem.count, 2 * 4 * 2, "the item slots are unchanged")
        var g = ModelInput<Float>(d: 2, historyWidth: 4, capacity: 2, textDim: 384)
        g.resize(batch: 2)
        let out = a.scatter(g)
        XCTAssertEqual(out.count, a.pulls.count)
        XCTAssertEqual(out.last, [], "the pull-only table gets no gradient")
    }

    func testCachePullsEachKeyOnceAndGathersTheSameInput() throws {
        var rng = SplitMix64(seed: 31)
        let first = BatchAssemblerTests.randomBatch(&rng, batch: 20, width: 6, scenes: 2)
        var second = BatchAssemblerTests.randomBatch(&rng, batch: 20, width: 6, scenes: 2)
        second.sceneKeys = first.sceneKeys
        let tables = FeatureSchema.tables(for: Self.textModel)
        let caches = FeatureSchema.frozenCaches(tables, d: 2, textDim: Self.textModel.textDim)
        XCTAssertEqual(caches.map(\.table), [FeatureTable.itemText.id])
        var a = BatchAssembler(d: 2, historyWidth: 6, sameSceneOnly: false, sceneKeys: first.sceneKeys, tables: tables,
                               textDim: Self.textModel.textDim)
        for (n, batch) in [first, second].enumerated() {
            try a.index(batch.samples)
            let full = Self.rows(a)
            let requested = FeatureSchema.uncached(a.pulls, caches)
            let textKeys = a.pulls.last!.keys
            if n == 0 {
                XCTAssertEqual(requested.last!.keys, textKeys, "an empty cache asks for every key")
            } else {
                XCTAssertEqual(Set(requested.last!.keys), Set(textKeys).subtracting(Set(caches[0].seen)), "only keys not cached yet")
                XCTAssertLessThan(requested.last!.keys.count, textKeys.count, "the key pools repeat: some keys are cached")
            }
            for (r, p) in zip(requested.dropLast(), a.pulls.dropLast()) { XCTAssertEqual(r.keys, p.keys, "other tables are pulled as before") }
            // What the servers would send for the requested keys.
            let pulled = zip(requested, a.widePulls).map { r, p in r.keys.flatMap { k in (0..<p.dim).map { BatchAssemblerTests.value(r.tableID, k, $0) } } }
            FeatureSchema.fill(caches, requested: requested, rows: pulled)
            var viaCache = ModelInput<Float>(d: 2, historyWidth: 6, capacity: 20, textDim: 384)
            var direct = viaCache
            a.gather(rows: pulled, into: &viaCache, cached: caches)
            a.gather(rows: full, into: &direct)
            XCTAssertEqual(viaCache.textRows, direct.textRows, "batch \(n)")
            XCTAssertEqual(viaCache.targetTextRow, direct.targetTextRow)
            XCTAssertEqual(viaCache.historyTextRow, direct.historyTextRow)
            XCTAssertEqual(viaCache.historyItem, direct.historyItem)
        }
        XCTAssertEqual(caches[0].zeroKeys, 0)
    }

    func testAllZeroRowsAreCountedAsItemsWithoutATitle() {
        let c = FrozenRowCache(table: 7, dim: 3)
        c.insert(keys: [1, 2, 3], values: [0.6, 0.8, 0, 0, 0, 0, 1, 0, 0])
        XCTAssertEqual(c.zeroKeys, 1)
        XCTAssertEqual(c.count, 3)
        c.insert(keys: [2, 4], values: [0, 0, 0, 0, 0, 0])
        XCTAssertEqual(c.zeroKeys, 2, "a key cached already is not counted again")
        XCTAssertEqual(c.missing([1, 5, 4, 6]), [5, 6])
    }
}

/// `model.text_embeddings` is checked against the data set's catalogue before
/// a worker declares anything: every bad directory is an error naming the
/// file, what is wrong and the command that makes a good one.
final class TitleVectorCheckTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "title-check-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir + "/emb", withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func writeEmbeddings(ids: [String], cols: Int = 4) throws {
        try NPY.write(path: dir + "/emb/embeddings.npy", rows: ids.count, cols: cols, [Float](repeating: 0.5, count: ids.count * cols))
        try (ids.joined(separator: "\n") + "\n").write(toFile: dir + "/emb/item_ids.txt", atomically: true, encoding: .utf8)
    }

    /// A prepared catalogue (`item_key,item_id,category_key,title,in_log`).
    func writeCatalogue(ids: [String]) throws -> (path: String, items: Int) {
        let rows = ids.map { "\(KeyHash.idKey($0)),\($0),1,title of \($0),1" }
        let path = dir + "/items.csv"
        try (["item_key,item_id,category_key,title,in_log"] + rows).joined(separator: "\n").appending("\n")
            .write(toFile: path, atomically: true, encoding: .utf8)
        return (path, ids.count)
    }

    func assertError(_ what: String, _ expected: [String], catalogue: (path: String, items: Int)? = nil, width: Int = 4,
                     file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try TitleVectorCheck.check(directory: dir + "/emb", width: width, catalogue: catalogue), what,
                             file: file, line: line) { e in
            for s in expected + ["psctl embed-titles"] {
                XCTAssertTrue("\(e)".contains(s), "\(what): '\(e)' lacks '\(s)'", file: file, line: line)
            }
        }
    }

    func testBadEmbeddingDirectoriesAreErrorsNamingTheFile() throws {
        assertError("no files", [dir + "/emb/embeddings.npy", "missing"])
        try FileManager.default.removeItem(atPath: dir + "/emb")
        assertError("no directory", [dir + "/emb", "not a directory"])
        try FileManager.default.createDirectory(atPath: dir + "/emb", withIntermediateDirectories: true)
        try writeEmbeddings(ids: ["a", "b"], cols: 3)
        assertError("width", [dir + "/emb/embeddings.npy", "3 wide", "need 4"])
        try writeEmbeddings(ids: ["a", "b"])
        try "a\n".write(toFile: dir + "/emb/item_ids.txt", atomically: true, encoding: .utf8)
        assertError("ids vs rows", [dir + "/emb/item_ids.txt", "1 ids", "2 rows"])
        try writeEmbeddings(ids: ["a", "b"])
        let three = try writeCatalogue(ids: ["a", "b", "c"])
        assertError("another catalogue (count)", [dir + "/emb/embeddings.npy", "2 title vectors", "3 items", "another catalogue"], catalogue: three)
        let other = try writeCatalogue(ids: ["a", "z"])
        assertError("another catalogue (ids)", [dir + "/emb/item_ids.txt", "line 3", "another catalogue"], catalogue: other)
        // The right catalogue, or none, passes.
        let same = try writeCatalogue(ids: ["b", "a"])
        XCTAssertNoThrow(try TitleVectorCheck.check(directory: dir + "/emb", width: 4, catalogue: same))
        XCTAssertNoThrow(try TitleVectorCheck.check(directory: dir + "/emb", width: 4, catalogue: nil))
    }
}
