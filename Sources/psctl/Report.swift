import ArgumentParser
import Foundation
import ScenePSCore

/// `psctl report`: RUN_DIR/report.html, one self-contained page with pictures of a run.
struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write RUN_DIR/report.html: a run's curves (AUC per epoch, loss and examples/s per worker), its events and results.",
        discussion: """
            Reads what the run directory holds — summary.json, epochs/epoch-N.json, coordinator/state.json \
            (the coordinator's journal), coordinator/supervisor.json, workers/NAME.jsonl (each worker's \
            progress), checkpoints/*/manifest.json, metrics/targets.json — and writes one HTML file with \
            inline SVG pictures (no script, nothing fetched from elsewhere): per-scene validation and test AUC \
            per epoch with the oracle's where the truth is known and the schedule's decisions; every worker's \
            loss and examples/s over time with epochs, checkpoints, restarts, recoveries and rate decays on the \
            same time axis; a timeline of those events; and the per-scene results table. cluster/local.sh \
            writes it at the end of every job; this command writes it again, or for a job still running. \
            Parts that are missing or damaged are named at the top of the report; a directory that holds \
            none of them is an error. See docs/OBSERVING.md.
            """)

    @Option(help: "Run directory of a job (running or finished).") var runDir: String
    @Option(help: "Where to write the report (default RUN_DIR/report.html).") var out: String?

    func run() throws {
        try reportingErrors {
            let report = try RunReport.load(runDir: runDir)
            let path = out ?? (runDir as NSString).appendingPathComponent("report.html")
            try report.write(to: path)
            print("report: \(path)")
            for n in report.notes { print("  note: \(n)") }
        }
    }
}

/// What a run directory holds, read for the report. Every file is optional: what is missing or damaged is
/// recorded in `notes` (and said at the top of the page) instead of stopping the report.
struct RunReport {
    let runDir: String
    var notes: [String] = []
    var read: [String] = []
    var summary: [String: Any]?
    var state: [String: Any]?
    var supervisor: [String: Any]?
    /// epochs/epoch-N.json by N.
    var epochs: [(Int, [String: Any])] = []
    /// Worker name → its progress records, in file order.
    var progress: [(String, [[String: Any]])] = []
    var targets: [[String: Any]]?
    /// Checkpoint directories on disk: name → manifest readable.
    var onDisk: [String: Bool] = [:]
    /// Most points drawn per polyline (longer series keep every k-th record, and the last).
    static let maxPoints = 2000

