import Foundation
import ScenePSCore
import XCTest
@testable import ScenePSData

final class ChunkFileTests: XCTestCase {
    func writeChunk(_ path: String, seed: UInt64, count: Int, lLong: Int) throws -> [(ChunkSample, [(UInt64, UInt64, Int32)])] {
        var rng = SplitMix64(seed: seed)
        var w = ChunkColumns(lLong: lLong, scene: 3, capacity: count)
        var expected: [(ChunkSample, [(UInt64, UInt64, Int32)])] = []
        for k in 0..<count {
            let s = ChunkSample(user: rng.next(), item: rng.next(), category: rng.next(), row: Int64(k * 7),
                                label: Float(rng.next() % 2), truth: k % 3 == 0 ? .nan : Float(rng.nextUnit()),
                                cold: rng.next() % 2 == 0)
            w.begin(s)
            let h = (0..<Int(rng.next() % UInt64(lLong + 1))).map { _ in (rng.next(), rng.next(), Int32(rng.next() % 5)) }
            for e in h { w.addHistory(item: e.0, category: e.1, scene: e.2) }
            w.end()
            expected.append((s, h))
        }
        try w.write(to: path)
        return expected
    }

    func testRoundTripAtAwkwardSizes() throws {
        let dir = try makeTempDirectory(self)
        for (count, lLong) in [(0, 4), (1, 1), (7, 3), (39, 50)] {
            let path = "\(dir)/c\(count).chunk"
            let expected = try writeChunk(path, seed: UInt64(count), count: count, lLong: lLong)
            let chunk = try ChunkFile(path: path)
            XCTAssertEqual(chunk.count, count)
            XCTAssertEqual(chunk.lLong, lLong)
            XCTAssertEqual(chunk.scene, 3)
            var batch = SampleBatch(lLong: lLong, capacity: 4)
            batch.user.append(99)   // a batch is appended to, not replaced
            batch.removeAll()
            let order = Array((0..<count).reversed())
            chunk.append(order, to: &batch)
            XCTAssertEqual(batch.count, count)
            XCTAssertEqual(batch.user.count, count)
            XCTAssertEqual(batch.histItem.count, count * lLong)
            guard batch.count == count else { continue }
            for (b, k) in order.enumerated() {
                let (s, h) = expected[k]
                XCTAssertEqual(batch.user[b], s.user); XCTAssertEqual(batch.item[b], s.item)
                XCTAssertEqual(batch.category[b], s.category); XCTAssertEqual(batch.row[b], s.row)
                XCTAssertEqual(batch.label[b], s.label); XCTAssertEqual(batch.cold[b], s.cold)
                XCTAssertEqual(batch.scene[b], 3)
                if s.truth.isNaN { XCTAssertTrue(batch.truth[b].isNaN) } else { XCTAssertEqual(batch.truth[b], s.truth) }
                XCTAssertEqual(Int(batch.histLen[b]), h.count)
                for j in 0..<lLong {
                    let want = j < h.count ? h[j] : (0, 0, 0)
                    XCTAssertEqual(batch.histItem[b * lLong + j], want.0)
                    XCTAssertEqual(batch.histCategory[b * lLong + j], want.1)
                    XCTAssertEqual(batch.histScene[b * lLong + j], want.2)
                }
            }
        }
    }

    func testShorterBatchHistoryCutsMostRecentFirst() throws {
        let dir = try makeTempDirectory(self)
        let expected = try writeChunk(dir + "/c.chunk", seed: 77, count: 30, lLong: 8)
        let chunk = try ChunkFile(path: dir + "/c.chunk")
        var batch = SampleBatch(lLong: 2, capacity: 30)
        chunk.append(0..<30, to: &batch)
        for k in 0..<30 {
            let h = expected[k].1
            XCTAssertEqual(Int(batch.histLen[k]), min(h.count, 2))
            if !h.isEmpty { XCTAssertEqual(batch.histItem[k * 2], h[0].0) }
        }
    }

    func assertChunkError(_ path: String, contains fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try ChunkFile(path: path), file: file, line: line) { error in
            let e = error as? ScenePSError
            XCTAssertNotNil(e, file: file, line: line)
            XCTAssertTrue(e?.message.contains(path) ?? false, "\(error) names the file", file: file, line: line)
            XCTAssertTrue(e?.message.contains(fragment) ?? false, "\(error) says \(fragment)", file: file, line: line)
        }
    }

    func testTruncatedAndForeignFilesAreRejected() throws {
        let dir = try makeTempDirectory(self)
        let good = dir + "/good.chunk"
        _ = try writeChunk(good, seed: 5, count: 20, lLong: 6)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: good))
        // Truncated anywhere: in the header, in the body, one byte short.
        for cut in [0, 10, 63, 64, 200, bytes.count - 1] {
            let p = "\(dir)/cut\(cut).chunk"
            try bytes.prefix(cut).write(to: URL(fileURLWithPath: p))
            assertChunkError(p, contains: "truncated")
        }
        // Foreign: a CSV file and random bytes.
        try writeText(dir + "/foreign.chunk", String(repeating: "user_id,item_id,category_id,scene,timestamp,label\n", count: 3))
        assertChunkError(dir + "/foreign.chunk", contains: "magic")
        // Right magic, wrong version.
        var v2 = bytes
        v2[8] = 2
        try v2.write(to: URL(fileURLWithPath: dir + "/v2.chunk"))
        assertChunkError(dir + "/v2.chunk", contains: "version")
        // Corrupt history offsets (would index out of the file).
        var corrupt = bytes
        let layout = ChunkFormat.Layout(count: 20, entries: Int(bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 24, as: UInt64.self) }))
        corrupt[layout.histOffset + 8 + 7] = 0x7F
        try corrupt.write(to: URL(fileURLWithPath: dir + "/corrupt.chunk"))
        assertChunkError(dir + "/corrupt.chunk", contains: "history")
        // Missing file.
        XCTAssertThrowsError(try ChunkFile(path: dir + "/missing.chunk")) { error in
            XCTAssertTrue("\(error)".contains("missing.chunk"))
        }
    }

    func testManifestRejectsForeignJSON() throws {
        let dir = try makeTempDirectory(self)
        try writeText(dir + "/manifest.json", "{\"hello\": 1}")
        XCTAssertThrowsError(try DatasetManifest.load(directory: dir)) { error in
            XCTAssertTrue("\(error)".contains("manifest.json"))
        }
    }
}
