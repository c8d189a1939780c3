import Foundation
import Logging
import ScenePSClient
import ScenePSCore
import ScenePSData
import ScenePSServer
import ScenePSWorker
import XCTest

/// `psctl recommend` on a checkpoint of a short real job: its scores are the model's (the worker's
/// Evaluator scores the same examples the same), its ranking is those scores sorted, and each bad input
/// exits 2 naming the value.
final class RecommendProcessTests: XCTestCase {
    var psctl: String { Harness.bin.appendingPathComponent("psctl").path }

    /// One trained job for the class (XCTest runs one test at a time).
    nonisolated(unsafe) static var trained: URL?
    nonisolated(unsafe) static var cleanup: URL?

    override class func tearDown() {
        if let d = cleanup { try? FileManager.default.removeItem(at: d) }
        super.tearDown()
    }

    /// A generated log (two scenes, a catalogue with titles), trained 2 epochs by cluster/local.sh.
    func job() throws -> URL {
        if let t = Self.trained { return t }
        try Harness.requireBinaries()
        let dir = try Harness.tempDir("recommend")
        Self.cleanup = dir
        let g = try Harness.run(psctl, ["gen-data", "--out", dir.path, "--rows", "20000", "--scene-shares", "home=0.75,shop=0.25",
                                        "--users", "1000", "--items", "1500", "--seed", "5"], timeout: 120)
        XCTAssertEqual(g.status, 0, g.output)
        let config = dir.appendingPathComponent("config.yaml")
        try "training: {epochs: 2}\nscenes: {home: 1, shop: 1}\n".write(to: config, atomically: true, encoding: .utf8)
        let run = dir.appendingPathComponent("run")
        let r = try Harness.run(Harness.root.appendingPathComponent("cluster/local.sh").path, [
            "--config", config.path, "--log", dir.appendingPathComponent("log.csv").path,
            "--items", dir.appendingPathComponent("items.csv").path, "--run-dir", run.path,
            "--servers", "1", "--base-port", "\(Harness.basePort(slot: 27))"], timeout: 300)
        XCTAssertEqual(r.status, 0, String(r.output.suffix(4000)))
        Self.trained = run
        return run
    }

    func recommend(_ run: URL, _ args: [String]) throws -> (status: Int32, output: String) {
        try Harness.run(psctl, ["recommend", "--run-dir", run.path] + args, timeout: 120)
    }

    func recommendJSON(_ run: URL, _ args: [String]) throws -> [String: Any] {
        let r = try recommend(run, args + ["--json"])
        XCTAssertEqual(r.status, 0, r.output)
        let obj = try JSONSerialization.jsonObject(with: Data(r.output.utf8))
        return try XCTUnwrap(obj as? [String: Any], r.output)
    }

    /// The log's users (as written), in first-appearance order, with their rows.
    func logRows(_ run: URL) throws -> [(user: String, item: String, scene: String, ts: Int64, label: Int)] {
        let m = try DatasetManifest.load(directory: run.appendingPathComponent("data").path)
        return try String(contentsOfFile: m.source.log, encoding: .utf8).split(separator: "\n").dropFirst().map { line in
            let f = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            return (f[0], f[1], f[3], Int64(f[4])!, Int(f[5])!)
        }
    }

