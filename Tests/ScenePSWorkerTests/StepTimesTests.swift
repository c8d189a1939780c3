import Foundation
import XCTest
@testable import ScenePSWorker

/// Stage times: what a worker accumulates and how summary.json reads the coordinator's sum.
final class StepTimesTests: XCTestCase {
    func testStagesWaitsAndCountsAccumulate() throws {
        let t = StepTimes()
        let x = t.time("compute") { () -> Int in
            Thread.sleep(forTimeInterval: 0.02)
            return 7
        }
        XCTAssertEqual(x, 7)
        t.add("wait.pull", 0.5)
        t.add("wait.pull", 0.25)
        t.count("steps")
        t.count("steps", 2)
        let s = t.snapshot
        XCTAssertEqual(Set(s.keys), ["compute", "wait.pull", "count.steps"])
        XCTAssertGreaterThanOrEqual(s["compute"]!, 0.02)
        XCTAssertLessThan(s["compute"]!, 5)
        XCTAssertEqual(s["wait.pull"], 0.75)
        XCTAssertEqual(s["count.steps"], 3)
        XCTAssertThrowsError(try t.time("batch") { throw CocoaError(.fileNoSuchFile) })
        XCTAssertNotNil(t.snapshot["batch"], "a stage that throws still counts its time")
    }

    func testSummaryFieldsFromSummedTimes() throws {
        let json = #"""
            {"scenes": {}, "overall": {"examples": 0, "cold": {"examples": 0}}, "examples_per_sec": 0, "wall_seconds": 0,
             "servers": 1, "workers": {}, "train_examples": 0, "model": "msif", "ablation": "full", "epoch": 1}
            """#
        var summary = try JSONDecoder().decode(RunSummary.self, from: Data(json.utf8))
        summary.setWorkerTimes([:])
        XCTAssertNil(summary.busyFraction, "no reports: no fields")
        summary.setWorkerTimes(["compute": 3, "gather": 1, "wait.pull": 1, "wait.align": 3, "count.steps": 35, "count.stale_steps": 2])
        XCTAssertEqual(summary.workerSeconds, ["compute": 3, "gather": 1])
        XCTAssertEqual(summary.waits, ["pull": 1, "align": 3])
        XCTAssertEqual(summary.pipeline, ["steps": 35, "stale_steps": 2])
        XCTAssertEqual(try XCTUnwrap(summary.busyFraction), 0.5, accuracy: 1e-12)
        let out = try JSONSerialization.jsonObject(with: JSONEncoder().encode(summary)) as! [String: Any]
        for key in ["worker_seconds", "waits", "busy_fraction", "pipeline"] { XCTAssertNotNil(out[key], key) }
    }
}
