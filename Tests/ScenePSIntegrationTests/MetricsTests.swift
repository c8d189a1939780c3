import Foundation
import XCTest

/// The metrics endpoints of a live job, read by an independent parser
/// (PyPI prometheus-client's, through tools/scrape-metrics.sh): every process
/// serves the Prometheus text format, and the counters move while it trains.
final class MetricsTests: XCTestCase {
    var launcher: String { Harness.launcher }
    var psctl: String { Harness.bin.appendingPathComponent("psctl").path }
    var scraper: String { Harness.root.appendingPathComponent("tools/scrape-metrics.sh").path }

    typealias Sample = (name: String, labels: [String: String], value: Double)

    /// Scrapes `urls` once; nil (and the reason) when any could not be read.
    func scrape(_ urls: [String]) throws -> (result: [String: [Sample]]?, error: String) {
        let r = try Harness.run(scraper, urls, timeout: 300)   // the first call creates the venv
        guard r.status == 0, let start = r.output.firstIndex(of: "{") else { return (nil, r.output) }
        let json = try JSONSerialization.jsonObject(with: Data(r.output[start...].utf8)) as? [String: [String: Any]] ?? [:]
        var out: [String: [Sample]] = [:]
        for (url, page) in json {
            out[url] = (page["samples"] as? [[Any]] ?? []).map {
                ($0[0] as? String ?? "", $0[1] as? [String: String] ?? [:], ($0[2] as? NSNumber)?.doubleValue ?? .nan)
            }
        }
        return (out, "")
    }

    func value(_ page: [Sample]?, _ name: String, _ labels: [String: String] = [:]) -> Double? {
        let m = (page ?? []).filter { s in s.name == name && labels.allSatisfy { s.labels[$0.key] == $0.value } }
        return m.isEmpty ? nil : m.reduce(0) { $0 + $1.value }
    }

