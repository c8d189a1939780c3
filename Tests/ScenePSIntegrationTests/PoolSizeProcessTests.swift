import Foundation
import XCTest

/// The pools a fresh job starts with, end to end through `cluster/local.sh`: by default each scene's share of
/// the training rows sizes it (`workers_per_scene: by_rows`), and `--workers-per-scene N` gives every scene N.
/// The coordinator must hold the launcher's sizes (`coordinator --workers`), or it retires the workers over
/// the config's sizes: before that flag a fresh `--workers-per-scene 2` trained with one worker per scene.
final class PoolSizeProcessTests: XCTestCase {
    var launcher: String { Harness.launcher }

    func testFreshJobsGetPoolsByRowsOrTheFlagsSize() throws {
        try Harness.requireBinaries()
        let data = try Harness.tempDir("pools-data")
        defer { try? FileManager.default.removeItem(at: data) }
        let psctl = Harness.bin.appendingPathComponent("psctl").path
        // Three scenes, home 60%: home's rows are 1.8 times the average scene's, so by_rows gives it 2.
        let g = try Harness.run(psctl, ["gen-data", "--out", data.path, "--rows", "24000", "--scene-shares", "home=0.6,shop=0.2,video=0.2",
                                        "--users", "1500", "--items", "2000", "--seed", "11", "--no-titles"], timeout: 120)
        XCTAssertEqual(g.status, 0, g.output)
        let config = data.appendingPathComponent("config.yaml")
        try "base: \(Harness.root.appendingPathComponent("cluster/default.yaml").path)\ndata: {chunk_size: 1024}\ntraining: {epochs: 1}\n"
            .write(to: config, atomically: true, encoding: .utf8)

        for (extra, expected) in [([String](), ["home": 2, "shop": 1, "video": 1]), (["--workers-per-scene", "3"], ["home": 3, "shop": 3, "video": 3])] {
            let run = try Harness.tempDir("pools-run")
            defer { try? FileManager.default.removeItem(at: run) }
            let r = try Harness.run(launcher, ["--config", config.path, "--log", data.appendingPathComponent("log.csv").path,
                                               "--run-dir", run.path, "--base-port", "\(Harness.basePort(slot: 29))"] + extra, timeout: 300)
            XCTAssertEqual(r.status, 0, String(r.output.suffix(3000)))
            let started = expected.keys.sorted().map { "\($0): \(expected[$0]!)" }.joined(separator: ", ")
            XCTAssertTrue(r.output.contains("== \(expected.values.reduce(0, +)) workers training (\(started))"),
                          "\(extra): the launcher starts \(started): \(r.output.suffix(3000))")
            let s = try Harness.readJSON(run.appendingPathComponent("summary.json"))
            XCTAssertEqual(s["workers"] as? [String: Int], expected, "\(extra): the pools the job ended with")
            XCTAssertFalse(r.output.contains("retired"), "\(extra): the coordinator retires nobody the launcher started")
            let leases = s["leases"] as? [[String: Any]] ?? []
            XCTAssertEqual(leases.first?["done"] as? Int, leases.first?["chunks"] as? Int, "\(extra): every chunk once: \(leases)")
        }
    }
}
