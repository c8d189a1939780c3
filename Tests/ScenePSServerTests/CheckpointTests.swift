import Foundation
import ScenePSTransport
import Logging
import ScenePSClient
import ScenePSCore
import ScenePSProtocol
import XCTest
@testable import ScenePSServer

/// Checkpoints: one cut across servers while pushes run, the shard files,
/// restore onto the same and other server counts, damaged checkpoints.
final class CheckpointTests: XCTestCase {
    let item = TableSpec.sparse(id: 1, name: "item", dim: 4, initKind: .uniform, initScale: 0.1, seed: 5,
                                adam: AdamConfig(learningRate: 0.05))
    let user = TableSpec.sparse(id: 2, name: "user", dim: 3, initKind: .normal, initScale: 0.1, seed: 6,
                                adam: AdamConfig(learningRate: 0.02))
    let mlp = TableSpec.dense(id: 9, name: "mlp", size: 13, adam: AdamConfig(learningRate: 0.02))
    var logger: Logger { var l = Logger(label: "ckpt-test"); l.logLevel = .critical; return l }
    var dir = ""

    override func setUp() {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("sceneps-ckpt-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        CheckpointFaults.override = nil
    }

    override func tearDown() {
        CheckpointFaults.override = nil
        try? FileManager.default.removeItem(atPath: dir)
    }

    func cluster(_ n: Int, restore: String? = nil) throws -> ([TestServer], PSClient) {
        let servers = try (0..<n).map { try TestServer(shardIndex: $0, shardCount: n, checkpointDir: dir, restore: restore) }
        var opts = PSClientOptions()
        opts.timeout = .seconds(5)
        opts.retries = 1
        let client = try PSClient(endpoints: servers.map(\.endpoint), sender: "ckpt-test", options: opts, logger: logger)
        try client.declare([item, user, mlp])
        return (servers, client)
    }

    static let keys: [UInt64] = { var r = SplitMix64(seed: 3); return (0..<400).map { _ in r.next() } }()

    /// Push number `k`: a deterministic gradient on a window of keys of both tables and on the dense table.
    func push(_ client: PSClient, _ k: Int) throws {
        var rng = SplitMix64(seed: UInt64(k) &* 7919)
        let a = Array(Self.keys[(k * 37 % 200)..<(k * 37 % 200 + 150)])
        let b = Array(Self.keys[(k * 11 % 100)..<(k * 11 % 100 + 60)])
        try client.wait(client.push([SparseGradient(tableID: 1, keys: a, values: (0..<(a.count * 4)).map { _ in Float(rng.nextUnit() - 0.5) }),
                         SparseGradient(tableID: 2, keys: b, values: (0..<(b.count * 3)).map { _ in Float(rng.nextUnit() - 0.5) })],
                        dense: [DenseGradient(tableID: 9, values: (0..<13).map { _ in Float(rng.nextUnit() - 0.5) })],
                        lrScale: k % 3 == 0 ? 0.5 : 1))
    }

    /// Every row of a cluster by table and key (weights | moments | step),
    /// and each dense table's full vector of weights and moments with its slices' steps.
    func state(_ servers: [TestServer]) -> [String] {
        var rows: [String] = []
        var dense: [UInt32: (w: [Float], m: [Float], v: [Float], steps: Set<UInt32>)] = [:]
        for s in servers {
            for t in s.server.registry.all() {
                switch t {
                case .sparse(let sp):
                    sp.forEachRow { key, w, st, step in rows.append("\(sp.spec.id):\(key)=\(Array(w))|\(Array(st))|\(step)") }
                case .dense(let d):
                    let snap = d.snapshot(), n = d.range.count
                    var e = dense[d.spec.id] ?? ([], [], [], [])
                    e.w += snap.weights; e.m += Array(snap.state[0..<n]); e.v += Array(snap.state[n...]); e.steps.insert(snap.step)
                    dense[d.spec.id] = e
                }
            }
        }
        return rows.sorted() + dense.keys.sorted().map { "\($0):dense=\(dense[$0]!)" }
    }

    func checkpoint(_ servers: [TestServer], name: String, keep: Int? = nil, tags: [String] = []) throws -> CheckpointDriver.Result {
        var o = CheckpointDriver.Options(dir: dir)
        o.name = name
        o.keep = keep
        o.tags = tags
        o.progress = .object(["scene": .string("feed"), "chunks_done": .number(3)])
        return try CheckpointDriver(endpoints: servers.map(\.endpoint), logger: logger).checkpoint(o)
    }

    func testXXH64MatchesTheReferenceVectorsAndStreamsInAnyPieces() {
        XCTAssertEqual(XXH64.hash(UnsafeRawBufferPointer(start: nil, count: 0)), 0xEF46_DB37_51D8_E999)
        XCTAssertEqual(Array("a".utf8).withUnsafeBytes { XXH64.hash($0) }, 0xD24E_C4F1_A98C_6E5B)
        XCTAssertEqual(Array("abc".utf8).withUnsafeBytes { XXH64.hash($0) }, 0x44BC_2CF5_AD77_0999)
        var rng = SplitMix64(seed: 1)
        let data = (0..<1000).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let whole = data.withUnsafeBytes { XXH64.hash($0) }
        for piece in [1, 3, 31, 32, 33, 100] {
            var h = XXH64()
            var i = 0
            while i < data.count { let j = min(data.count, i + piece); h.update(Array(data[i..<j])); i = j }
            XCTAssertEqual(h.finalize(), whole, "pieces of \(piece)")
        }
    }

    /// The shard writer (O_DIRECT where the file system takes it, buffered where not, e.g. tmpfs) and
    /// the mapped reader: every byte back, the checksum of exactly the bytes written, for sizes around
    /// the block and buffer boundaries (the last block is padded, then truncated off).
    func testTheDurableWriterAndTheMappedReaderAgreeOnEveryByteOnDiskAndOnTmpfs() throws {
        var roots = [dir]
        if FileManager.default.fileExists(atPath: "/dev/shm") { roots.append("/dev/shm") }
        var rng = SplitMix64(seed: 9)
        let data = (0..<(3 * 65_536 + 123)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        for root in roots {
            for size in [0, 1, 4095, 4096, 4097, 65_536, 65_536 + 7, data.count] {
                let path = (root as NSString).appendingPathComponent("writer-\(getpid())-\(size).bin")
                defer { unlink(path) }
                let w = try DurableWriter(path: path, bufferBytes: 65_536)
                // Small and large pieces, as the checkpoint writer hands them over.
                var i = 0, piece = 1
                while i < size {
                    let j = min(size, i + piece)
                    try data[i..<j].withUnsafeBytes { try w.write($0) }
                    i = j; piece = piece * 7 % 70_001 + 1
                }
                let (bytes, sum) = try w.finish()
                XCTAssertEqual(bytes, UInt64(size), "\(root) size \(size)")
                let back = try Data(contentsOf: URL(fileURLWithPath: path))
                XCTAssertEqual([UInt8](back), Array(data[0..<size]), "\(root) size \(size): bytes")
                XCTAssertEqual(sum, data[0..<size].withUnsafeBytes { XXH64.hash($0) }, "\(root) size \(size): checksum")
                XCTAssertFalse(FileManager.default.fileExists(atPath: path + ".tmp"))
                let r = try StreamReader(path: path, size: size)
                if size >= 8 {
                    XCTAssertEqual(try r.bytes(8), Array(data[0..<8]))
                    XCTAssertEqual(try r.u32(), data[8..<12].withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) })
                    var got: [UInt8] = []
                    try r.records(count: (size - 12) / 5, size: 5) { got += Array($0) }
                    XCTAssertEqual(got, Array(data[12..<(12 + (size - 12) / 5 * 5)]), "\(root) size \(size): records")
                    _ = try r.bytes(size - r.offset)
                    XCTAssertEqual(r.hasher.finalize(), sum, "\(root) size \(size): reader's checksum")
                }
                XCTAssertThrowsError(try r.u64(), "reading past the end is refused") { e in
                    XCTAssertTrue("\(e)".contains("truncated"), "\(e)")
                }
            }
        }
    }