    func testEveryProcessServesMetricsThatMoveWhileTheJobTrains() throws {
        try Harness.requireBinaries()
        let dir = try Harness.tempDir("metrics")
        defer { try? FileManager.default.removeItem(at: dir) }
        // The parser's venv first (a pip install on a new machine), so that the job does not end meanwhile.
        let venv = try Harness.run(scraper, [], timeout: 300)
        XCTAssertEqual(venv.status, 0, venv.output)
        let g = try Harness.run(psctl, ["gen-data", "--out", dir.path, "--rows", "60000", "--scene-shares", "home=0.7,shop=0.3",
                                        "--users", "2000", "--items", "3000", "--seed", "11"], timeout: 120)
        XCTAssertEqual(g.status, 0, g.output)
        let config = dir.appendingPathComponent("config.yaml")
        try "training: {epochs: 8, patience: 8, log_every: 10}\nscenes: {home: 1, shop: 1}\n".write(to: config, atomically: true, encoding: .utf8)
        let run = dir.appendingPathComponent("run")
        let metricsBase = Harness.basePort(slot: 23)
        let job = try Harness.Running(launcher, ["--config", config.path, "--log", dir.appendingPathComponent("log.csv").path,
                                                 "--run-dir", run.path, "--servers", "1",
                                                 "--base-port", "\(Harness.basePort(slot: 22))",
                                                 "--metrics-base-port", "\(metricsBase)"], cwd: Harness.root)
        defer { if job.process.isRunning { job.process.terminate(); _ = job.waitExit(timeout: 30) } }
        XCTAssertTrue(job.waitFor("== run directory: \(run.path)", timeout: 120), "the run directory is printed at the start: \(job.output.prefix(2000))")

        // Every process is listed in RUN_DIR/metrics/targets.json once it runs.
        let targetsFile = run.appendingPathComponent("metrics/targets.json")
        var targets: [String: String] = [:]   // process -> URL
        let deadline = Date().addingTimeInterval(180)
        while Date() < deadline && job.process.isRunning {
            if let d = try? Data(contentsOf: targetsFile),
               let groups = try? JSONSerialization.jsonObject(with: d) as? [[String: Any]] {
                targets = [:]
                for gr in groups {
                    guard let t = (gr["targets"] as? [String])?.first, let p = (gr["labels"] as? [String: String])?["process"] else { continue }
                    targets[p] = "http://\(t)/metrics"
                }
                if Set(targets.keys).isSuperset(of: ["supervisor", "server-0", "coordinator", "worker-home-0", "worker-shop-0"]) { break }
            }
            Thread.sleep(forTimeInterval: 0.5)
        }
        XCTAssertEqual(Set(targets.keys), ["supervisor", "server-0", "coordinator", "worker-home-0", "worker-shop-0"],
                       "targets.json: \(targets); \(job.output.suffix(3000))")
        XCTAssertEqual(targets["supervisor"], "http://127.0.0.1:\(metricsBase)/metrics")
        let urls = targets.keys.sorted().map { targets[$0]! }

        // Two scrapes of every process while it trains: the counters move between them.
        Thread.sleep(forTimeInterval: 1)
        let (first, e1) = try scrape(urls)
        let a = try XCTUnwrap(first, "first scrape: \(e1)")
        Thread.sleep(forTimeInterval: 2)
        let (second, e2) = try scrape(urls)
        let b = try XCTUnwrap(second, "second scrape (the job must still run): \(e2)\n\(job.output.suffix(2000))")
        func page(_ p: String, _ x: [String: [Sample]]) -> [Sample]? { x[targets[p]!] }

        for p in targets.keys {
            XCTAssertGreaterThan(value(page(p, b), "process_resident_memory_bytes") ?? 0, 1e6, "\(p) reports its memory")
        }
        // Server: requests by type and status, keys by table, latency histogram, table sizes.
        let s1 = page("server-0", a), s2 = page("server-0", b)
        for type in ["pull", "push"] {
            let r1 = value(s1, "sceneps_server_requests_total", ["type": type, "status": "OK"]) ?? 0
            let r2 = value(s2, "sceneps_server_requests_total", ["type": type, "status": "OK"]) ?? 0
            XCTAssertGreaterThan(r2, r1, "server \(type) requests move: \(r1) -> \(r2)")
            XCTAssertGreaterThan(value(s2, "sceneps_server_request_seconds_count", ["type": type]) ?? 0, 0)
            XCTAssertEqual(value(s2, "sceneps_server_request_seconds_bucket", ["type": type, "le": "+Inf"]),
                           value(s2, "sceneps_server_request_seconds_count", ["type": type]), "the +Inf bucket holds every request")
        }
        XCTAssertGreaterThan(value(s2, "sceneps_server_keys_total", ["table": "item", "op": "pull"]) ?? 0,
                             value(s1, "sceneps_server_keys_total", ["table": "item", "op": "pull"]) ?? 0)
        XCTAssertGreaterThan(value(s2, "sceneps_server_table_rows", ["table": "item"]) ?? 0, 100)
        XCTAssertGreaterThan(value(s2, "sceneps_server_bytes_total", ["direction": "in"]) ?? 0,
                             value(s1, "sceneps_server_bytes_total", ["direction": "in"]) ?? 0)
        // Workers: examples, loss, waits by reason, client-side latency.
        for w in ["worker-home-0", "worker-shop-0"] {
            let e1 = value(page(w, a), "sceneps_worker_examples_total") ?? 0, e2 = value(page(w, b), "sceneps_worker_examples_total") ?? 0
            XCTAssertGreaterThan(e2, e1, "\(w) trains between the scrapes")
            XCTAssertGreaterThan(value(page(w, b), "sceneps_worker_wait_seconds_total", ["reason": "pull"]) ?? 0, 0, w)
            XCTAssertNotNil(value(page(w, b), "sceneps_worker_wait_seconds_total", ["reason": "alignment"]), w)
            XCTAssertGreaterThan(value(page(w, b), "sceneps_client_request_seconds_count", ["op": "push"]) ?? 0, 0, w)
            let loss = try XCTUnwrap(value(page(w, b), "sceneps_worker_loss"), w)
            XCTAssertTrue(loss > 0 && loss < 2, "\(w) loss \(loss)")
        }
        // Coordinator: requests move, chunks by state add up to the plan's.
        let c1 = value(page("coordinator", a), "sceneps_coordinator_requests_total") ?? 0
        let c2 = value(page("coordinator", b), "sceneps_coordinator_requests_total") ?? 0
        XCTAssertGreaterThan(c2, c1, "coordinator requests move")
        XCTAssertGreaterThan(value(page("coordinator", b), "sceneps_coordinator_chunks", ["scene": "home"]) ?? 0, 0)
        XCTAssertEqual(value(page("coordinator", b), "sceneps_coordinator_members"), 2)
        // Supervisor: what it runs.
        XCTAssertEqual(value(page("supervisor", b), "sceneps_supervisor_processes", ["role": "worker"]), 2)
        XCTAssertEqual(value(page("supervisor", b), "sceneps_supervisor_processes", ["role": "server"]), 1)

        // psctl status --json: the coordinator's view and the servers'.
        let st = try Harness.run(psctl, ["status", "--run-dir", run.path, "--json", "--interval", "0.5"], timeout: 60)
        XCTAssertEqual(st.status, 0, st.output)
        let o = try XCTUnwrap(st.output.firstIndex(of: "{").flatMap {
            try? JSONSerialization.jsonObject(with: Data(st.output[$0...].utf8)) as? [String: Any] }, st.output)
        XCTAssertEqual((o["scenes"] as? [[String: Any]])?.compactMap { $0["name"] as? String }.sorted(), ["home", "shop"])
        let srv = try XCTUnwrap((o["servers"] as? [[String: Any]])?.first, st.output)
        XCTAssertEqual(srv["answering"] as? Bool, true, st.output)
        XCTAssertGreaterThan(srv["requests_per_sec"] as? Double ?? 0, 0, "the servers are busy: \(st.output)")
        // Handling-time quantiles over the interval, from the server's StatsReply histogram.
        let p50 = try XCTUnwrap(srv["p50_handle_ms"] as? Double, st.output), p99 = try XCTUnwrap(srv["p99_handle_ms"] as? Double, st.output)
        XCTAssertGreaterThan(p50, 0, st.output)
        XCTAssertLessThanOrEqual(p50, p99, st.output)
        XCTAssertLessThan(p99, 5000, st.output)
        let item = (srv["tables"] as? [[String: Any]])?.first { $0["name"] as? String == "item" }
        XCTAssertGreaterThan(item?["rows"] as? Int ?? 0, 100, st.output)
        // --watch when not a terminal: successive readings, one JSON object a line.
        let watch = try Harness.Running(psctl, ["status", "--run-dir", run.path, "--json", "--watch", "--interval", "0.3"])
        Thread.sleep(forTimeInterval: 2.5)
        watch.process.terminate()
        _ = watch.waitExit(timeout: 10)
        let lines = watch.output.split(separator: "\n").filter { $0.hasPrefix("{") }
        XCTAssertGreaterThanOrEqual(lines.count, 2, watch.output)
        for l in lines { XCTAssertNotNil(try? JSONSerialization.jsonObject(with: Data(l.utf8)), String(l)) }

        XCTAssertEqual(job.waitExit(timeout: 600), 0, String(job.output.suffix(4000)))
        // The best validation AUC is known once an epoch was evaluated (read from summary.json here: the job is over).
        let summary = try Harness.readJSON(run.appendingPathComponent("summary.json"))
        XCTAssertNotNil(summary["valid_auc"] as? Double)
    }

    /// A metrics port that is taken: the process stops before serving, naming the port.
    func testAMetricsPortInUseIsAnErrorNamingIt() throws {
        try Harness.requireBinaries()
        let base = Harness.basePort(slot: 23)
        let server = Harness.bin.appendingPathComponent("ps-server").path
        let first = try Harness.Running(server, ["--shard-index", "0", "--shard-count", "1", "--bind", "tcp://127.0.0.1:\(base + 4)",
                                                 "--metrics-port", "\(base + 3)"])
        defer { first.process.terminate(); _ = first.waitExit(timeout: 15) }
        XCTAssertTrue(first.waitFor("metrics endpoint=http://127.0.0.1:\(base + 3)/metrics", timeout: 30), first.output)
        let second = try Harness.run(server, ["--shard-index", "0", "--shard-count", "1", "--bind", "tcp://127.0.0.1:*",
                                              "--metrics-port", "\(base + 3)"], timeout: 30)
        XCTAssertEqual(second.status, 1)
        XCTAssertTrue(second.output.contains("--metrics-port \(base + 3): port \(base + 3) on 127.0.0.1 is already in use"), second.output)
        XCTAssertFalse(second.output.contains("ready shard="), "nothing started: \(second.output)")
    }
}
