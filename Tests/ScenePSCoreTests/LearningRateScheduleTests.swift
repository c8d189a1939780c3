import XCTest
@testable import ScenePSCore

/// The schedule's decisions: given a run's validation AUCs, which rate each
/// epoch trains at, when the servers go back to the best model, which epoch
/// is reported and when training stops.
final class LearningRateScheduleTests: XCTestCase {
    let settings = LearningRateSchedule.Settings(decay: 0.1, maxDecays: 2, patience: 1, maxEpochs: 20, minImprovement: 0.0005)

    /// Feeds `aucs` until the schedule stops; returns it and every decision.
    func run(_ aucs: [Double?], _ s: LearningRateSchedule.Settings? = nil) -> (LearningRateSchedule, [LearningRateSchedule.Decision]) {
        var schedule = LearningRateSchedule()
        var decisions: [LearningRateSchedule.Decision] = []
        for (k, auc) in aucs.enumerated() {
            XCTAssertFalse(schedule.stopped, "stopped before epoch \(k + 1)")
            decisions.append(schedule.record(epoch: k + 1, validAUC: auc, settings: s ?? settings))
        }
        return (schedule, decisions)
    }

    /// A large log: epoch 1 gets close, epoch 2 at the full rate overfits.
    func testLargeLogGoesBackToEpochOneAndRefines() {
        let (s, d) = run([0.780, 0.770, 0.785, 0.7852, 0.7851])
        XCTAssertEqual(s.epochs.map(\.level), [0, 0, 1, 1, 2], "epoch 3 refines epoch 1 at a tenth of the rate")
        XCTAssertEqual(s.epochs.map(\.action), [.keep, .rollbackDecay, .keep, .decay, .stop])
        XCTAssertEqual(s.epochs.map(\.restoredEpoch), [nil, 1, nil, nil, 4])
        XCTAssertEqual(d.map(\.saveBest), [true, false, true, true, false])
        XCTAssertEqual(d.map(\.restoreBest), [false, true, false, false, true])
        XCTAssertEqual(s.bestEpoch, 4)
        XCTAssertEqual(s.bestAUC, 0.7852)
        for (got, want) in zip(s.epochs.map(\.lrScale), [1, 1, 0.1, 0.1, 0.01]) { XCTAssertEqual(got, want, accuracy: 1e-12) }
        XCTAssertTrue(s.stopped)
    }

    /// A small log: the full rate pays for several epochs, then refinement.
    func testSmallLogKeepsTheFullRateWhileItImproves() {
        let (s, _) = run([0.60, 0.66, 0.69, 0.70, 0.695, 0.705, 0.7049, 0.7052])
        XCTAssertEqual(s.epochs.map(\.level), [0, 0, 0, 0, 0, 1, 1, 2])
        XCTAssertEqual(s.epochs.map(\.action), [.keep, .keep, .keep, .keep, .rollbackDecay, .keep, .rollbackDecay, .stop])
        XCTAssertEqual(s.bestEpoch, 8, "the last epoch improved (a little): it is the best and nothing is restored")
        XCTAssertNil(s.epochs.last?.restoredEpoch)
    }

    func testTheRateLevelOfEachEpoch() {
        let (s, _) = run([0.7, 0.69])
        XCTAssertEqual(s.level(ofEpoch: 1), 0)
        XCTAssertEqual(s.level(ofEpoch: 2), 0)
        XCTAssertEqual(s.level(ofEpoch: 3), 1, "the next epoch, after a rollback")
        XCTAssertEqual(s.nextEpoch, 3)
        XCTAssertEqual(LearningRateSchedule().level(ofEpoch: 1), 0)
    }

    func testPatienceWaitsBeforeDecaying() {
        var p = settings
        p.patience = 2
        let (s, d) = run([0.70, 0.69, 0.68, 0.705], p)
        XCTAssertEqual(s.epochs.map(\.action), [.keep, .wait, .rollbackDecay, .keep])
        XCTAssertEqual(s.epochs.map(\.level), [0, 0, 0, 1])
        XCTAssertEqual(d.map(\.restoreBest), [false, false, true, false], "a wait goes on from the current model")
    }

    func testNoDecaysLeftStopsAtTheFirstPlateau() {
        var p = settings
        p.maxDecays = 0
        let (s, d) = run([0.70, 0.71, 0.705], p)
        XCTAssertEqual(s.epochs.map(\.action), [.keep, .keep, .stop])
        XCTAssertEqual(s.bestEpoch, 2)
        XCTAssertEqual(d.last?.restoreBest, true, "the servers are left holding epoch 2's model")
    }

    func testTheEpochCapStops() {
        var p = settings
        p.maxEpochs = 3
        let (s, d) = run([0.60, 0.65, 0.70], p)
        XCTAssertEqual(s.epochs.map(\.action), [.keep, .keep, .stop])
        XCTAssertEqual(d.last?.restoreBest, false, "the last epoch is the best")
        let (s2, d2) = run([0.60, 0.65, 0.64], p)
        XCTAssertEqual(s2.epochs.last?.action, .stop)
        XCTAssertEqual(d2.last?.restoreBest, true)
        XCTAssertEqual(s2.bestEpoch, 2)
    }

    func testWithoutValidationTheRateDecaysAfterEveryEpoch() {
        let (s, d) = run([nil, nil, nil])
        XCTAssertEqual(s.epochs.map(\.level), [0, 1, 2])
        XCTAssertEqual(s.epochs.map(\.action), [.decay, .decay, .stop])
        XCTAssertEqual(d.map(\.restoreBest), [false, false, false])
        XCTAssertEqual(s.bestEpoch, 3, "the latest epoch")
    }

    /// The schedule is part of the coordinator's journal: its JSON names are a format.
    func testRoundTripsThroughJSON() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sched-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/schedule.json"
        var s = LearningRateSchedule()
        _ = s.record(epoch: 1, validAUC: 0.7, settings: settings)
        _ = s.record(epoch: 2, validAUC: 0.6, settings: settings)
        try JSONFile.write(s, to: path)
        let back = try JSONFile.read(LearningRateSchedule.self, from: path)
        XCTAssertEqual(back, s)
        XCTAssertEqual(back.level(ofEpoch: 3), 1)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        XCTAssertTrue(text.contains("\"rollback-decay\"") && text.contains("\"restored_epoch\" : 1"), text)
        try "{".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try JSONFile.read(LearningRateSchedule.self, from: path)) { error in
            XCTAssertTrue("\(error)".contains(path), "\(error)")
        }
    }
}