    /// The score of every catalogue item is the model's: for each test row whose history is the one
    /// recommend read (a user's first test rows: every click before the test cut), the worker's Evaluator,
    /// on the same checkpoint, gives that row's item the probability recommend gives it. The ranking is
    /// those scores in descending order; by default the history's items are left out of it.
    func testScoresAreTheModelsAndTheRankingIsThemSorted() throws {
        let run = try job()
        let data = run.appendingPathComponent("data")
        let m = try DatasetManifest.load(directory: data.path)
        // The test rows, in the order the Evaluator scores them, with their probabilities.
        let first = try recommendJSON(run, ["--user", "924", "--scene", "home"])
        let checkpoint = try XCTUnwrap(first["checkpoint"] as? String)
        var logger = Logger(label: "test.recommend")
        logger.logLevel = .warning
        let server = try PSServer(options: PSServerOptions(shardIndex: 0, shardCount: 1, bind: "inproc://unused"), logger: logger)
        _ = try CheckpointRestore.restore(path: checkpoint, into: server)
        let client = try PSClient(transport: InProcessTransport(servers: [server]), sender: "test-recommend", logger: logger)
        try client.hello(role: "psctl", scene: "")
        let cfg = try ClusterConfig.load(path: run.appendingPathComponent("job-config.yaml").path)
        let predicted = try Evaluator(config: cfg, dataDir: data.path, client: client, logger: logger).predict(.test)
        struct Row { let user, item, category: UInt64; let scene: Int; let history: [UInt64]; let p: Double }
        var rows: [Row] = []
        for s in m.scenes {
            for ref in s.test {
                let c = try ChunkFile(path: data.appendingPathComponent(ref.file).path)
                var b = SampleBatch(lLong: c.lLong, capacity: c.count)
                c.append(0..<c.count, to: &b)
                for i in 0..<b.count {
                    let h = (0..<Int(b.histLen[i])).map { b.histItem[i * b.lLong + $0] }
                    rows.append(Row(user: b.user[i], item: b.item[i], category: b.category[i], scene: s.index, history: h,
                                    p: predicted.probability[rows.count]))
                }
            }
        }
        XCTAssertEqual(rows.count, predicted.count)
        // Category of each catalogue item (a test row's item is scored with the catalogue's category).
        var category: [UInt64: UInt64] = [:]
        for line in try String(contentsOf: data.appendingPathComponent("items.csv"), encoding: .utf8).split(separator: "\n").dropFirst() {
            let f = line.split(separator: ",", omittingEmptySubsequences: false)
            category[UInt64(f[0])!] = UInt64(f[2])!
        }
        // Users with test rows in each scene, the first few of the log.
        var compared = 0, users = 0
        var seenUsers = Set<String>()
        for r in try logRows(run) where seenUsers.insert("\(r.user)@\(r.scene)").inserted && users < 12 {
            let key = KeyHash.idKey(r.user)
            let scene = try XCTUnwrap(m.scene(named: r.scene))
            guard rows.contains(where: { $0.user == key && $0.scene == scene.index }) else { continue }
            let rec = try recommend(run, ["--user", r.user, "--scene", r.scene, "-k", "\(category.count)", "--include-seen", "--json"])
            if rec.status == 2 && rec.output.contains("has no click before the test cut") { continue }
            XCTAssertEqual(rec.status, 0, rec.output)
            let j = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(rec.output.utf8)) as? [String: Any])
            let items = try XCTUnwrap(j["items"] as? [[String: Any]])
            XCTAssertEqual(items.count, category.count, "every catalogue item is ranked")
            let scores = items.map { $0["score"] as? Double ?? .nan }
            XCTAssertEqual(scores, scores.sorted(by: >), "the ranking is the scores in descending order")
            var score: [UInt64: Double] = [:]
            for it in items { score[UInt64(it["key"] as! String)!] = it["score"] as? Double }
            let history = (j["history_keys"] as? [String] ?? []).map { UInt64($0)! }
            users += 1
            for row in rows where row.user == key && row.scene == scene.index && row.history == history && category[row.item] == row.category {
                XCTAssertEqual(try XCTUnwrap(score[row.item]), row.p, accuracy: 1e-5,
                               "user \(r.user), scene \(r.scene): recommend's score of an item is the model's probability of that test row")
                compared += 1
            }
            // Without --include-seen: the same ranking without the history's items.
            if (j["history_length"] as? Int) == history.count {
                let top = try recommendJSON(run, ["--user", r.user, "--scene", r.scene, "-k", "10"])
                let expected = items.compactMap { $0["key"] as? String }.filter { !history.contains(UInt64($0)!) }.prefix(10)
                XCTAssertEqual((top["items"] as? [[String: Any]] ?? []).compactMap { $0["key"] as? String }, Array(expected))
            }
        }
        XCTAssertGreaterThanOrEqual(users, 8, "users ranked")
        XCTAssertGreaterThanOrEqual(compared, 8, "test rows whose score was compared with the Evaluator's")
        print("recommend: \(users) users ranked, \(compared) scores equal to the Evaluator's")
    }

    /// A user the log does not have, with a history given: ranked, the history read most recent first.
    func testAHistoryGivenForAnUnknownUser() throws {
        let run = try job()
        let j = try recommendJSON(run, ["--user", "someone-new", "--scene", "shop", "-k", "3", "--history", "i1,i2@home,i3"])
        XCTAssertEqual(j["history_source"] as? String, "--history")
        XCTAssertEqual(j["history"] as? [String], ["i3", "i2", "i1"])
        let ids = (j["items"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
        XCTAssertEqual(ids.count, 3)
        XCTAssertTrue(Set(ids).isDisjoint(with: ["i1", "i2", "i3"]), "the history's items are left out: \(ids)")
        let table = try recommend(run, ["--user", "someone-new", "--scene", "shop", "-k", "3", "--history", "i1"])
        XCTAssertEqual(table.status, 0, table.output)
        XCTAssertTrue(table.output.contains("rank  item"), table.output)
    }

    /// Every bad input: exit 2, the value named.
    func testBadInputExitsTwoNamingTheValue() throws {
        let run = try job()
        let m = try DatasetManifest.load(directory: run.appendingPathComponent("data").path)
        // A user of the log without a click before the test cut.
        let log = try logRows(run)
        var clicked = Set<String>()
        for r in log where r.label == 1 && Double(r.ts) < m.split.testCut { clicked.insert(r.user) }
        let idle = try XCTUnwrap(log.first { !clicked.contains($0.user) }?.user, "a user without a click before the test cut")
        let baseline = run.deletingLastPathComponent().appendingPathComponent("baseline.yaml")
        try "base: \"\(run.appendingPathComponent("job-config.yaml").path)\"\nmodel: {kind: baseline}\n"
            .write(to: baseline, atomically: true, encoding: .utf8)
        let cases: [([String], String)] = [
            (["--user", "924", "--scene", "garden"], "unknown scene \"garden\""),
            (["--user", "nobody", "--scene", "home"], "user \"nobody\" is not in the log"),
            (["--user", idle, "--scene", "home"], "user \"\(idle)\" has no click before the test cut"),
            (["--user", "924", "--scene", "home", "-k", "0"], "-k 0: must be at least 1"),
            (["--user", "924", "--scene", "home", "-k", "1501"], "-k 1501 is more than the items to rank"),
            (["--user", "nobody", "--scene", "home", "-k", "1500", "--history", "i1"], "has 1499 items outside the user's history"),
            (["--user", "nobody", "--scene", "home", "--history", "i1,i-none,i2"], "not in the catalogue"),
            (["--user", "nobody", "--scene", "home", "--history", "i1@mars"], "unknown scene \"mars\""),
            (["--user", "924", "--scene", "home", "--config", baseline.path], "does not hold the baseline model"),
        ]
        for (args, message) in cases {
            let r = try recommend(run, args)
            XCTAssertEqual(r.status, 2, "\(args): \(r.output)")
            XCTAssertTrue(r.output.contains(message), "\(args): expected \(message) in: \(r.output)")
        }
        let missing = try recommend(run, ["--user", "nobody", "--scene", "home", "--history", "i1,i-none"])
        XCTAssertTrue(missing.output.contains("\"i-none\"") && !missing.output.contains("\"i1\""), missing.output)
    }
}