    /// Save, restore into a new cluster, continue: exactly the parameters of
    /// an uninterrupted run (weights, both moments, every step, dense steps).
    func testSaveRestoreContinueEqualsAnUninterruptedRun() throws {
        let (a, ca) = try cluster(2)
        defer { a.forEach { $0.stop() } }
        for k in 0..<10 { try push(ca, k) }
        let atCut = state(a)
        let r = try checkpoint(a, name: "c1")
        XCTAssertEqual(r.manifest.global_step, 20, "10 pushes on each of 2 servers")
        XCTAssertEqual(r.manifest.shards.count, 2)
        if case .object(let p) = r.manifest.progress { XCTAssertEqual(p["scene"], .string("feed")) } else { XCTFail("progress kept") }
        for k in 10..<20 { try push(ca, k) }
        let uninterrupted = state(a)

        let (b, cb) = try cluster(2, restore: r.path)
        defer { b.forEach { $0.stop() } }
        XCTAssertEqual(state(b), atCut, "the restored cluster holds exactly the state at the cut")
        for k in 10..<20 { try push(cb, k) }
        XCTAssertEqual(state(b), uninterrupted, "continuing after the restore gives the uninterrupted run's parameters exactly")
        XCTAssertNoThrow(try CheckpointRestore.verify(path: r.path))
    }

