import ArgumentParser
import Foundation
import Logging
import ScenePSClient
import ScenePSCoordinator
import ScenePSCore
import ScenePSProtocol
import ScenePSTransport

/// `psctl status`: the coordinator's view of a live job (epoch, pools, chunks,
/// members) and the servers' (rows and bytes per table, requests/s, mean
/// handling time), and the last checkpoint with its age; as a table, as JSON
/// (`--json`, for tools and tests), or redrawn every few seconds (`--watch`).
struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a live job: its epoch, every scene's pool and chunks, every member, the servers' tables and load, the last checkpoint.",
        discussion: """
            Asks the coordinator of RUN_DIR (RUN_DIR/coordinator/endpoint) for its status and every server \
            (RUN_DIR/coordinator/servers) for its statistics; requests/s is measured over --interval seconds \
            (two readings). --json prints one JSON object (fields in docs/OBSERVING.md); --watch redraws the \
            view every --interval seconds, in place on a terminal and as plain successive blocks (or JSON \
            lines with --json) otherwise, until Ctrl-C or the job ends. A server that does not answer is \
            reported as such; a coordinator that does not answer means no live job (exit status 1).
            """)

    @Option(help: "Run directory of the live job.") var runDir: String
    @Flag(help: "Print JSON instead of a table.") var json = false
    @Flag(help: "Redraw every --interval seconds until the job ends or Ctrl-C.") var watch = false
    @Option(help: "Seconds between the two server readings (requests/s) and between redraws.") var interval: Double = 1
    @OptionGroup var keys: AdminKeysOption

    func validate() throws {
        guard interval > 0 && interval <= 3600 else { throw ValidationError("--interval must be in (0, 3600] seconds, got \(interval)") }
    }

    func run() throws {
        try reportingErrors {
            let probe = try JobProbe(runDir: runDir, keys: keys)
            let terminal = isatty(1) == 1
            var previous = probe.serverStats()
            Thread.sleep(forTimeInterval: interval)   // requests/s needs two readings
            var readings = 0
            repeat {
                if readings > 0 { Thread.sleep(forTimeInterval: interval) }
                let view: JobView
                do { view = try probe.read(previous: previous) } catch {
                    // Watching a job that ended (or whose coordinator went away): the last reading stands.
                    if readings > 0 { print("the job is no longer answering: \(error)"); return }
                    throw error
                }
                readings += 1
                previous = view.stats
                if json {
                    let d = try JSONSerialization.data(withJSONObject: view.json, options: watch ? [.sortedKeys] : [.sortedKeys, .prettyPrinted])
                    print(String(decoding: d, as: UTF8.self))
                } else {
                    if watch && terminal { print("\u{1B}[H\u{1B}[2J", terminator: "") }   // home, clear: redraw in place
                    print(view.text, terminator: "")
                    if watch && !terminal { print("") }
                }
                fflush(nil)
                if view.status.phase == "done" && watch { return }
            } while watch
        }
    }
}