    static func load(runDir: String) throws -> RunReport {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: runDir, isDirectory: &isDir) else {
            throw ScenePSError.invalidArgument("--run-dir \(runDir): no such directory")
        }
        guard isDir.boolValue else { throw ScenePSError.invalidArgument("--run-dir \(runDir): not a directory") }
        var r = RunReport(runDir: runDir)
        r.summary = r.object("summary.json", missing: "the job has not finished its first epoch's evaluation, or it stopped before: no results table")
        r.state = r.object("coordinator/state.json", missing: "no coordinator journal: epoch times, schedule, checkpoints and rollbacks are taken from summary.json where it has them")
        r.supervisor = r.object("coordinator/supervisor.json", missing: nil)
        if let t = r.json("metrics/targets.json", missing: nil) {
            if let a = t as? [[String: Any]] { r.targets = a } else { r.notes.append("metrics/targets.json: not a list of target groups (ignored)") }
        }
        let fm = FileManager.default
        let epochDir = (runDir as NSString).appendingPathComponent("epochs")
        if let names = try? fm.contentsOfDirectory(atPath: epochDir) {
            for n in names where n.hasPrefix("epoch-") && n.hasSuffix(".json") {
                guard let e = Int(n.dropFirst(6).dropLast(5)) else { continue }
                if let o = r.object("epochs/\(n)", missing: nil) { r.epochs.append((e, o)) }
            }
            r.epochs.sort { $0.0 < $1.0 }
        }
        if r.epochs.isEmpty { r.notes.append("epochs/: no epoch evaluations (epoch-N.json): no AUC curves") }
        else if let last = r.epochs.last?.0 {
            let gaps = Set(1...max(1, last)).subtracting(r.epochs.map(\.0)).sorted()
            if !gaps.isEmpty { r.notes.append("epochs/: no evaluation of epoch \(gaps.map(String.init).joined(separator: ", ")) (of 1-\(last)): the curves skip it") }
        }
        let workerDir = (runDir as NSString).appendingPathComponent("workers")
        let files = ((try? fm.contentsOfDirectory(atPath: workerDir)) ?? []).filter { $0.hasSuffix(".jsonl") }.sorted()
        for f in files { r.readProgress("workers/\(f)") }
        if files.isEmpty {
            r.notes.append("workers/: no worker progress files (NAME.jsonl, written by workers given --progress-file; cluster/local.sh does): no loss or examples/s curves")
        }
        let ckDir = (runDir as NSString).appendingPathComponent("checkpoints")
        for n in (try? fm.contentsOfDirectory(atPath: ckDir)) ?? [] where n.hasPrefix("ckpt-") {
            let m = (ckDir as NSString).appendingPathComponent("\(n)/manifest.json")
            r.onDisk[n] = (fm.contents(atPath: m)).flatMap { try? JSONSerialization.jsonObject(with: $0) } != nil
        }
        if r.summary == nil && r.state == nil && r.epochs.isEmpty && r.progress.isEmpty {
            throw ScenePSError.invalidArgument("--run-dir \(runDir): not the run directory of a job (none of summary.json, coordinator/state.json, epochs/, workers/*.jsonl)")
        }
        return r
    }

    func path(_ rel: String) -> String { (runDir as NSString).appendingPathComponent(rel) }

    /// The JSON value of `rel`; nil when absent (noted with `missing` when given) or damaged (always noted).
    mutating func json(_ rel: String, missing: String?) -> Any? {
        guard let d = FileManager.default.contents(atPath: path(rel)) else {
            if FileManager.default.fileExists(atPath: path(rel)) { notes.append("\(rel): cannot be read") }
            else if let m = missing { notes.append("\(rel): missing — \(m)") }
            return nil
        }
        do {
            let v = try JSONSerialization.jsonObject(with: d, options: [.fragmentsAllowed])
            read.append(rel)
            return v
        } catch {
            notes.append("\(rel): damaged, not JSON (\(d.count) bytes; \((error as NSError).userInfo["NSDebugDescription"] ?? error)): ignored")
            return nil
        }
    }

    mutating func object(_ rel: String, missing: String?) -> [String: Any]? {
        guard let v = json(rel, missing: missing) else { return nil }
        guard let o = v as? [String: Any] else { notes.append("\(rel): not a JSON object: ignored"); return nil }
        return o
    }

    /// One worker's JSON lines; a line that is not a JSON object is skipped and counted.
    mutating func readProgress(_ rel: String) {
        guard let d = FileManager.default.contents(atPath: path(rel)) else { notes.append("\(rel): cannot be read"); return }
        var records: [[String: Any]] = []
        var bad: [Int] = []
        for (i, line) in d.split(separator: 0x0A, omittingEmptySubsequences: false).enumerated() where !line.isEmpty {
            if let o = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any], num(o["time"]) != nil {
                records.append(o)
            } else { bad.append(i + 1) }
        }
        if !bad.isEmpty {
            notes.append("\(rel): \(bad.count) damaged line\(bad.count == 1 ? "" : "s") skipped (line \(bad.prefix(5).map(String.init).joined(separator: ", "))\(bad.count > 5 ? ", …" : ""))")
        }
        read.append(rel)
        let name = (rel as NSString).lastPathComponent.replacingOccurrences(of: ".jsonl", with: "")
        progress.append((name, records))
    }

    func write(to path: String) throws {
        try JSONFile.writeAtomically(Data(html().utf8), to: path)
    }
}

