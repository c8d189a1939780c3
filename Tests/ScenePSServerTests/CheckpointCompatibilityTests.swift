import Foundation
import ScenePSClient
import ScenePSCore
import ScenePSProtocol
import XCTest
@testable import ScenePSServer

/// Checkpoints written by earlier builds stay readable: `Fixtures/checkpoint-format-1/ckpt-v1` is a
/// 2-server checkpoint of `CheckpointTests`' tables after 25 of its pushes, written by the server and
/// driver as they were before the optimiser owned its state and the manifest mapping had one owner
/// (commit e574cc4); `state.txt` is every row, moment and step it held. A change of the shard file,
/// the record layout or the manifest that old checkpoints cannot follow fails here.
extension CheckpointTests {
    static let formatOneDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/checkpoint-format-1").path

    func testACheckpointOfFormatOneStillVerifiesAndRestoresEveryRow() throws {
        let path = (Self.formatOneDir as NSString).appendingPathComponent("ckpt-v1")
        let expected = try String(contentsOfFile: (Self.formatOneDir as NSString).appendingPathComponent("state.txt"), encoding: .utf8)
            .split(separator: "\n").map(String.init)
        let v = try CheckpointRestore.verify(path: path)
        XCTAssertEqual(v.manifest.shard_count, 2)
        XCTAssertEqual(v.manifest.tables.map(\.name), ["item", "user", "mlp"])
        let servers = try (0..<2).map { try TestServer(shardIndex: $0, shardCount: 2, checkpointDir: dir, restore: path) }
        let now = state(servers)
        XCTAssertEqual(now.count, expected.count, "rows restored")
        XCTAssertEqual(now, expected, "every row, moment and step as the old build wrote it")
        // Onto 3 servers (re-sharded): the same sparse rows.
        let three = try (0..<3).map { try TestServer(shardIndex: $0, shardCount: 3, checkpointDir: dir, restore: path) }
        XCTAssertEqual(state(three).filter { !$0.contains(":dense=") }, expected.filter { !$0.contains(":dense=") })
    }
}
