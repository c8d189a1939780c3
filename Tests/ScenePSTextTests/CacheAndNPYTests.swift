import Foundation
import ScenePSCore
import ScenePSData
import XCTest
@testable import ScenePSText

final class CacheAndNPYTests: XCTestCase {
    func testNPYRoundTripAndLayout() throws {
        let dir = try makeTempDirectory(self)
        let path = dir + "/a.npy"
        let values = (0..<(7 * 3)).map { Float($0) * 0.5 - 3 }
        try NPY.write(path: path, rows: 7, cols: 3, values)
        let r = try NPY.read(path: path)
        XCTAssertEqual(r.rows, 7); XCTAssertEqual(r.cols, 3); XCTAssertEqual(r.values, values)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        XCTAssertEqual(Array(bytes.prefix(8)), [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0])
        let headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
        XCTAssertEqual((10 + headerLength) % 64, 0)
        XCTAssertEqual(bytes[10 + headerLength - 1], 0x0A)
        XCTAssertEqual(bytes.count, 10 + headerLength + values.count * 4)
        let header = String(decoding: bytes[10..<(10 + headerLength)], as: UTF8.self)
        XCTAssertTrue(header.hasPrefix("{'descr': '<f4', 'fortran_order': False, 'shape': (7, 3), }"))
        // Empty and truncated arrays.
        try NPY.write(path: path, rows: 0, cols: 384, [])
        XCTAssertEqual(try NPY.shape(path: path).cols, 384)
        try NPY.write(path: path, rows: 2, cols: 2, [1, 2, 3, 4])
        try Data(try Data(contentsOf: URL(fileURLWithPath: path)).dropLast(2)).write(to: URL(fileURLWithPath: path))
        assertThrows([path, "14 bytes", "needs 16"]) { try NPY.read(path: path) }
    }

    func testCatalogueBadInput() throws {
        let dir = try makeTempDirectory(self)
        let path = dir + "/items.csv"
        try writeBytes(path, [])
        assertThrows([path, "empty catalogue"]) { try TitleCatalogue(path: path) }
        try writeBytes(path, Array("item_id,category_id,title\n".utf8))
        assertThrows([path, "empty catalogue", "no items"]) { try TitleCatalogue(path: path) }
        try writeBytes(path, Array("item_id,category_id\n1,2\n".utf8))
        assertThrows([path + ":1", "title"]) { try TitleCatalogue(path: path) }
        var bad = Array("item_id,category_id,title\n1,7,fine\n2,7,caf".utf8)
        bad += [0xC3, 0x28]     // invalid UTF-8
        bad += Array(" au lait\n".utf8)
        try writeBytes(path, bad)
        assertThrows([path + ":3", "not valid UTF-8", "\"2\""]) { try TitleCatalogue(path: path) }
        try writeBytes(path, Array("item_id,category_id,title\n1,7,a\n2,7,b\n1,8,c\n".utf8))
        assertThrows([path + ":4", "\"1\" is listed again", "line 2"]) { try TitleCatalogue(path: path) }
        try writeBytes(path, Array("item_id,category_id,title\n1,7,\"unclosed\n".utf8))
        assertThrows([path + ":2", "not closed"]) { try TitleCatalogue(path: path) }
        try writeBytes(path, Array("item_id,category_id,title\n,7,x\n".utf8))
        assertThrows([path + ":2", "item_id is empty"]) { try TitleCatalogue(path: path) }
        try writeBytes(path, Array("item_id,category_id,title\r\nA-1,7,\"say \"\"hi\"\", ok\"\r\n\r\nb2,8,\r\n".utf8))
        let c = try TitleCatalogue(path: path)
        XCTAssertEqual(c.itemIDs, ["A-1", "b2"])
        XCTAssertEqual(c.titles, ["say \"hi\", ok", ""])
    }

    func testCacheVerifyNamesWhatDiffers() throws {
        let dir = try makeTempDirectory(self)
        let items = dir + "/items.csv"
        try writeBytes(items, Array("item_id,category_id,title\n1,7,red shoes\n2,7,blue hat\n".utf8))
        let model = EmbeddingCache.ModelInfo(name: "all-MiniLM-L6-v2", directory: "/m", weightsBytes: 10, weightsHash: "aa",
                                             tokenizerHash: "bb", configHash: "cc", maxLength: 256, dimension: 2)
        let out = dir + "/emb"
        try EmbeddingCache.write(directory: out, itemIDs: ["1", "2"], embeddings: [1, 0, 0, 1], dim: 2,
                                 catalogue: try .of(path: items), model: model)
        XCTAssertEqual(try String(contentsOfFile: out + "/item_ids.txt", encoding: .utf8), "1\n2\n")
        XCTAssertEqual(try EmbeddingCache.verify(directory: out, cataloguePath: items, model: model).count, 2)
        // The same model moved elsewhere is the same model.
        var moved = model; moved.directory = "/elsewhere"
        XCTAssertNoThrow(try EmbeddingCache.verify(directory: out, cataloguePath: items, model: moved))

        var other = model; other.weightsHash = "ab"
        assertThrows([out + "/meta.json", "another model", "weights hash aa", "ab"]) {
            try EmbeddingCache.verify(directory: out, cataloguePath: items, model: other)
        }
        other = model; other.maxLength = 128
        assertThrows(["another model", "max sequence length 256"]) { try EmbeddingCache.verify(directory: out, cataloguePath: items, model: other) }

        let items2 = dir + "/items2.csv"
        try writeBytes(items2, Array("item_id,category_id,title\n1,7,red shoes\n2,7,blue cap\n".utf8))
        assertThrows([out + "/meta.json", "another catalogue", items, items2]) {
            try EmbeddingCache.verify(directory: out, cataloguePath: items2, model: model)
        }
        // Files changed behind meta.json's back.
        try NPY.write(path: out + "/embeddings.npy", rows: 2, cols: 2, [0, 1, 1, 0])
        assertThrows([out + "/embeddings.npy", "contents differ"]) { try EmbeddingCache.verify(directory: out, cataloguePath: items, model: model) }
        try NPY.write(path: out + "/embeddings.npy", rows: 3, cols: 2, [0, 1, 1, 0, 0, 0])
        assertThrows([out + "/embeddings.npy", "shape (3, 2)", "(2, 2)"]) { try EmbeddingCache.verify(directory: out, cataloguePath: items, model: model) }
        assertThrows([dir, "no meta.json"]) { try EmbeddingCache.verify(directory: dir, cataloguePath: items, model: model) }
    }

    /// The real model's fingerprint is stable and differs when any model file differs.
    func testModelFingerprint() throws {
        let m = try TestModel.load()
        let a = try m.fingerprint(), b = try m.fingerprint()
        XCTAssertEqual(a, b)
        XCTAssertEqual(a.dimension, 384)
        XCTAssertEqual(a.weightsBytes, m.encoder.weights.size)
        XCTAssertNotEqual(a.weightsHash, a.tokenizerHash)
    }
}