/// A number from JSON (NaN written as a string, or absent: nil).
func num(_ v: Any?) -> Double? {
    let d: Double
    if let x = v as? Double { d = x } else if let x = v as? Int { d = Double(x) } else if let n = v as? NSNumber { d = n.doubleValue } else { return nil }
    return d.isFinite ? d : nil
}

// MARK: - The page

extension RunReport {
    /// Seconds since this moment are the time axis: the coordinator's start, else the first record's time.
    var origin: Double {
        if let t = num(state?["startedAt"]) { return t }
        let times = progress.flatMap { $0.1 }.compactMap { num($0["time"]) }
        return times.min() ?? 0
    }

    var schedule: [[String: Any]] {
        ((state?["schedule"] as? [String: Any])?["epochs"] as? [[String: Any]]) ?? (summary?["schedule"] as? [[String: Any]]) ?? []
    }

    var checkpoints: [[String: Any]] { (state?["checkpoints"] as? [[String: Any]]) ?? (summary?["checkpoints"] as? [[String: Any]]) ?? [] }

    var recoveries: [[String: Any]] { (supervisor?["recoveries"] as? [[String: Any]]) ?? (summary?["recoveries"] as? [[String: Any]]) ?? [] }

    var restartEvents: [[String: Any]] { (supervisor?["restart_events"] as? [[String: Any]]) ?? [] }

    var rewinds: [[String: Any]] { (state?["rewinds"] as? [[String: Any]]) ?? [] }

    var scaling: [[String: Any]] { (state?["scaling"] as? [[String: Any]]) ?? (summary?["scaling"] as? [[String: Any]]) ?? [] }

    /// Scene names: the summary's, else the epochs', else the workers'.
    var scenes: [String] {
        if let s = summary?["scenes"] as? [String: Any], !s.isEmpty { return s.keys.sorted() }
        var set = Set<String>()
        for (_, e) in epochs { for k in ((e["valid_scenes_auc"] as? [String: Any]) ?? [:]).keys { set.insert(k) } }
        if set.isEmpty { for (_, rs) in progress { for r in rs { if let s = r["scene"] as? String { set.insert(s) } } } }
        return set.sorted()
    }

    /// Epoch → (start, end) in seconds on the time axis.
    var epochSpans: [(epoch: Int, start: Double, end: Double?)] {
        ((state?["epochs"] as? [[String: Any]]) ?? []).compactMap { e in
            guard let n = num(e["epoch"]), let s = num(e["started_at"]) else { return nil }
            return (Int(n), s - origin, num(e["finished_at"]).map { $0 - origin })
        }
    }