    /// Checkpoints taken while another client pushes as fast as it can: each
    /// shard holds exactly its first `applied_pushes` pushes (replayed on a
    /// fresh cluster to compare), never a push half in.
    func testCutsTakenWhilePushesRunHoldWholePushesOnly() throws {
        let (a, ca) = try cluster(2)
        defer { a.forEach { $0.stop() } }
        let stop = Locked(false)
        let pushed = Locked(0)
        let box = Unchecked((self, a.map(\.endpoint)))
        let pusher = Thread {
            let (me, endpoints) = box.value
            do {
                var opts = PSClientOptions(); opts.timeout = .seconds(5)
                let c = try PSClient(endpoints: endpoints, sender: "pusher", options: opts, logger: me.logger)
                try c.declare([me.item, me.user, me.mlp])
                var k = 0
                while !stop.get() && k < 400 { try me.push(c, k); k += 1; pushed.set(k) }
            } catch { XCTFail("pusher: \(error)") }
        }
        pusher.start()
        while pushed.get() < 5 { Thread.sleep(forTimeInterval: 0.005) }
        var results: [CheckpointDriver.Result] = []
        for i in 0..<3 {
            results.append(try checkpoint(a, name: "live-\(i)"))
            Thread.sleep(forTimeInterval: 0.02)
        }
        stop.set(true)
        while !pusher.isFinished { Thread.sleep(forTimeInterval: 0.01) }
        _ = ca
        XCTAssertTrue(results.contains { $0.manifest.global_step > 0 })
        for r in results {
            let (b, _) = try cluster(2, restore: r.path)
            defer { b.forEach { $0.stop() } }
            let (ref, cref) = try cluster(2)
            defer { ref.forEach { $0.stop() } }
            // Shard-by-shard replay: the reference gets max(n0, n1) pushes; compare each shard at its own count.
            let n0 = Int(r.manifest.shards[0].applied_pushes), n1 = Int(r.manifest.shards[1].applied_pushes)
            XCTAssertLessThanOrEqual(abs(n0 - n1), 1, "a single client's push reaches both servers; the cut splits at most one")
            for k in 0..<min(n0, n1) { try push(cref, k) }
            let lagging = n0 < n1 ? 0 : 1
            XCTAssertEqual(state([b[lagging]]), state([ref[lagging]]), "\(r.path): shard \(lagging) holds exactly its first \(min(n0, n1)) pushes")
            if n0 != n1 { try push(cref, min(n0, n1)) }
            XCTAssertEqual(state([b[1 - lagging]]), state([ref[1 - lagging]]), "\(r.path): shard \(1 - lagging) holds exactly its first \(max(n0, n1)) pushes")
            XCTAssertLessThan(r.pushStallMs, 200, "a test-sized cut holds pushes briefly")
        }
    }

    /// Save on 2 servers, restore on 1 and on 3: every row with its moments
    /// and step, and every dense value with its moments, where the new
    /// sharding puts it; pulls agree; the same push then gives the same state.
    func testReshardingOntoOneAndThreeServersKeepsRowsMomentsAndSteps() throws {
        let (a, ca) = try cluster(2)
        defer { a.forEach { $0.stop() } }
        for k in 0..<12 { try push(ca, k) }
        let r = try checkpoint(a, name: "two")
        let before = state(a)
        let pulled = try ca.wait(ca.pull([SparsePull(tableID: 1, keys: Self.keys), SparsePull(tableID: 2, keys: Self.keys)], dense: [9]))
        // Pulls create rows; take the state again so the comparison includes them.
        let afterPull = state(a)
        for n in [1, 3] {
            let (b, cb) = try cluster(n, restore: r.path)
            defer { b.forEach { $0.stop() } }
            XCTAssertEqual(state(b).filter { !$0.contains("dense") }, before.filter { !$0.contains("dense") }, "\(n) servers: every row, moment and step")
            XCTAssertEqual(state(b).filter { $0.contains("dense") }.count, 1)
            for s in b {   // each row lives on its owner under the new count
                for t in s.server.registry.all() {
                    if case .sparse(let sp) = t {
                        sp.forEachRow { key, _, _, _ in XCTAssertEqual(Sharding.server(table: sp.spec.id, key: key, servers: n), s.server.registry.shardIndex) }
                    }
                }
            }
            let again = try cb.wait(cb.pull([SparsePull(tableID: 1, keys: Self.keys), SparsePull(tableID: 2, keys: Self.keys)], dense: [9]))
            XCTAssertEqual(again.sparse, pulled.sparse, "\(n) servers: pulled weights equal")
            XCTAssertEqual(again.dense, pulled.dense)
            // Dense weights and moments too (as one vector over the servers).
            XCTAssertEqual(denseVector(b), denseVector(a), "\(n) servers: dense weights and moments")
            XCTAssertEqual(state(b).filter { !$0.contains("dense") }, afterPull.filter { !$0.contains("dense") })
        }
        // The same push on the original cluster and on 3 restored servers.
        let (c, cc) = try cluster(3, restore: r.path)
        defer { c.forEach { $0.stop() } }
        _ = try cc.wait(cc.pull([SparsePull(tableID: 1, keys: Self.keys), SparsePull(tableID: 2, keys: Self.keys)], dense: [9]))
        try push(ca, 50); try push(cc, 50)
        XCTAssertEqual(state(c).filter { !$0.contains("dense") }, state(a).filter { !$0.contains("dense") }, "after the same push")
        XCTAssertEqual(denseVector(c), denseVector(a), "dense after the same push")
    }

