import Foundation
import Logging
import ScenePSClient
import ScenePSCore
import ScenePSData
import ScenePSServer
import ScenePSWorker
import XCTest
@testable import ScenePSCoordinator

/// The schedule's rollback performed (issue 21): when an epoch does not improve the validation AUC,
/// the epoch evaluation puts the best epoch's model (the servers' `best` snapshot) back on the servers;
/// after a resume, when the servers no longer hold that snapshot, it goes on from the current model.
///
/// The evaluation runs for real (the Evaluator scores the prepared validation and test splits through a
/// client against in-process ZeroMQ servers). Between epoch 1 and epoch 2 the test changes one row the
/// data never uses: the model's predictions, hence its validation AUC, stay exactly the same (not an
/// improvement: with patience 1 the schedule rolls back), and that row shows whether the servers went back.
final class RollbackTests: XCTestCase {
    var dir = ""
    var logger: Logger = { var l = Logger(label: "rollback-test"); l.logLevel = .critical; return l }()
    let unusedKey: UInt64 = 0x5EED_0000_0000_0001

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("sceneps-rollback-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // A small log: 3 scenes, every user with a history; validation and test splits by time.
        var rng = SplitMix64(seed: 9)
        var csv = "user_id,item_id,category_id,scene,timestamp,label\n"
        for r in 0..<3000 {
            let item = Int(rng.next() % 200), scene = ["home", "shop", "feed"][Int(rng.next() % 3)]
            csv += "u\(rng.next() % 150),i\(item),c\(item % 12),\(scene),\(r),\(rng.nextUnit() < 0.3 ? 1 : 0)\n"
        }
        try csv.write(toFile: dir + "/log.csv", atomically: true, encoding: .utf8)
        var o = PreparationOptions(logPath: dir + "/log.csv", outDirectory: dir + "/data")
        o.chunkSize = 512
        _ = try Preparation.run(o)
        try FileManager.default.createDirectory(atPath: dir + "/run", withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func config() throws -> ClusterConfig {
        try ClusterConfig.parse(yaml: "model: {kind: baseline}\ntraining: {epochs: 5, patience: 1, lr_decays: 2}")
    }

    /// A server holding the model's tables, and a client of it.
    func server(_ c: ClusterConfig) throws -> (PSServer, PSClient) {
        let s = try PSServer(options: PSServerOptions(shardIndex: 0, shardCount: 1, bind: "tcp://127.0.0.1:*"), logger: logger)
        let endpoint = try s.start()
        let client = try PSClient.forModel(endpoints: [endpoint], sender: "rollback-test", config: c, role: "psctl", scene: "", logger: logger)
        let manifest = try DatasetManifest.load(directory: dir + "/data")
        let model = try ModelFactory.make(c, scenes: manifest.scenes.count, maxBatch: 16)
        try client.declare(ModelTables(config: c, denseSize: model.layout.count), denseInitial: model.layout.initialValues(seed: c.seed))
        return (s, client)
    }

    func unusedRow(_ client: PSClient) throws -> [Float] {
        try client.wait(client.pull([SparsePull(tableID: FeatureTable.item.id, keys: [unusedKey])])).sparse[0]
    }

    func changeUnusedRow(_ client: PSClient, _ c: ClusterConfig) throws {
        try client.wait(client.push([SparseGradient(tableID: FeatureTable.item.id, keys: [unusedKey],
                                                    values: [Float](repeating: 0.5, count: c.model.d))]))
    }

    func testARollbackPutsTheBestEpochsModelBackAndAfterAResumeGoesOnFromTheCurrentOne() throws {
        let c = try config()
        let (s, client) = try server(c)
        defer { s.shutdown() }
        let evaluation = EpochEvaluation(config: c, dataDir: dir + "/data", runDir: dir + "/run", servers: [s.endpoint], logger: logger)
        var journal = CoordinatorJournal(startedAt: Date().timeIntervalSince1970)
        let atBest = try unusedRow(client)   // pulled before epoch 1: part of the best model
        let first = try evaluation.run(epoch: 1, journal: journal, workers: [:])
        XCTAssertEqual(first.schedule.epochs.last?.action, .keep, first.decision)
        journal.schedule = first.schedule

        try changeUnusedRow(client, c)
        let changed = try unusedRow(client)
        XCTAssertNotEqual(changed, atBest, "the push moved the row")
        let second = try evaluation.run(epoch: 2, journal: journal, workers: [:])
        let record = try XCTUnwrap(second.schedule.epochs.last)
        XCTAssertEqual(record.validAUC, first.schedule.epochs.last?.validAUC, "the unused row does not change a prediction")
        XCTAssertEqual(record.action, .rollbackDecay, second.decision)
        XCTAssertEqual(record.restoredEpoch, 1)
        XCTAssertEqual(try unusedRow(client), atBest, "the servers hold the best epoch's model again")
        let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/run/summary.json"))) as? [String: Any]
        XCTAssertEqual(summary?["best_epoch"] as? Int, 1)
        XCTAssertEqual((summary?["schedule"] as? [[String: Any]])?.last?["restored_epoch"] as? Int, 1)

        // After a resume: fresh servers (restored from a checkpoint) without the `best` snapshot. The same
        // decision cannot go back; the evaluation goes on from the current model and records the decision.
        let (resumed, rclient) = try server(c)
        defer { resumed.shutdown() }
        try changeUnusedRow(rclient, c)
        let current = try unusedRow(rclient)
        let afterResume = EpochEvaluation(config: c, dataDir: dir + "/data", runDir: dir + "/run", servers: [resumed.endpoint], logger: logger)
        let again = try afterResume.run(epoch: 2, journal: journal, workers: [:])
        XCTAssertEqual(again.schedule.epochs.last?.action, .rollbackDecay, again.decision)
        XCTAssertFalse(again.stop)
        XCTAssertEqual(try unusedRow(rclient), current, "nothing to go back to: the current model stays")
    }
}