    func html() -> String {
        let o = origin
        let lastTime = ([num(state?["startedAt"]).map { _ in 0 }].compactMap { $0 }
            + progress.flatMap { $0.1 }.compactMap { num($0["time"]).map { $0 - o } }
            + checkpoints.compactMap { num($0["time"]).map { $0 - o } }
            + epochSpans.compactMap(\.end)).max() ?? 1
        // Minutes on the time axis for long runs.
        let minutes = lastTime > 900
        let unit = minutes ? 60.0 : 1.0
        let tLabel = minutes ? "minutes since the job started" : "seconds since the job started"
        func t(_ abs: Double) -> Double { (abs - o) / unit }

        var h = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>ScenePS report: \(esc((runDir as NSString).lastPathComponent))</title>
            <style>
            body { font-family: sans-serif; margin: 24px; color: #222222; max-width: 980px; }
            h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #cccccc; }
            table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
            th, td { border: 1px solid #cccccc; padding: 3px 8px; text-align: right; }
            th { background: #f2f2f2; } td.l, th.l { text-align: left; }
            .notes { background: #fff4e0; border: 1px solid #e0a040; padding: 8px 14px; }
            .meta { color: #555555; font-size: 13px; }
            svg { display: block; margin: 10px 0; border: 1px solid #eeeeee; }
            </style></head><body>
            <h1>ScenePS run report</h1>
            <p class="meta">Run directory <code>\(esc(runDir))</code>; written \(esc(ISO8601DateFormatter().string(from: Date()))).</p>

            """
        h += headline()
        if !notes.isEmpty {
            h += "<div class=\"notes\" id=\"notes\"><b>Missing or damaged in this run directory</b><ul>\n"
            for n in notes { h += "<li>\(esc(n))</li>\n" }
            h += "</ul></div>\n"
        }
        h += resultsTable()
        h += "<h2>Validation and test AUC per epoch</h2>\n"
        h += aucChart().render()
        let timeMarkers = eventMarkers(t)
        let bands = epochSpans.map { e in
            SVGChart.Band(x0: (e.start) / unit, x1: (e.end ?? lastTime) / unit, label: "epoch \(e.epoch)",
                          color: e.epoch % 2 == 0 ? "#eef3f8" : "#f6f6f6")
        }
        h += "<h2>Training loss and throughput per worker</h2>\n"
        h += "<p class=\"meta\">Loss: mean of the last training.log_every steps; examples/s: over the last five progress records of one process. Vertical lines: checkpoints (grey), rate decays and rollbacks (purple), restarts (red), server recoveries (orange); hover for details.</p>\n"
        var loss = SVGChart(id: "loss", title: "Training loss per worker", xLabel: tLabel, yLabel: "loss")
        var rate = SVGChart(id: "throughput", title: "Examples per second per worker", xLabel: tLabel, yLabel: "examples/s")
        for (i, (name, records)) in progress.enumerated() {
            let (l, r) = workerSeries(records, t)
            loss.series.append(.init(name: name, points: l, color: SVGChart.color(i)))
            rate.series.append(.init(name: name, points: r, color: SVGChart.color(i)))
        }
        for c in [loss, rate] {
            var c = c
            c.xDomain = 0...max(lastTime / unit, 1e-3)
            c.markers = timeMarkers
            c.bands = bands
            if c.id == "throughput" { c.yDomain = 0...max(1, (c.series.flatMap(\.points).map(\.y).max() ?? 1) * 1.08) }
            h += c.render()
        }
        h += "<h2>Timeline</h2>\n"
        var tl = timeline(t)
        tl.xDomain = 0...max(lastTime / unit, 1e-3)
        tl.xLabel = tLabel
        tl.bands = bands
        h += tl.render()
        h += scheduleTable() + checkpointTable(t) + eventTable(t) + filesTable()
        h += "</body></html>\n"
        return h
    }

    func headline() -> String {
        var parts: [String] = []
        if let s = state?["outcome"] as? String { parts.append("Outcome: \(esc(s)).") }
        else if let p = state?["phase"] as? String { parts.append("Phase: \(esc(p)) (epoch \(num(state?["epoch"]).map { String(Int($0)) } ?? "?")); the job may still be running.") }
        if let s = summary {
            var l: [String] = []
            if let m = s["model"] as? String { l.append("model \(esc(m))" + ((s["ablation"] as? String).map { " (\(esc($0)))" } ?? "")) }
            if let n = num(s["servers"]) { l.append("\(Int(n)) servers") }
            if let w = s["workers"] as? [String: Any] { l.append("workers " + w.keys.sorted().map { "\(esc($0)) \(num(w[$0]).map { String(Int($0)) } ?? "?")" }.joined(separator: ", ")) }
            if let e = num(s["epochs_trained"]) { l.append("\(Int(e)) epochs trained") }
            if let b = num(s["best_epoch"]) { l.append("best epoch \(Int(b))") }
            if let v = num(s["valid_auc"]) { l.append(String(format: "validation AUC %.4f", v) + (num(s["valid_auc_se"]).map { String(format: " ± %.4f", $0) } ?? "")) }
            if let w = num(s["wall_seconds"]) { l.append(String(format: "%.0f s of training", w)) }
            if let x = num(s["examples_per_sec"]) { l.append(String(format: "%.0f examples/s", x)) }
            parts.append(l.joined(separator: "; ") + ".")
        }
        return parts.isEmpty ? "" : "<p>\(parts.joined(separator: " "))</p>\n"
    }

    func fmt(_ v: Double?, _ p: Int = 4) -> String { v.map { String(format: "%.\(p)f", $0) } ?? "–" }

    func resultsTable() -> String {
        guard let s = summary, let sc = s["scenes"] as? [String: Any] else {
            return "<h2>Results</h2>\n<p>No results: summary.json is missing or has no scenes.</p>\n"
        }
        var h = "<h2>Results (test split, best epoch's model)</h2>\n<table id=\"results\"><tr><th class=\"l\">scene</th><th>examples</th><th>AUC</th><th>GAUC</th><th>logloss</th><th>oracle AUC</th><th>cold AUC (examples)</th></tr>\n"
        var rows = sc.keys.sorted().map { ($0, sc[$0] as? [String: Any] ?? [:]) }
        if let all = s["overall"] as? [String: Any] { rows.append(("overall", all)) }
        for (name, m) in rows {
            let cold = m["cold"] as? [String: Any]
            h += "<tr><td class=\"l\">\(esc(name))</td><td>\(num(m["examples"]).map { String(Int($0)) } ?? "–")</td><td>\(fmt(num(m["auc"])))</td><td>\(fmt(num(m["gauc"])))</td><td>\(fmt(num(m["logloss"])))</td><td>\(fmt(num(m["oracle_auc"])))</td><td>\(fmt(num(cold?["auc"]))) (\(num(cold?["examples"]).map { String(Int($0)) } ?? "–"))</td></tr>\n"
        }
        return h + "</table>\n"
    }

    /// Per scene: validation AUC (solid), test AUC (dashed), oracle AUC (dotted) per epoch; the schedule's
    /// decays, rollbacks and stop as markers.
    func aucChart() -> SVGChart {
        var c = SVGChart(id: "auc", title: "AUC per epoch: validation (solid), test (dashed), oracle (dotted)", xLabel: "epoch", yLabel: "AUC")
        c.integerX = true
        for (i, scene) in scenes.enumerated() {
            let valid = epochs.compactMap { e in num((e.1["valid_scenes_auc"] as? [String: Any])?[scene]).map { (Double(e.0), $0) } }
            let test = epochs.compactMap { e in num(((e.1["scenes"] as? [String: Any])?[scene] as? [String: Any])?["auc"]).map { (Double(e.0), $0) } }
            let oracle = epochs.compactMap { e in num(((e.1["scenes"] as? [String: Any])?[scene] as? [String: Any])?["oracle_auc"]).map { (Double(e.0), $0) } }
            c.series.append(.init(name: "valid \(scene)", points: valid.map { (x: $0.0, y: $0.1) }, color: SVGChart.color(i), style: .lineAndPoints))
            c.series.append(.init(name: "test \(scene)", points: test.map { (x: $0.0, y: $0.1) }, color: SVGChart.color(i), dash: "7 4"))
            if !oracle.isEmpty {
                c.series.append(.init(name: "oracle \(scene)", points: oracle.map { (x: $0.0, y: $0.1) }, color: SVGChart.color(i), dash: "2 3"))
            }
        }
        let overall = epochs.compactMap { e in num(e.1["valid_auc"]).map { (x: Double(e.0), y: $0) } }
        if !overall.isEmpty { c.series.append(.init(name: "valid, all scenes", points: overall, color: "#333333", style: .lineAndPoints)) }
        if let lo = epochs.first?.0, let hi = epochs.last?.0 { c.xDomain = Double(lo) - 0.3...Double(hi) + 0.3 }
        for s in schedule {
            guard let e = num(s["epoch"]), let a = s["action"] as? String, a != "keep" && a != "wait" else { continue }
            let detail = "epoch \(Int(e)): \(a)" + (num(s["lr_scale"]).map { String(format: ", rate x%g", $0) } ?? "")
                + (num(s["restored_epoch"]).map { ", back to epoch \(Int($0))'s model" } ?? "")
            c.markers.append(.init(x: e, label: a, detail: detail, color: "#9467bd", kind: "schedule"))
        }
        return c
    }

    /// Loss and examples/s points of one worker's records (seconds axis `t`); a process restart (a new pid)
    /// starts the rate over.
    func workerSeries(_ records: [[String: Any]], _ t: (Double) -> Double) -> ([(x: Double, y: Double)], [(x: Double, y: Double)]) {
        var loss: [(x: Double, y: Double)] = [], rate: [(x: Double, y: Double)] = []
        // The rate over the last `window` records of the same process (one record is often a few ms).
        let window = 5
        var recent: [(pid: Int, time: Double, examples: Double)] = []
        for r in records where (r["event"] as? String) == "progress" {
            guard let time = num(r["time"]) else { continue }
            let pid = Int(num(r["pid"]) ?? -1), ex = num(r["examples"]) ?? 0
            if let l = num(r["loss"]) { loss.append((t(time), l)) }
            if recent.last?.pid != pid { recent = [] }   // a restarted worker counts from 0 again
            var v = num(r["examples_per_sec"])
            if let p = recent.first, time > p.time, ex > p.examples { v = (ex - p.examples) / (time - p.time) }
            if let v { rate.append((t(time), v)) }
            recent.append((pid, time, ex))
            if recent.count > window { recent.removeFirst() }
        }
        return (Self.thin(loss), Self.thin(rate))
    }

    /// At most `maxPoints`: every k-th point and the last.
    static func thin(_ p: [(x: Double, y: Double)]) -> [(x: Double, y: Double)] {
        guard p.count > maxPoints else { return p }
        let k = (p.count + maxPoints - 2) / (maxPoints - 1)
        var out = stride(from: 0, to: p.count, by: k).map { p[$0] }
        if (p.count - 1) % k != 0 { out.append(p[p.count - 1]) }
        return out
    }

    /// Vertical markers for the time charts: checkpoints, schedule decays and rollbacks, restarts, recoveries.
    func eventMarkers(_ t: (Double) -> Double) -> [SVGChart.Marker] {
        var m: [SVGChart.Marker] = []
        for c in checkpoints {
            guard let time = num(c["time"]) else { continue }
            m.append(.init(x: t(time), label: "", detail: "checkpoint \(c["name"] as? String ?? "?") (epoch \(num(c["epoch"]).map { String(Int($0)) } ?? "?"))", color: "#aaaaaa", kind: "checkpoint"))
        }
        let ends = Dictionary(epochSpans.compactMap { e in e.end.map { (e.epoch, $0) } }, uniquingKeysWith: { a, _ in a })
        for s in schedule {
            guard let e = num(s["epoch"]), let a = s["action"] as? String, a == "decay" || a == "rollback-decay", let end = ends[Int(e)] else { continue }
            m.append(.init(x: t(end + origin), label: a == "decay" ? "decay" : "rollback", detail: "after epoch \(Int(e)): \(a)", color: "#9467bd", kind: "schedule", dash: "6 3"))
        }
        for r in restartEvents {
            guard let time = num(r["time"]) else { continue }
            m.append(.init(x: t(time), label: "restart", detail: "\(r["process"] as? String ?? "?") restarted: \(r["why"] as? String ?? "")", color: "#d62728", kind: "restart", dash: nil))
        }
        for r in recoveries {
            guard let time = Double("\(r["time"] ?? "")") ?? num(r["time"]) else { continue }
            m.append(.init(x: t(time), label: "recovery", detail: "\(r["process"] as? String ?? "?"): \(r["policy"] as? String ?? "") recovery from \(r["checkpoint"] as? String ?? "?")", color: "#ff7f0e", kind: "recovery", dash: nil))
        }
        for r in rewinds {
            guard let time = num(r["time"]) else { continue }
            m.append(.init(x: t(time), label: "rewind", detail: "data progress rewound to \(r["checkpoint"] as? String ?? "?"): \(r["reason"] as? String ?? "")", color: "#ff7f0e", kind: "rewind", dash: nil))
        }
        return m
    }

    /// Lanes of events on the time axis.
    func timeline(_ t: (Double) -> Double) -> SVGChart {
        let lanes = ["epoch ends", "schedule", "checkpoints", "restarts", "recoveries", "scaling"]
        var c = SVGChart(id: "timeline", title: "Events", xLabel: "", yLabel: "")
        c.yCategories = lanes
        c.height = 250
        func lane(_ i: Int, _ pts: [(Double, String)], _ color: String) {
            c.series.append(.init(name: lanes[i], points: pts.map { (x: $0.0, y: Double(i)) }, color: color, style: .points, notes: pts.map(\.1)))
        }
        let decisions = Dictionary(schedule.compactMap { s in num(s["epoch"]).map { (Int($0), s) } }, uniquingKeysWith: { _, b in b })
        lane(0, epochSpans.compactMap { e in e.end.map { (t($0 + origin), "epoch \(e.epoch) ends") } }, "#555555")
        lane(1, epochSpans.compactMap { e in
            guard let end = e.end, let d = decisions[e.epoch] else { return nil }
            return (t(end + origin), "epoch \(e.epoch): \(d["action"] as? String ?? "?")" + (num(d["valid_auc"]).map { String(format: ", validation AUC %.4f", $0) } ?? ""))
        }, "#9467bd")
        lane(2, checkpoints.compactMap { c in num(c["time"]).map { (t($0), "checkpoint \(c["name"] as? String ?? "?")") } }, "#1f77b4")
        lane(3, restartEvents.compactMap { r in num(r["time"]).map { (t($0), "\(r["process"] as? String ?? "?"): \(r["why"] as? String ?? "")") } }, "#d62728")
        lane(4, recoveries.compactMap { r in (Double("\(r["time"] ?? "")") ?? num(r["time"])).map { (t($0), "\(r["process"] as? String ?? "?") from \(r["checkpoint"] as? String ?? "?")") } }
             + rewinds.compactMap { r in num(r["time"]).map { (t($0), "rewind to \(r["checkpoint"] as? String ?? "?")") } }, "#ff7f0e")
        lane(5, scaling.compactMap { s in num(s["time"]).map { (t($0), "scene \(s["scene"] as? String ?? "?") -> \(num(s["workers"]).map { String(Int($0)) } ?? "?") workers") } }, "#2ca02c")
        return c
    }

    func scheduleTable() -> String {
        guard !schedule.isEmpty else { return "" }
        var h = "<h2>The schedule's decisions</h2>\n<table id=\"schedule\"><tr><th>epoch</th><th>validation AUC</th><th class=\"l\">decision</th><th>rate</th><th>model restored</th></tr>\n"
        for s in schedule {
            h += "<tr><td>\(num(s["epoch"]).map { String(Int($0)) } ?? "?")</td><td>\(fmt(num(s["valid_auc"])))</td><td class=\"l\">\(esc(s["action"] as? String ?? "?"))</td><td>\(num(s["lr_scale"]).map { String(format: "x%g", $0) } ?? "–")</td><td>\(num(s["restored_epoch"]).map { "epoch \(Int($0))" } ?? "")</td></tr>\n"
        }
        return h + "</table>\n"
    }

    func checkpointTable(_ t: (Double) -> Double) -> String {
        guard !checkpoints.isEmpty else { return "<h2>Checkpoints</h2>\n<p>None recorded.</p>\n" }
        var h = "<h2>Checkpoints</h2>\n<table id=\"checkpoints\"><tr><th class=\"l\">name</th><th>at (s)</th><th>epoch</th><th class=\"l\">tags</th><th>MB</th><th>push stall (ms)</th><th class=\"l\">on disk</th></tr>\n"
        for c in checkpoints {
            let name = c["name"] as? String ?? "?"
            let disk = onDisk[name].map { $0 ? "yes" : "manifest damaged" } ?? "pruned"
            h += "<tr><td class=\"l\">\(esc(name))</td><td>\(num(c["time"]).map { String(format: "%.1f", $0 - origin) } ?? "–")</td><td>\(num(c["epoch"]).map { String(Int($0)) } ?? "–")</td><td class=\"l\">\(esc(((c["tags"] as? [String]) ?? []).joined(separator: ", ")))</td><td>\(num(c["bytes"]).map { String(format: "%.1f", $0 / 1e6) } ?? "–")</td><td>\(fmt(num(c["push_stall_ms"]), 2))</td><td class=\"l\">\(disk)</td></tr>\n"
        }
        return h + "</table>\n"
    }

    func eventTable(_ t: (Double) -> Double) -> String {
        var rows: [(Double, String, String)] = []
        for r in restartEvents { if let x = num(r["time"]) { rows.append((x, "restart", "\(r["process"] as? String ?? "?"): \(r["why"] as? String ?? "")")) } }
        for r in recoveries {
            if let x = Double("\(r["time"] ?? "")") ?? num(r["time"]) {
                let extra = ["pushes_undone", "seconds_undone", "chunks_rewound"].compactMap { k in r[k].map { "\(k) \($0)" } }.joined(separator: ", ")
                rows.append((x, "recovery", "\(r["process"] as? String ?? "?"): \(r["policy"] as? String ?? "") from \(r["checkpoint"] as? String ?? "?")" + (extra.isEmpty ? "" : " (\(extra))")))
            }
        }
        for r in rewinds { if let x = num(r["time"]) { rows.append((x, "rewind", "to \(r["checkpoint"] as? String ?? "?"): \(r["reason"] as? String ?? "")")) } }
        for s in scaling { if let x = num(s["time"]) { rows.append((x, "scaling", "scene \(s["scene"] as? String ?? "?") to \(num(s["workers"]).map { String(Int($0)) } ?? "?") workers")) } }
        guard !rows.isEmpty else { return "<h2>Restarts, recoveries, scaling</h2>\n<p>None: every process ran from start to end.</p>\n" }
        var h = "<h2>Restarts, recoveries, scaling</h2>\n<table id=\"events\"><tr><th>at (s)</th><th class=\"l\">what</th><th class=\"l\">detail</th></tr>\n"
        for (x, what, d) in rows.sorted(by: { $0.0 < $1.0 }) {
            h += "<tr><td>\(String(format: "%.1f", x - origin))</td><td class=\"l\">\(what)</td><td class=\"l\">\(esc(d))</td></tr>\n"
        }
        return h + "</table>\n"
    }

    func filesTable() -> String {
        var h = "<h2>Read from</h2>\n<p class=\"meta\">" + read.map { "<code>\(esc($0))</code>" }.joined(separator: ", ") + ".</p>\n"
        if let tg = targets {
            let procs = tg.compactMap { ($0["labels"] as? [String: Any])?["process"] as? String }
            h += "<p class=\"meta\">Metrics endpoints (metrics/targets.json, at the last update): \(esc(procs.joined(separator: ", "))).</p>\n"
        }
        let logs = ((try? FileManager.default.contentsOfDirectory(atPath: path("logs"))) ?? []).sorted()
        if !logs.isEmpty { h += "<p class=\"meta\">Logs in <code>logs/</code>: \(esc(logs.joined(separator: ", "))).</p>\n" }
        return h
    }
}
