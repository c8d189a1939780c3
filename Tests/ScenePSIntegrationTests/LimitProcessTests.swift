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

    /// Two jobs on one machine: a taken port is named with what holds it. With the config's base_port the
    /// launcher moves to free ports and the job runs; with an explicit --base-port it stops at once.
    func testATakenPortIsNamedAndTheDefaultMovesToFreePorts() throws {
        try Harness.requireBinaries()
        let dir = try Harness.tempDir("ports")
        defer { try? FileManager.default.removeItem(at: dir) }
        let g = try Harness.run(psctl, ["gen-data", "--out", dir.path, "--rows", "20000", "--scene-shares", "home=0.75,shop=0.25",
                                        "--users", "2000", "--items", "3000", "--seed", "5"], timeout: 120)
        XCTAssertEqual(g.status, 0, g.output)
        let base = Harness.basePort(slot: 30)
        // Another job's server: a listener on the second server's port.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(base + 1).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        XCTAssertEqual(bound, 0, "cannot bind the test's own listener on \(base + 1)")
        XCTAssertEqual(listen(fd, 4), 0)

        let config = dir.appendingPathComponent("config.yaml")
        try "base_port: \(base)\nmodel: {kind: baseline}\ntraining: {epochs: 1}\nscenes: {home: 1, shop: 1}\n"
            .write(to: config, atomically: true, encoding: .utf8)
        let launcher = Harness.root.appendingPathComponent("cluster/local.sh").path
        let common = ["--config", config.path, "--log", dir.appendingPathComponent("log.csv").path, "--servers", "2"]
        let me = "pid \(getpid())"

        let insist = try Harness.run(launcher, common + ["--run-dir", dir.appendingPathComponent("run-a").path,
                                                         "--base-port", "\(base)"], timeout: 120)
        XCTAssertEqual(insist.status, 1, insist.output)
        XCTAssertTrue(insist.output.contains("port \(base + 1) (server 1's, of --base-port \(base)) on 127.0.0.1 is taken by \(me)"),
                      String(insist.output.suffix(3000)))
        XCTAssertFalse(insist.output.contains("starting 2 servers"), "nothing starts")

        let moved = try Harness.run(launcher, common + ["--run-dir", dir.appendingPathComponent("run-b").path], timeout: 300)
        XCTAssertEqual(moved.status, 0, String(moved.output.suffix(4000)))
        XCTAssertTrue(moved.output.contains("== port \(base + 1) (server 1's) is taken by \(me)") && moved.output.contains("instead (--base-port auto)"),
                      String(moved.output.prefix(3000)))
        XCTAssertFalse(moved.output.contains("Address already in use"), String(moved.output.suffix(3000)))
    }
}