/// What `psctl status` asks: the coordinator and the servers of one run directory.
struct JobProbe {
    let runDir: String
    let servers: [String]
    let keys: AdminKeysOption
    /// The admin's CURVE keys when the job runs with them (the servers then refuse plain requests).
    let curve: CurveClientKeys?
    init(runDir: String, keys: AdminKeysOption) throws {
        self.runDir = runDir
        self.keys = keys
        curve = try keys.admin(runDir: runDir)
        let file = CoordinatorFiles.servers(runDir)
        servers = ((try? String(contentsOfFile: file, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init).filter { !$0.isEmpty }
    }

    /// Each server's statistics with the time read; nil for one that does not answer.
    func serverStats() -> [(StatsReply, Date)?] {
        var logger = Logger(label: "psctl")
        logger.logLevel = .critical
        var options = PSClientOptions()
        options.timeout = .milliseconds(700)
        options.retries = 1
        options.curve = curve
        return servers.map { ep in
            guard let c = try? PSClient(endpoints: [ep], sender: "psctl-status-\(getpid())", options: options, logger: logger),
                  let s = try? c.stats().first else { return nil }
            return (s, Date())
        }
    }

    func read(previous: [(StatsReply, Date)?]) throws -> JobView {
        let status = try LiveJob.with(runDir: runDir, sender: "psctl-status", keys: keys) { try $0.status() }
        let journal = try? JSONFile.read(CoordinatorJournal.self, from: CoordinatorFiles.journal(runDir))
        return JobView(status: status, servers: servers, stats: serverStats(), previous: previous,
                       checkpoint: journal?.checkpoints.last, now: Date())
    }
}

/// One reading of a job, as text or JSON.
struct JobView {
    let status: StatusReply
    let servers: [String]
    let stats: [(StatsReply, Date)?]
    let previous: [(StatsReply, Date)?]
    let checkpoint: CoordinatorJournal.CheckpointRecord?
    let now: Date

    /// Requests per second of server `i` between the previous reading and this one.
    func rate(_ i: Int) -> Double? {
        guard i < previous.count, let (a, ta) = previous[i], let (b, tb) = stats[i], b.requests >= a.requests,
              tb.timeIntervalSince(ta) > 0.05 else { return nil }
        return Double(b.requests - a.requests) / tb.timeIntervalSince(ta)
    }

    /// The `q` quantile of server `i`'s handling time in milliseconds, over the requests since the previous
    /// reading (all of the server's life when it had none, or restarted meanwhile); nil when unknown (an older
    /// server, or no request).
    func handleQuantileMs(_ i: Int, _ q: Double) -> Double? {
        guard let (b, _) = stats[i] else { return nil }
        let a = i < previous.count ? previous[i].map { $0.0 } : nil
        let since = a.flatMap { $0.handleBucketBounds == b.handleBucketBounds && $0.uptimeSeconds <= b.uptimeSeconds ? $0.handleBucketCounts : nil }
        return HandleHistogram.quantile(q, bounds: b.handleBucketBounds, counts: b.handleBucketCounts, since: since).map { $0 * 1000 }
    }

    var json: [String: Any] {
        var o: [String: Any] = [
            "epoch": Int(status.epoch), "phase": status.phase, "last_event": status.message,
            "scenes": status.scenes.map { sc -> [String: Any] in
                ["name": sc.name, "pool": Int(sc.target), "live_workers": Int(sc.liveWorkers), "chunks": Int(sc.chunks),
                 "chunks_done": Int(sc.chunksDone), "chunks_leased": Int(sc.chunksLeased), "waiting": sc.waiting]
            },
            "members": status.members.map { m -> [String: Any] in
                ["member": Int(m.memberID), "name": m.name, "scene": m.scene, "lease": Int(m.leaseID), "silent_seconds": m.silentSeconds]
            },
        ]
        o["servers"] = servers.indices.map { i -> [String: Any] in
            guard let (s, _) = stats[i] else { return ["shard": i, "endpoint": servers[i], "answering": false] }
            var e: [String: Any] = [
                "shard": i, "endpoint": servers[i], "answering": true, "requests": Int(s.requests), "errors": Int(s.errors),
                "uptime_seconds": s.uptimeSeconds, "table_bytes": s.tables.reduce(0) { $0 + Int($1.bytes) },
                "mean_handle_ms": s.requests > 0 ? s.handleSeconds / Double(s.requests) * 1000 : 0,
                "tables": s.tables.map { ["name": $0.name, "rows": Int($0.rows), "bytes": Int($0.bytes)] as [String: Any] },
            ]
            if let r = rate(i) { e["requests_per_sec"] = r }
            if let p = handleQuantileMs(i, 0.5) { e["p50_handle_ms"] = p }
            if let p = handleQuantileMs(i, 0.99) { e["p99_handle_ms"] = p }
            return e
        }
        if let c = checkpoint {
            o["last_checkpoint"] = ["name": c.name, "path": c.path, "time": c.time, "age_seconds": now.timeIntervalSince1970 - c.time,
                                    "epoch": c.epoch, "bytes": Int(c.bytes), "push_stall_ms": c.pushStallMs, "tags": c.tags] as [String: Any]
        }
        return o
    }

    var text: String {
        var out = "epoch \(status.epoch): \(status.phase)\n"
        out += "scene            pool  live  chunks  done  leased\n"
        for sc in status.scenes {
            let name = sc.name.padding(toLength: max(15, sc.name.count), withPad: " ", startingAt: 0)
            out += name + String(format: "  %4@  %4d  %6d  %4d  %6d%@\n", sc.target < 0 ? "-" : "\(sc.target)" as NSString,
                                 sc.liveWorkers, sc.chunks, sc.chunksDone, sc.chunksLeased, sc.waiting ? "  waiting: no worker" : "")
        }
        for m in status.members {
            out += String(format: "member %llu %@ (scene %@): lease %llu, last heard %.1f s ago\n", m.memberID, m.name, m.scene,
                          m.leaseID, m.silentSeconds)
        }
        for (i, ep) in servers.enumerated() {
            guard let (s, _) = stats[i] else { out += "server-\(i) \(ep): not answering\n"; continue }
            let mb = Double(s.tables.reduce(0) { $0 + $1.bytes }) / 1_048_576
            let rate = self.rate(i).map { String(format: "%.0f req/s", $0) } ?? "- req/s"
            let mean = s.requests > 0 ? s.handleSeconds / Double(s.requests) * 1000 : 0
            let quantiles = [(0.5, "p50"), (0.99, "p99")].map { q, name in
                handleQuantileMs(i, q).map { String(format: "%@ %.3f ms", name, $0) } ?? "\(name) -" }.joined(separator: ", ")
            out += String(format: "server-%d %@: %@, mean %.3f ms, %@, %llu errors, tables %.1f MiB (", i, ep, rate, mean, quantiles, s.errors, mb)
            out += s.tables.map { "\($0.name) \($0.rows)" }.joined(separator: ", ") + " rows)\n"
        }
        if let c = checkpoint {
            out += String(format: "last checkpoint: %@ (epoch %d), %.0f s ago, push stall %.1f ms\n", c.name, c.epoch,
                          now.timeIntervalSince1970 - c.time, c.pushStallMs)
        } else {
            out += "last checkpoint: none yet\n"
        }
        if !status.message.isEmpty { out += "last event: \(status.message)\n" }
        return out
    }
}
