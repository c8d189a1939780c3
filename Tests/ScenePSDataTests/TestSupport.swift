import Foundation
import ScenePSCore
import XCTest
@testable import ScenePSData

/// A fresh temporary directory, removed at the end of the test.
func makeTempDirectory(_ test: XCTestCase, _ name: String = #function) throws -> String {
    let base = FileManager.default.temporaryDirectory.path
    let safe = name.filter { $0.isLetter || $0.isNumber }
    let dir = "\(base)/scenepsdata-\(safe)-\(UInt32.random(in: 0...UInt32.max))"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
    return dir
}

func writeText(_ path: String, _ text: String) throws {
    try text.write(toFile: path, atomically: true, encoding: .utf8)
}

/// One row of a test log.
struct LogRow {
    var user: String
    var item: String
    var category: String
    var scene: String
    var timestamp: Int64
    var label: Int
}

func logCSV(_ rows: [LogRow]) -> String {
    "user_id,item_id,category_id,scene,timestamp,label\n" +
        rows.map { "\($0.user),\($0.item),\($0.category),\($0.scene),\($0.timestamp),\($0.label)\n" }.joined()
}

/// Random small log: few users and timestamps (many ties), rows not in time order.
func randomLog(seed: UInt64, rows: Int, users: Int = 6, items: Int = 12, scenes: [String] = ["b", "a", "c"],
               timestamps: Int64 = 25) -> [LogRow] {
    var rng = SplitMix64(seed: seed)
    return (0..<rows).map { _ in
        let i = Int(rng.next() % UInt64(items))
        return LogRow(user: "u\(rng.next() % UInt64(users))", item: "\(i)", category: "c\(i % 4)",
                      scene: scenes[Int(rng.next() % UInt64(scenes.count))],
                      timestamp: 1000 + Int64(rng.next() % UInt64(timestamps)),
                      label: rng.nextUnit() < 0.4 ? 1 : 0)
    }
}

/// Every sample of the prepared data set, by split (0 train, 1 valid, 2 test).
func loadAll(_ dir: String) throws -> (DatasetManifest, [SampleBatch]) {
    let m = try DatasetManifest.load(directory: dir)
    var batches = (0..<3).map { _ in SampleBatch(lLong: m.lLong, capacity: 0) }
    for s in m.scenes {
        for (k, refs) in [s.train, s.valid, s.test].enumerated() {
            for ref in refs {
                let chunk = try ChunkFile(path: dir + "/" + ref.file)
                XCTAssertEqual(chunk.count, ref.count, ref.file)
                XCTAssertEqual(chunk.scene, s.index, ref.file)
                chunk.append(0..<chunk.count, to: &batches[k])
            }
        }
    }
    return (m, batches)
}

func prepare(_ dir: String, log: String, configure: (inout PreparationOptions) -> Void = { _ in }) throws -> PreparationResult {
    var o = PreparationOptions(logPath: log, outDirectory: dir + "/out")
    configure(&o)
    return try Preparation.run(o)
}