    /// 3 → 2 (issue 21): each new server reads all three files, keeps the rows it owns under the new
    /// count, and its dense slice is pieced together from two of the three old slices (whose boundaries
    /// differ from the new ones). Then the same pushes on the original 3 and the restored 2 end equal.
    func testReshardingThreeOntoTwoServersKeepsRowsMomentsStepsAndTheDenseSlices() throws {
        let (a, ca) = try cluster(3)
        defer { a.forEach { $0.stop() } }
        for k in 0..<12 { try push(ca, k) }
        let r = try checkpoint(a, name: "three")
        XCTAssertEqual(r.manifest.shard_count, 3)
        let before = state(a)
        let (b, cb) = try cluster(2, restore: r.path)
        defer { b.forEach { $0.stop() } }
        XCTAssertEqual(state(b).filter { !$0.contains("dense") }, before.filter { !$0.contains("dense") }, "every row, moment and step")
        XCTAssertEqual(denseVector(b), denseVector(a), "dense weights and moments, re-sliced")
        var rows = 0
        for s in b {
            for t in s.server.registry.all() {
                if case .sparse(let sp) = t {
                    sp.forEachRow { key, _, _, _ in
                        rows += 1
                        XCTAssertEqual(Sharding.server(table: sp.spec.id, key: key, servers: 2), s.server.registry.shardIndex, "key \(key) on its owner")
                    }
                }
            }
        }
        XCTAssertEqual(rows, before.filter { !$0.contains("dense") }.count, "no row lost or duplicated")
        XCTAssertGreaterThan(b.map { s in s.server.registry.all().reduce(0) { n, t in
            if case .sparse(let sp) = t { return n + sp.memory().rows }; return n } }.min() ?? 0, 0, "both new servers hold rows")
        for k in 12..<16 { try push(ca, k); try push(cb, k) }
        XCTAssertEqual(state(b).filter { !$0.contains("dense") }, state(a).filter { !$0.contains("dense") }, "after the same pushes")
        XCTAssertEqual(denseVector(b), denseVector(a), "dense after the same pushes")
    }

    func denseVector(_ servers: [TestServer]) -> [Float] {
        var w: [Float] = [], m: [Float] = [], v: [Float] = []
        for s in servers {
            if case .dense(let d)? = s.server.registry.table(9) {
                let snap = d.snapshot(), n = d.range.count
                w += snap.weights; m += snap.state[0..<n]; v += snap.state[n...]
            }
        }
        return w + m + v
    }

    func testRestoredServersAcceptTheSameDeclarationAndRefuseAnotherDimension() throws {
        let (a, ca) = try cluster(1)
        defer { a.forEach { $0.stop() } }
        try push(ca, 1)
        let r = try checkpoint(a, name: "decl")
        let s = try TestServer(checkpointDir: dir, restore: r.path)
        defer { s.stop() }
        guard case .ack = try s.request(.declare(DeclareTables(tables: [item, user, mlp]))).body else { return XCTFail("same declaration refused") }
        var wider = item
        wider.dim = 8
        XCTAssertError(try s.request(.declare(DeclareTables(tables: [wider]))), .conflict, contains: "'item'")
    }

    func shardFile(_ path: String, _ i: Int = 0) -> String {
        (path as NSString).appendingPathComponent(CheckpointManifest.shardFileName(index: i, count: 2))
    }

