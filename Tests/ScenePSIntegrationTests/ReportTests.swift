import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import XCTest

/// RUN_DIR/report.html of a real job (one worker killed and restarted on the way): its SVGs, parsed as XML,
/// hold the series the run's files say they must (points per scene and epoch, per worker and progress
/// line, markers per checkpoint and restart), and a real browser (headless Chromium) draws them.
final class ReportTests: XCTestCase {
    var launcher: String { Harness.launcher }
    var psctl: String { Harness.bin.appendingPathComponent("psctl").path }

    /// What one SVG draws: series name → points, and the kinds of its markers.
    final class SVGReader: NSObject, XMLParserDelegate {
        var series: [String: Int] = [:]
        var polylines: [String: Int] = [:]
        var markers: [String] = []
        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                    attributes a: [String: String] = [:]) {
            if let s = a["data-series"], let n = a["data-points"].flatMap(Int.init) {
                series[s] = n
                if name == "polyline" {
                    // The points attribute itself, not only the count it claims.
                    polylines[s] = (a["points"] ?? "").split(separator: " ").filter { $0.split(separator: ",").count == 2 }.count
                }
            }
            if name == "g", a["class"] == "marker", let k = a["data-kind"] { markers.append(k) }
        }
    }

    /// Every `<svg>` of the page by id, each parsed on its own as XML (the page around them is HTML).
    func svgs(_ html: String) throws -> [String: SVGReader] {
        var out: [String: SVGReader] = [:]
        var rest = html[...]
        while let start = rest.range(of: "<svg "), let end = rest.range(of: "</svg>", range: start.upperBound..<rest.endIndex) {
            let text = String(rest[start.lowerBound..<end.upperBound])
            let p = XMLParser(data: Data(text.utf8))
            let r = SVGReader()
            p.delegate = r
            XCTAssertTrue(p.parse(), "an SVG of the report is not well-formed XML: \(p.parserError.map { "\($0)" } ?? "") \(text.prefix(300))")
            let id = text.range(of: "id=\"").map { text[$0.upperBound...].prefix { $0 != "\"" } }.map(String.init) ?? "?"
            out[id] = r
            rest = rest[end.upperBound...]
        }
        return out
    }

    /// Start lines, progress lines, and progress lines with a loss (none before a process's first step).
    func progressLines(_ url: URL) -> (starts: Int, progress: Int, withLoss: Int) {
        let lines = ((try? String(contentsOf: url, encoding: .utf8)) ?? "").split(separator: "\n")
        let objects = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        let progress = objects.filter { $0["event"] as? String == "progress" }
        return (objects.filter { $0["event"] as? String == "start" }.count, progress.count, progress.filter { $0["loss"] != nil }.count)
    }

    func testReportOfARealJobHoldsItsSeriesAndABrowserDrawsThem() throws {
        try Harness.requireBinaries()
        let dir = try Harness.tempDir("report")
        defer { try? FileManager.default.removeItem(at: dir) }
        let g = try Harness.run(psctl, ["gen-data", "--out", dir.path, "--rows", "60000", "--scene-shares", "home=0.7,shop=0.3",
                                        "--users", "2000", "--items", "3000", "--seed", "5"], timeout: 120)
        XCTAssertEqual(g.status, 0, g.output)
        let config = dir.appendingPathComponent("config.yaml")
        try "training: {epochs: 4, patience: 4, log_every: 10}\nscenes: {home: 1, shop: 1}\n".write(to: config, atomically: true, encoding: .utf8)
        let run = dir.appendingPathComponent("run")
        let job = try Harness.Running(launcher, ["--config", config.path, "--log", dir.appendingPathComponent("log.csv").path,
                                                 "--truth", dir.appendingPathComponent("truth.csv").path,
                                                 "--run-dir", run.path, "--servers", "2", "--base-port", "\(Harness.basePort(slot: 24))",
                                                 "--restart-on-failure"], cwd: Harness.root)
        defer { if job.process.isRunning { job.process.terminate(); _ = job.waitExit(timeout: 30) } }
        XCTAssertTrue(job.waitFor("workers training", timeout: 180), job.output.suffix(3000).description)

        // Kill the shop worker once it has logged a few progress lines: its restart must be on the time axis.
        let shopFile = run.appendingPathComponent("workers/shop-0.jsonl")
        let until = Date().addingTimeInterval(60)
        while progressLines(shopFile).progress < 3 && Date() < until && job.process.isRunning { Thread.sleep(forTimeInterval: 0.05) }
        let killed = try Harness.signalDescendants(of: job.process.processIdentifier, matching: "/worker .*--name shop-0( |$)", signal: SIGKILL)
        XCTAssertEqual(killed.count, 1, "the shop worker was found and killed: \(job.output.suffix(2000))")
        let status = job.waitExit(timeout: 300)
        XCTAssertEqual(status, 0, job.output.suffix(4000).description)
        let reportPath = run.appendingPathComponent("report.html").path
        XCTAssertTrue(job.output.contains("== report: \(reportPath)"), "the launcher prints where the report is: \(job.output.suffix(2000))")

        // psctl report writes it again, the same way.
        let again = try Harness.run(psctl, ["report", "--run-dir", run.path], timeout: 60)
        XCTAssertEqual(again.status, 0, again.output)
        XCTAssertTrue(again.output.contains("report: \(reportPath)"), again.output)
        let html = try String(contentsOfFile: reportPath, encoding: .utf8)
        XCTAssertFalse(html.contains("<script"), "no script needed to see the pictures")
        for remote in ["src=\"http", "href=\"http", "<link", "@import", "url(http"] {
            XCTAssertFalse(html.contains(remote), "nothing fetched from elsewhere: \(remote)")
        }
        XCTAssertFalse(html.contains("id=\"notes\""), "a complete run directory has nothing missing: \(html.prefix(3000))")

        // What the run's own files say the charts must hold.
        let summary = try Harness.readJSON(run.appendingPathComponent("summary.json"))
        let state = try Harness.readJSON(run.appendingPathComponent("coordinator/state.json"))
        let epochs = try XCTUnwrap(summary["epochs_trained"] as? Int)
        let scenes = try XCTUnwrap(summary["scenes"] as? [String: Any]).keys.sorted()
        XCTAssertEqual(scenes, ["home", "shop"])
        let checkpoints = try XCTUnwrap(state["checkpoints"] as? [[String: Any]]).count
        XCTAssertGreaterThan(checkpoints, 0)
        let supervisor = try Harness.readJSON(run.appendingPathComponent("coordinator/supervisor.json"))
        let restarts = try XCTUnwrap(supervisor["restart_events"] as? [[String: Any]])
        XCTAssertEqual(restarts.map { $0["process"] as? String }, ["worker-shop-0"], "\(supervisor)")

        let charts = try svgs(html)
        XCTAssertEqual(Set(charts.keys), ["auc", "loss", "throughput", "timeline"])
        let auc = try XCTUnwrap(charts["auc"])
        for s in scenes {
            for kind in ["valid", "test", "oracle"] {   // the oracle: the job had --truth
                XCTAssertEqual(auc.series["\(kind) \(s)"], epochs, "\(kind) AUC of \(s): one point per epoch; \(auc.series)")
                XCTAssertEqual(auc.polylines["\(kind) \(s)"], epochs, "\(kind) \(s)'s polyline")
            }
        }
        let decisions = try XCTUnwrap(summary["schedule"] as? [[String: Any]]).filter { !["keep", "wait"].contains($0["action"] as? String ?? "") }
        XCTAssertEqual(decisions.last?["action"] as? String, "stop")
        XCTAssertEqual(auc.markers.filter { $0 == "schedule" }.count, decisions.count, "decays, rollbacks and the stop are marked: \(auc.markers)")
        for name in ["home-0", "shop-0"] {
            let file = run.appendingPathComponent("workers/\(name).jsonl")
            let lines = progressLines(file)
            // Independent of the progress file: the worker's log has one progress line per record.
            let log = (try? String(contentsOf: run.appendingPathComponent("logs/worker-\(name).log"), encoding: .utf8)) ?? ""
            let logged = log.split(separator: "\n").filter { $0.contains("[ScenePSWorker] progress") }.count
            XCTAssertEqual(lines.progress, logged, "\(name): a progress record per progress log line")
            XCTAssertGreaterThan(lines.progress, 5, name)
            XCTAssertEqual(lines.starts, name == "shop-0" ? 2 : 1, "\(name): one start line per process")
            XCTAssertEqual(charts["loss"]?.polylines[name], lines.withLoss, "\(name)'s loss: a point per progress record with a loss")
            XCTAssertGreaterThan(lines.withLoss, 5, name)
            XCTAssertEqual(charts["throughput"]?.polylines[name], lines.progress, "\(name)'s examples/s: a point per progress record")
        }
        for c in ["loss", "throughput"] {
            let m = try XCTUnwrap(charts[c]).markers
            XCTAssertEqual(m.filter { $0 == "checkpoint" }.count, checkpoints, "\(c): every checkpoint marked")
            XCTAssertEqual(m.filter { $0 == "restart" }.count, 1, "\(c): the restart marked")
        }
        let timeline = try XCTUnwrap(charts["timeline"])
        XCTAssertEqual(timeline.series["checkpoints"], checkpoints)
        XCTAssertEqual(timeline.series["restarts"], 1)
        XCTAssertEqual(timeline.series["epoch ends"], epochs)

        // A real browser draws it: the screenshot is not blank and holds the series' colours.
        let shot = dir.appendingPathComponent("report.png").path
        let s = try Harness.run("/usr/bin/env", ["python3", Harness.root.appendingPathComponent("tools/report_screenshot.py").path,
                                                 reportPath, shot, "--size", "1024x2600",
                                                 "--colour", "#1f77b4", "--colour", "#ff7f0e", "--colour", "#d62728"], timeout: 150)
        XCTAssertEqual(s.status, 0, "headless chromium must run (tools/install-deps.sh installs it): \(s.output)")
        let start = try XCTUnwrap(s.output.firstIndex(of: "{"), s.output)
        let pixels = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(s.output[start...].utf8)) as? [String: Any], s.output)
        XCTAssertEqual(pixels["width"] as? Int, 1024)
        let nonWhite = try XCTUnwrap(pixels["non_white"] as? Double)
        XCTAssertGreaterThan(nonWhite, 0.01, "the page is not blank: \(pixels)")
        XCTAssertLessThan(nonWhite, 0.9, "nor one colour: \(pixels)")
        XCTAssertGreaterThan(pixels["distinct"] as? Int ?? 0, 50, "\(pixels)")
        let colours = try XCTUnwrap(pixels["colours"] as? [String: Int])
        // Scene home and worker home-0 are blue, shop orange, the restart's marker red.
        for (c, what) in [("#1f77b4", "home's and home-0's lines"), ("#ff7f0e", "shop's and shop-0's lines"), ("#d62728", "the restart's marker")] {
            XCTAssertGreaterThan(colours[c] ?? 0, 100, "\(what) (\(c)) are drawn: \(pixels)")
        }
    }

    /// A run directory with damaged and missing parts gets a report that names them; a missing one an error.
    func testDamagedAndMissingRunDirectories() throws {
        try Harness.requireBinaries()
        let dir = try Harness.tempDir("report-damaged")
        defer { try? FileManager.default.removeItem(at: dir) }
        let missing = try Harness.run(psctl, ["report", "--run-dir", dir.appendingPathComponent("nothing").path], timeout: 30)
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.output.contains("no such directory"), missing.output)
        let empty = try Harness.run(psctl, ["report", "--run-dir", dir.path], timeout: 30)
        XCTAssertEqual(empty.status, 1)
        XCTAssertTrue(empty.output.contains("not the run directory of a job"), empty.output)

        // Damaged: summary.json cut short, a progress file with a broken line, no journal, no epochs.
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("workers"), withIntermediateDirectories: true)
        try "{\"scenes\": {".write(to: dir.appendingPathComponent("summary.json"), atomically: true, encoding: .utf8)
        let t = Date().timeIntervalSince1970
        try """
            {"event":"start","time":\(t),"worker":"home-0","scene":"home","pid":7}
            {"event":"progress","time":\(t + 1),"worker":"home-0","scene":"home","pid":7,"examples":100,"examples_per_sec":100,"loss":0.6,"step":10,"epoch":1}
            not json
            {"event":"progress","time":\(t + 2),"worker":"home-0","scene":"home","pid":7,"examples":300,"examples_per_sec":150,"loss":0.5,"step":20,"epoch":1}
            {"event":"progr
            """.write(to: dir.appendingPathComponent("workers/home-0.jsonl"), atomically: true, encoding: .utf8)
        let r = try Harness.run(psctl, ["report", "--run-dir", dir.path], timeout: 30)
        XCTAssertEqual(r.status, 0, r.output)
        let html = try String(contentsOfFile: dir.appendingPathComponent("report.html").path, encoding: .utf8)
        for what in ["summary.json: damaged", "coordinator/state.json: missing", "epochs/: no epoch evaluations",
                     "workers/home-0.jsonl: 2 damaged lines skipped (line 3, 5)"] {
            XCTAssertTrue(html.contains(what), "the report names it: \(what)")
            XCTAssertTrue(r.output.contains(what), "and so does psctl: \(what) in \(r.output)")
        }
        let charts = try svgs(html)
        XCTAssertEqual(charts["loss"]?.polylines["home-0"], 2, "the two good records are drawn")
    }
}
