import Foundation
import XCTest

/// Limits across real processes (docs/SECURITY.md, "Limits").
final class LimitProcessTests: XCTestCase {
    var psctl: String { Harness.bin.appendingPathComponent("psctl").path }

    /// A table past its `max_rows` stops the job with the servers' message (naming the table and the cap)
    /// instead of growing the servers until the machine runs out of memory; the caps are printed at start.
    func testAJobPastMaxRowsStopsWithTheTableAndTheCap() throws {
        try Harness.requireBinaries()
        let dir = try Harness.tempDir("max-rows")
        defer { try? FileManager.default.removeItem(at: dir) }
        let g = try Harness.run(psctl, ["gen-data", "--out", dir.path, "--rows", "20000", "--scene-shares", "home=0.75,shop=0.25",
                                        "--users", "2000", "--items", "3000", "--seed", "5"], timeout: 120)
        XCTAssertEqual(g.status, 0, g.output)
        let config = dir.appendingPathComponent("config.yaml")
        try "model: {kind: baseline}\ntraining: {epochs: 1}\nscenes: {home: 1, shop: 1}\ntables: {item: {max_rows: 300}}\n"
            .write(to: config, atomically: true, encoding: .utf8)
        let run = dir.appendingPathComponent("run")
        let r = try Harness.run(Harness.root.appendingPathComponent("cluster/local.sh").path, [
            "--config", config.path, "--log", dir.appendingPathComponent("log.csv").path, "--run-dir", run.path,
            "--servers", "2", "--base-port", "\(Harness.basePort(slot: 21))"], timeout: 300)
        XCTAssertEqual(r.status, 1, String(r.output.suffix(4000)))
        XCTAssertTrue(r.output.contains("== row caps per table over all servers") && r.output.contains("item 300 (max_rows) at 416 B"),
                      String(r.output.prefix(3000)))
        XCTAssertTrue(r.output.contains("status=TABLE_FULL: table 1 'item' is full on server")
                      && r.output.contains("the cap is max_rows 300 over 2 server(s)"), String(r.output.suffix(4000)))
        XCTAssertTrue(r.output.contains("local.sh: FAILED: worker-"), String(r.output.suffix(2000)))
        XCTAssertFalse(FileManager.default.fileExists(atPath: run.appendingPathComponent("summary.json").path))
    }
}