    func refused(_ path: String, _ text: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try CheckpointRestore.verify(path: path), file: file, line: line) { e in
            XCTAssertTrue("\(e)".contains(text), "'\(e)' should mention '\(text)'", file: file, line: line)
        }
        let s = try! TestServer(shardIndex: 0, shardCount: 2)
        defer { s.stop() }
        XCTAssertThrowsError(try CheckpointRestore.restore(path: path, into: s.server), file: file, line: line) { e in
            XCTAssertTrue("\(e)".contains(text), "'\(e)' should mention '\(text)'", file: file, line: line)
        }
        XCTAssertTrue(s.server.registry.all().isEmpty, "a refused checkpoint leaves the server untouched", file: file, line: line)
    }

    func testDamagedCheckpointsAreRefusedNamingFileAndCheckAndLatestGoodFallsBack() throws {
        let (a, ca) = try cluster(2)
        defer { a.forEach { $0.stop() } }
        try push(ca, 1)
        let good = try checkpoint(a, name: "a-good")
        var made: [String] = []
        for n in ["b-flip", "c-trunc", "d-nomanifest", "e-version", "f-dim"] {
            try push(ca, made.count + 2)
            Thread.sleep(forTimeInterval: 0.01)   // distinct creation times
            made.append(try checkpoint(a, name: n).path)
        }
        // A flipped byte in the middle of a shard file.
        var d = try Data(contentsOf: URL(fileURLWithPath: shardFile(made[0])))
        d[d.count / 2] ^= 0x10
        try d.write(to: URL(fileURLWithPath: shardFile(made[0])))
        refused(made[0], "\(shardFile(made[0])): checksum")
        // A truncated shard file.
        let t = try Data(contentsOf: URL(fileURLWithPath: shardFile(made[1], 1)))
        try t.prefix(t.count - 7).write(to: URL(fileURLWithPath: shardFile(made[1], 1)))
        XCTAssertThrowsError(try CheckpointRestore.verify(path: made[1])) { XCTAssertTrue("\($0)".contains("\(shardFile(made[1], 1)): \(t.count - 7) bytes, the manifest says \(t.count) (check: size")) }
        // No manifest.
        try FileManager.default.removeItem(atPath: (made[2] as NSString).appendingPathComponent("manifest.json"))
        refused(made[2], "manifest.json: missing")
        // Another format version.
        let mpath = (made[3] as NSString).appendingPathComponent("manifest.json")
        try String(contentsOfFile: mpath).replacingOccurrences(of: "\"format_version\" : 1", with: "\"format_version\" : 2").write(toFile: mpath, atomically: true, encoding: .utf8)
        refused(made[3], "format_version 2 is not supported")
        // A table whose dim differs between the manifest and the shard files.
        let fpath = (made[4] as NSString).appendingPathComponent("manifest.json")
        var m = try CheckpointManifest.load(dir: made[4])
        m.tables[0].dim = 8
        try m.write(dir: made[4])
        _ = fpath
        refused(made[4], "table 1 'item' has dim 4, the manifest says 8 at byte")
        refused(made[4], "(check: schema)")
        // A server that already has the table with another dimension.
        let s = try TestServer(shardIndex: 0, shardCount: 2)
        defer { s.stop() }
        var wider = item; wider.dim = 5
        _ = try s.request(.declare(DeclareTables(tables: [wider])))
        XCTAssertThrowsError(try CheckpointRestore.restore(path: good.path, into: s.server)) { XCTAssertTrue("\($0)".contains("table 1 'item' is sparse dim=4"), "\($0)") }

        // latest: the newest complete one (f-dim), refused; latest-good: falls back past every damaged one.
        let latest = try CheckpointDirectory.list(dir).first { $0.manifest != nil }!
        XCTAssertEqual(latest.name, "f-dim")
        let fresh = try TestServer(shardIndex: 0, shardCount: 2)
        defer { fresh.stop() }
        XCTAssertThrowsError(try CheckpointRestore.resolve("latest", dir: dir, logger: nil) { _ = try CheckpointRestore.restore(path: $0, into: fresh.server) })
        let chosen = try CheckpointRestore.resolve("latest-good", dir: dir, logger: nil) { _ = try CheckpointRestore.restore(path: $0, into: fresh.server) }
        XCTAssertEqual(chosen, good.path)
    }

    /// A row that breaks an invariant in a file whose checksum is right (the
    /// manifest rewritten to match): refused by the row checks, naming the row.
    func testRowInvariantsAreCheckedEvenWhenTheChecksumMatches() throws {
        let (a, ca) = try cluster(2)
        defer { a.forEach { $0.stop() } }
        try push(ca, 1)
        let r = try checkpoint(a, name: "rows")
        let file = shardFile(r.path, 0)
        let pristine = try Data(contentsOf: URL(fileURLWithPath: file))
        // Table 1 (dim 4) comes first: header 32 bytes, section header 32, then 60-byte records.
        func damage(_ edit: (inout Data) -> Void, expect: String) throws {
            var d = pristine
            edit(&d)
            try d.write(to: URL(fileURLWithPath: file))
            var m = try CheckpointManifest.load(dir: r.path)
            m.shards[0].checksum = XXH64.format(d.withUnsafeBytes { XXH64.hash($0) })
            try m.write(dir: r.path)
            XCTAssertThrowsError(try CheckpointRestore.verify(path: r.path)) { e in
                XCTAssertTrue("\(e)".contains(expect) && "\(e)".contains(file) && "\(e)".contains("row 0 key"), "\(e)")
            }
        }
        try damage({ d in d.replaceSubrange((64 + 12)..<(64 + 16), with: withUnsafeBytes(of: Float.nan.bitPattern) { Data($0) }) },
                   expect: "NaN or Inf in weights or moments (check: finite)")
        try damage({ d in d.replaceSubrange((64 + 12 + 32)..<(64 + 16 + 32), with: withUnsafeBytes(of: Float(-1).bitPattern) { Data($0) }) },
                   expect: "negative second moment (check: moments)")
        let foreign = (0...UInt64(1000)).first { Sharding.server(table: 1, key: $0, servers: 2) == 1 }!
        try damage({ d in d.replaceSubrange(64..<72, with: withUnsafeBytes(of: foreign) { Data($0) }) },
                   expect: "belongs to shard 1 of 2, found in shard 0 (check: ownership)")
    }

    func testAFullDiskFailsTheWriteCleanlyAndTheServerKeepsServing() throws {
        let (a, ca) = try cluster(2)
        defer { a.forEach { $0.stop() } }
        try push(ca, 1)
        let first = try checkpoint(a, name: "first")
        // Big enough for more than one write buffer.
        let many = (0..<40_000).map { UInt64($0) &* 0x9E37_79B9 }
        _ = try ca.wait(ca.pull([SparsePull(tableID: 1, keys: many)]))
        CheckpointFaults.override = "enospc:full"
        XCTAssertThrowsError(try checkpoint(a, name: "full")) { e in
            XCTAssertTrue("\(e)".contains("No space left on device"), "\(e)")
            XCTAssertTrue("\(e)".contains("previous checkpoint stays the latest"), "\(e)")
        }
        CheckpointFaults.override = nil
        try push(ca, 2)   // still serving, pushes flow
        XCTAssertEqual(try CheckpointDirectory.list(dir).first { $0.manifest != nil }?.name, "first")
        let leftovers = try FileManager.default.subpathsOfDirectory(atPath: dir).filter { $0.hasSuffix(".tmp") }
        XCTAssertEqual(leftovers, [], "no temporary file left behind")
        // The next checkpoint works, and keep=1 prunes the older one and the failed directory.
        let next = try checkpoint(a, name: "next", keep: 1)
        XCTAssertEqual(Set(next.pruned), ["first", "full"])
        _ = first
    }

    func testPruningKeepsTheNewestKAndEveryBest() throws {
        let (a, ca) = try cluster(1)
        defer { a.forEach { $0.stop() } }
        for i in 0..<5 {
            try push(ca, i)
            Thread.sleep(forTimeInterval: 0.01)
            _ = try checkpoint(a, name: "p\(i)", keep: 2, tags: i == 1 ? ["best"] : [])
        }
        XCTAssertEqual(try CheckpointDirectory.list(dir).compactMap { $0.manifest?.name }, ["p4", "p3", "p1"])
    }

    /// A driver that prepares and goes silent: the server releases the held
    /// pushes by itself, and a late commit is refused.
    func testAHoldWithoutCommitIsReleasedAfterItsTimeout() throws {
        let (a, ca) = try cluster(1)
        defer { a.forEach { $0.stop() } }
        let prep = try a[0].request(.checkpoint(CheckpointRequest(action: .prepare, name: "stuck", dir: dir, holdTimeoutMs: 200)))
        guard case .checkpointReply(let h) = prep.body, h.state == .held else { return XCTFail("\(prep.body)") }
        let t0 = Date()
        try push(ca, 1)   // held, then released by the timeout
        let waited = Date().timeIntervalSince(t0)
        // The event is the release by the timeout, which the late commit's refusal names; the clock only
        // says the push waited (the hold began before t0, so less than the full 200 ms may be left) and
        // guards against a hang.
        XCTAssertGreaterThan(waited, 0.1, "the push was held")
        XCTAssertLessThan(waited, 60, "hang guard")
        XCTAssertError(try a[0].request(.checkpoint(CheckpointRequest(action: .commit, name: "stuck", dir: dir))), .badRequest,
                       contains: "hold was released (hold timed out after")
        // Another directory than the server's is refused; so is a name with a slash.
        XCTAssertError(try a[0].request(.checkpoint(CheckpointRequest(action: .prepare, name: "x", dir: "/tmp/elsewhere"))), .badRequest, contains: "is not this server's --checkpoint-dir")
        XCTAssertError(try a[0].request(.checkpoint(CheckpointRequest(action: .prepare, name: "a/b", dir: dir))), .badRequest, contains: "must be non-empty")
        // A relative --checkpoint-dir and the same directory named absolutely (as drivers do) are one.
        let relative = "ckpt-relative-\(getpid())"
        let absolute = FileManager.default.currentDirectoryPath + "/" + relative
        defer { try? FileManager.default.removeItem(atPath: absolute) }
        let b = try TestServer(checkpointDir: relative)
        defer { b.stop() }
        let held = try b.request(.checkpoint(CheckpointRequest(action: .prepare, name: "rel", dir: absolute, holdTimeoutMs: 200)))
        guard case .checkpointReply(let r) = held.body, r.state == .held else { return XCTFail("\(held.body)") }
        _ = try b.request(.checkpoint(CheckpointRequest(action: .abort, name: "rel", dir: absolute)))
    }

    /// The protocol step by step on one server: a push sent after PREPARE is
    /// not answered until COMMIT, is not in the checkpoint, and is applied
    /// right after the cut; ABORT releases a hold the same way.
    /// Global recovery: every server of a cluster restarted from one cut. A push retried across it is
    /// applied once: one the cut holds is answered as a duplicate (the cut's de-duplication window), one
    /// after the cut is applied to the restored state once, and its second retry is a duplicate; the
    /// cluster ends exactly where the first one was.
    func testARetriedPushIsAppliedOnceAcrossAGlobalRollback() throws {
        let servers = try (0..<2).map { try TestServer(shardIndex: $0, shardCount: 2, checkpointDir: dir) }
        var keys: [[UInt64]] = [[], []]
        for k in Self.keys.prefix(40) { keys[Sharding.server(table: 1, key: k, servers: 2)].append(k) }
        func push(_ t: [TestServer], _ id: UInt64, scale: Float) throws -> [Bool] {
            try t.indices.map { i in
                let body = Body.push(Blocks(sparse: [SparseBlock(tableID: 1, keys: keys[i], values: [Float](repeating: scale, count: keys[i].count * 4))]))
                let reply = try t[i].request(body, id: id, sender: "worker-a").body
                // A refused push is a regression, not a reason to skip: the thrown error fails the test.
                guard case .ack(let a) = reply else { throw ScenePSError(.internalError, "push \(id) to server \(i) refused: \(reply)") }
                return a.duplicate
            }
        }
        for t in servers { _ = try t.request(.declare(DeclareTables(tables: [item]))) }
        XCTAssertEqual(try push(servers, 1, scale: 0.5), [false, false])
        _ = try checkpoint(servers, name: "cut")
        XCTAssertEqual(try push(servers, 2, scale: -0.25), [false, false])
        let before = servers.map { $0.snapshot() }
        for t in servers { t.stop() }
        let cut = (dir as NSString).appendingPathComponent("cut")
        let restored = try (0..<2).map { try TestServer(shardIndex: $0, shardCount: 2, checkpointDir: dir, restore: cut) }
        defer { for t in restored { t.stop() } }
        XCTAssertEqual(try push(restored, 1, scale: 0.5), [true, true], "the cut holds push 1: a duplicate, not applied again")
        XCTAssertEqual(try push(restored, 2, scale: -0.25), [false, false], "push 2 came after the cut: applied to the restored state")
        XCTAssertEqual(try push(restored, 2, scale: -0.25), [true, true], "and only once")
        XCTAssertEqual(restored.map { $0.snapshot() }, before, "the rolled-back cluster ends where the first one was")
    }

    func testAPushDuringTheHoldIsAnsweredAfterTheCutAndIsNotInIt() throws {
        let t = try TestServer(checkpointDir: dir)
        defer { t.stop() }
        _ = try t.request(.declare(DeclareTables(tables: [item])))
        let pushBody = Body.push(Blocks(sparse: [SparseBlock(tableID: 1, keys: [7, 8], values: [Float](repeating: 0.5, count: 8))]))
        guard case .ack = try t.request(pushBody, id: 1).body else { return XCTFail("first push") }
        let atCut = t.snapshot()
        /// The replies that arrive until `count` of them are in, or (a hang guard, generous for a loaded
        /// machine) 20 s passed.
        func receive(_ count: Int) throws -> [Envelope] {
            var out: [Envelope] = []
            let end = Date().addingTimeInterval(20)
            while out.count < count && Date() < end {
                let ready = try ZMQPoll.readable([t.raw], timeoutMilliseconds: 20)
                if ready[0], let frames = try t.raw.receive(dontWait: true), let last = frames.last {
                    out.append(try last.withUnsafeBytes { b throws(WireDecodingError) in try WireCodec.decode(b) })
                }
            }
            return out
        }
        func send(_ body: Body, id: UInt64) throws {
            _ = try t.raw.send(bytes: WireCodec.encode(Envelope(requestID: id, sender: "raw-test", body: body)))
        }
        for (n, finish) in [("cut", CheckpointRequest.Action.commit), ("released", .abort)] {
            try send(.checkpoint(CheckpointRequest(action: .prepare, name: n, dir: dir)), id: 10)
            let held = try receive(1)
            XCTAssertEqual(held.count, 1)
            guard case .checkpointReply(let h)? = held.first?.body, h.state == .held else { return XCTFail("\(held)") }
            try send(pushBody, id: n == "cut" ? 2 : 3)
            // The event: the server took the push and queued it in the hold (not a time without a reply).
            let until = Date().addingTimeInterval(20)
            while t.server.handler.checkpointer.queuedPushes() < 1 && Date() < until { Thread.sleep(forTimeInterval: 0.005) }
            XCTAssertEqual(t.server.handler.checkpointer.queuedPushes(), 1, "the push is held")
            XCTAssertFalse(try ZMQPoll.readable([t.raw], timeoutMilliseconds: 0)[0], "a push during the hold is not answered")
            try send(.checkpoint(CheckpointRequest(action: finish, name: n, dir: dir)), id: 11)
            let replies = try receive(2)
            XCTAssertEqual(Set(replies.map(\.requestID)), [11, n == "cut" ? 2 : 3], "the \(finish) and the held push are both answered")
            XCTAssertTrue(replies.contains { if case .ack(let a) = $0.body { return a.appliedRows == 2 && !a.duplicate }; return false })
            if finish == .commit {   // the next PREPARE is refused while this cut is still being written: wait for it (bounded)
                let until = Date().addingTimeInterval(20)
                var written = false
                while !written && Date() < until {
                    try send(.checkpoint(CheckpointRequest(action: .status, name: n, dir: dir)), id: 12)
                    written = try receive(1).contains { if case .checkpointReply(let r) = $0.body { return r.state == .done }; return false }
                    if !written { Thread.sleep(forTimeInterval: 0.02) }
                }
                XCTAssertTrue(written, "checkpoint \(n) written within 20 s")
            }
        }
        // The checkpoint holds the state before the held push; the server holds it after.
        while t.server.handler.checkpointer.report("cut")?.state != .done { Thread.sleep(forTimeInterval: 0.01) }
        var m = t.server.handler.checkpointer.report("cut")!
        XCTAssertEqual(m.appliedPushes, 1)
        XCTAssertEqual(m.heldPushes, 1)
        m.file = CheckpointManifest.shardFileName(index: 0, count: 1)
        let manifest = CheckpointManifest(name: "cut", created: Date(), shardCount: 1, globalStep: 1, tags: [],
            tables: [.init(id: 1, name: "item", kind: "sparse", dim: 4, dense_size: 0, init: "uniform", init_scale: 0.1, seed: 5, frozen: false,
                           optimiser: .init(name: "adam", learning_rate: 0.05, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, l2: 0), rows: m.rows)],
            shards: [.init(index: 0, file: m.file, bytes: m.bytes, checksum: m.checksum, rows: m.rows, applied_pushes: 1)],
            cut: .init(push_stall_ms: m.pushStallMs, held_pushes: 1, hold_ms: m.holdMs, write_seconds: m.writeSeconds), progress: .object([:]))
        try manifest.write(dir: (dir as NSString).appendingPathComponent("cut"))
        let restored = try TestServer(restore: (dir as NSString).appendingPathComponent("cut"))
        defer { restored.stop() }
        XCTAssertEqual(restored.snapshot(), atCut)
        XCTAssertNotEqual(t.snapshot(), atCut)
    }

    func testCheckpointMessagesRoundTrip() throws {
        var rep = CheckpointReply(state: .done, name: "n")
        rep.file = "shard-00000-of-00001.ckpt"; rep.bytes = 10; rep.checksum = "xxh64:00"; rep.tables = [item, mlp]
        rep.tableRows = [TableStats(id: 1, name: "item", rows: 3, bytes: 0, pulls: 0, pushes: 0)]
        rep.pushStallMs = 1.5; rep.preservedRows = 7
        for body: Body in [.checkpoint(CheckpointRequest(action: .commit, name: "n", dir: "/d", holdTimeoutMs: 5)), .checkpointReply(rep)] {
            let e = Envelope(requestID: 7, sender: "t", body: body)
            XCTAssertEqual(try WireCodec.decode(WireCodec.encode(e)), e)
        }
    }
}

