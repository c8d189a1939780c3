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

    /// The manifest ⇄ TableSpec mapping (CheckpointManifest+TableSpec.swift) both ways, for every kind
    /// and initialiser, and each name this build does not know refused naming the file, table and field.
    func testTheManifestTableMappingRoundTripsAndNamesWhatItCannotRead() throws {
        let specs = [item, user, mlp,
                     TableSpec.sparse(id: 4, name: "z", dim: 2, initKind: .zeros, frozen: true,
                                      adam: AdamConfig(learningRate: 0.3, beta1: 0.5, beta2: 0.75, epsilon: 1e-3, l2: 0.125))]
        for s in specs {
            let t = CheckpointManifest.Table(spec: s, rows: 17)
            XCTAssertEqual(t.rows, s.kind == .dense ? s.denseSize : 17)
            XCTAssertEqual(try t.tableSpec(manifest: "m.json"), s, s.name)
        }
        // The names on disk, as format 1 spells them (the fixture's manifest).
        let m = try CheckpointManifest.load(dir: (Self.formatOneDir as NSString).appendingPathComponent("ckpt-v1"))
        XCTAssertEqual(m.tables.map(\.kind), ["sparse", "sparse", "dense"])
        XCTAssertEqual(m.tables.map(\.`init`), ["uniform", "normal", "zeros"])
        XCTAssertEqual(m.tables.map(\.optimiser.name), ["adam", "adam", "adam"])
        XCTAssertEqual(try m.tables.map { try $0.tableSpec(manifest: "m.json") }, [item, user, mlp])
        var t = CheckpointManifest.Table(spec: item, rows: 1)
        t.optimiser.name = "adagrad"
        XCTAssertThrowsError(try t.tableSpec(manifest: "/c/manifest.json")) {
            XCTAssertEqual("\($0)".contains("/c/manifest.json: table 1 'item': optimiser 'adagrad' is not adam (check: schema)"), true, "\($0)")
        }
        t = CheckpointManifest.Table(spec: item, rows: 1)
        t.kind = "ragged"
        XCTAssertThrowsError(try t.tableSpec(manifest: "m.json")) { XCTAssertTrue("\($0)".contains("unknown kind 'ragged'"), "\($0)") }
        t = CheckpointManifest.Table(spec: item, rows: 1)
        t.`init` = "xavier"
        XCTAssertThrowsError(try t.tableSpec(manifest: "m.json")) { XCTAssertTrue("\($0)".contains("unknown init 'xavier'"), "\($0)") }
    }

    /// The optimiser owns its state: Adam names m and v, and a restored state with a negative second
    /// moment is refused by Adam's own check (the checkpoint reader asks it, for sparse and dense).
    func testAdamSavesAndChecksItsOwnState() {
        let adam = Optimizers.make(for: item)
        XCTAssertEqual(adam.name, "adam")
        XCTAssertEqual(adam.stateNames, ["m", "v"])
        XCTAssertEqual(adam.stateWidth, adam.stateNames.count, "one name per state float of a weight")
        XCTAssertEqual(adam.stateWidth, 2)
        XCTAssertEqual(adam.manifestEntry, CheckpointManifest.Optimiser(adam: item.adam))
        // State-major groups [m(count) | v(count)] at a stride: only v must not be negative (-0 is not).
        func check(_ st: [Float], count: Int, rows: Int, stride: Int) -> (row: Int, problem: String, check: String)? {
            st.withUnsafeBufferPointer { adam.checkRestored(state: $0.baseAddress!, count: count, rows: rows, stride: stride) }
        }
        XCTAssertNil(check([0.5, -0.5, 0, 2], count: 2, rows: 1, stride: 0))
        XCTAssertEqual(check([0.5, 0.5, 0, -2], count: 2, rows: 1, stride: 0)?.check, "moments")
        XCTAssertNil(check([0, 0, -0.0, 0], count: 2, rows: 1, stride: 0), "-0 is not negative")
        // Widths across the eight-lane blocks (1, 7, 8, 9, 17), the bad value in each position, rows at a stride.
        for n in [1, 7, 8, 9, 17] {
            let stride = 2 * n + 3
            for bad in 0..<n {
                var st = [Float](repeating: 0.25, count: 3 * stride)
                XCTAssertNil(check(st, count: n, rows: 3, stride: stride), "n \(n)")
                st[2 * stride + n + bad] = -1e-30
                let p = check(st, count: n, rows: 3, stride: stride)
                XCTAssertEqual(p?.row, 2, "n \(n) bad \(bad)")
                XCTAssertEqual(p?.problem, "negative second moment")
            }
        }
        let layout = SparseTable(spec: item, optimizer: adam).layout
        XCTAssertEqual(layout, SparseRecordLayout(dim: 4, stateWidth: 2))
        XCTAssertEqual(layout.bytes, (2 + 1 + 4 * 3) * 4, "key u64, step u32, weights, m, v")
    }
}