final class Locked<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T
    init(_ v: T) { value = v }
    func get() -> T { lock.lock(); defer { lock.unlock() }; return value }
    func set(_ v: T) { lock.lock(); value = v; lock.unlock() }
}

struct Unchecked<T>: @unchecked Sendable {
    let value: T
    init(_ v: T) { value = v }
}

/// The copy-on-write cut of one table: what the writer streams is the table
/// at `beginCut`, whatever pushes, new rows and snapshot restores happen while
/// it streams.
final class SparseCutTests: XCTestCase {
    let spec = TableSpec.sparse(id: 4, name: "cut", dim: 8, initKind: .uniform, initScale: 0.5, seed: 2)

    func rows(_ t: SparseTable) -> [UInt64: [Float]] {
        var out: [UInt64: [Float]] = [:]
        t.forEachRow { k, w, st, step in out[k] = Array(w) + Array(st) + [Float(bitPattern: step)] }
        return out
    }

    func push(_ t: SparseTable, _ keys: [UInt64], _ g: Float) {
        let grads = [Float](repeating: g, count: keys.count * 8)
        keys.withUnsafeBufferPointer { k in grads.withUnsafeBufferPointer { t.push(keys: k, gradients: $0.baseAddress!) } }
    }

    func streamed(_ t: SparseTable) -> [UInt64: [Float]] {
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: max(t.cutChunkFloatsMax, 1))
        defer { scratch.deallocate() }
        var out: [UInt64: [Float]] = [:]
        let rf = t.recordFloats
        t.writeCut(scratch: scratch) { raw in
            let f = raw.bindMemory(to: Float.self)
            for r in 0..<(f.count / rf) {
                let rec = Array(f[(r * rf)..<((r + 1) * rf)])
                let key = raw.loadUnaligned(fromByteOffset: r * rf * 4, as: UInt64.self)
                XCTAssertNil(out[key], "key \(key) streamed twice")
                out[key] = Array(rec[3...]) + [rec[2]]
            }
        }
        return out
    }

    func testTheStreamIsTheTableAtTheCutDespitePushesNewRowsAndARestore() {
        for restoreMidway in [false, true] {
            let t = SparseTable(spec: spec, optimizer: Adam(spec.adam), stripeBits: 2)
            var rng = SplitMix64(seed: 8)
            let keys = (0..<30_000).map { _ in rng.next() }
            push(t, keys, 0.1)
            let snap = t.snapshot()
            push(t, Array(keys[0..<10_000]), -0.2)
            let atCut = rows(t)
            XCTAssertEqual(t.beginCut(), keys.count)
            // While it streams: changes to cut rows, rows created after the cut, and (once) a snapshot restore.
            push(t, Array(keys[5_000..<20_000]), 0.3)
            push(t, (0..<5_000).map { _ in rng.next() }, 0.4)
            if restoreMidway { t.restore(snap) }
            push(t, Array(keys[15_000..<30_000]), -0.5)
            XCTAssertGreaterThan(t.cutPreserveStats().rows, 0)
            let out = streamed(t)
            XCTAssertEqual(out.count, atCut.count)
            XCTAssertEqual(out, atCut, "restore midway: \(restoreMidway)")
            // The cut is closed: pushes no longer copy rows, and a new cut can start.
            XCTAssertEqual(t.beginCut(), t.memory().rows)
            t.endCut()
        }
    }
}
