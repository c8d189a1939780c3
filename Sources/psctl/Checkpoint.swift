import ArgumentParser
import Foundation
import Logging
import ScenePSClient
import ScenePSCore
import ScenePSProtocol
import ScenePSServer

/// `psctl checkpoint`: one consistent cut of every server, taken while
/// training runs (the driver is `CheckpointDriver`, which the coordinator uses too).
struct CheckpointCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkpoint",
        abstract: "Take a checkpoint of a running cluster: one cut across all servers, written to DIR/<name>/.",
        discussion: """
        Every server holds pushes for the length of two round trips, takes its cut, releases them and \
        writes its shard file in the background; the manifest is written last. Prints the checkpoint's \
        path, the push stall and the sizes. Exit 1 with a message if any server refuses, is silent or \
        fails to write (the previous checkpoint then stays the latest). With --run-dir DIR instead of \
        --servers/--dir: the live job's coordinator takes the checkpoint now (after a checkpoint or an epoch's \
        evaluation under way), with its data progress as the manifest's `progress`, into DIR/checkpoints; \
        prints its path once written. A run directory with no live job is a clear error.
        """)

    @Option(help: "Run directory of a live job: its coordinator takes the checkpoint now, with its data progress, into RUN_DIR/checkpoints (instead of --servers and --dir).")
    var runDir: String?
    @Option(help: "Comma-separated server endpoints, in shard order.") var servers: String?
    @Option(help: "Checkpoint directory (the servers' --checkpoint-dir, shared with them).") var dir: String?
    @Option(help: "The checkpoint's name (default ckpt-<UTC time>).") var name: String?
    @Option(help: "Keep the newest K complete checkpoints; older ones are removed unless tagged best.") var keep: Int?
    @Option(help: "A JSON file holding an object, stored as the manifest's `progress` (default {}).") var progress: String?
    @Option(help: "Comma-separated tags for the manifest (`best` protects the checkpoint from pruning).") var tags: String = ""
    @Option(help: "Milliseconds a server holds pushes before releasing them by itself if no commit comes.") var holdTimeoutMs: UInt32 = 2000
    @Option(help: "Milliseconds to wait for each server's answer to each step before giving up.") var timeoutMs: Int = 10_000
    @Option(help: "With --run-dir: seconds to wait for the checkpoint to be written (it starts once a checkpoint or an epoch's evaluation under way is over).")
    var waitSeconds: Double = 600
    @OptionGroup var keys: AdminKeysOption

    func validate() throws {
        if let k = keep, k < 1 { throw ValidationError("--keep must be at least 1, got \(k)") }
        if timeoutMs < 1 { throw ValidationError("--timeout-ms must be positive") }
        if runDir != nil {
            for (flag, set) in [("--servers", servers != nil), ("--dir", dir != nil), ("--name", name != nil), ("--keep", keep != nil),
                                ("--progress", progress != nil)] where set {
                throw ValidationError("\(flag) does not go with --run-dir: the job's coordinator names the checkpoint, records its progress and keeps checkpoint.keep of them")
            }
            if waitSeconds <= 0 { throw ValidationError("--wait-seconds must be positive") }
        } else {
            guard let servers, !servers.isEmpty else { throw ValidationError("give --run-dir DIR (a live job), or --servers (at least one endpoint) and --dir") }
            if dir == nil { throw ValidationError("--servers needs --dir (the checkpoint directory)") }
        }
    }

    func run() throws {
        try reportingErrors {
            if let runDir { return try onDemand(runDir: runDir) }
            guard let servers, let dir else { return }
            var logger = Logger(label: "psctl.checkpoint")
            logger.logLevel = .warning
            var o = CheckpointDriver.Options(dir: dir)
            o.name = name
            o.keep = keep
            o.tags = tags.split(separator: ",").map(String.init)
            o.holdTimeoutMs = holdTimeoutMs
            o.requestTimeout = .milliseconds(timeoutMs)
            if let p = progress {
                guard let d = FileManager.default.contents(atPath: p) else { throw ScenePSError.io("\(p): cannot read the progress file") }
                o.progress = try JSONValue.object(from: d, what: p)
            }
            let driver = try CheckpointDriver(endpoints: servers.split(separator: ",").map(String.init), curve: try keys.admin(),
                                              logger: logger)
            let r = try driver.checkpoint(o)
            print(String(format: "checkpoint=%@ shards=%d global_step=%llu rows=%llu mb=%.1f push_stall_ms=%.3f cut_ms=%.1f write_s=%.3f mb_per_s=%.0f pruned=%@",
                         r.path, r.manifest.shard_count, r.manifest.global_step, r.manifest.shards.reduce(0) { $0 + $1.rows },
                         Double(r.bytes) / 1e6, r.pushStallMs, r.cutMs, r.writeSeconds,
                         Double(r.bytes) / 1e6 / max(r.writeSeconds, 1e-9), r.pruned.isEmpty ? "-" : r.pruned.joined(separator: ",")))
        }
    }

    /// Asks the live job's coordinator for a checkpoint now and waits until it is written. The wait
    /// outlives a coordinator restart (the supervisor restarts a dead one; its tickets are not journaled):
    /// while it does not answer, psctl keeps asking; when it no longer knows the ticket, an on-demand
    /// checkpoint completed since psctl first asked answers the request, else psctl asks again.
    func onDemand(runDir: String) throws {
        let askedAt = Date().timeIntervalSince1970
        let end = Date().addingTimeInterval(waitSeconds)
        func ask() throws -> UInt64 {
            try LiveJob.with(runDir: runDir, sender: "psctl-checkpoint", keys: keys) { calls -> UInt64 in
                try calls.checkpoint(CoordinatorCheckpointRequest(ticket: 0, tags: tags)).ticket
            }
        }
        var ticket = try ask()
        while true {
            let r: CoordinatorCheckpointReply
            do {
                let (calls, _) = try LiveJob.calls(runDir: runDir, sender: "psctl-checkpoint", keys: keys)
                r = try calls.checkpoint(CoordinatorCheckpointRequest(ticket: ticket))
            } catch let e as ScenePSError where e.code == .timeout {
                // The coordinator is away (restarting): keep asking until the wait is over.
                guard Date() < end else {
                    throw ScenePSError(.timeout, "the job's coordinator has not answered for the checkpoint within \(Int(waitSeconds)) s: \(e.message)")
                }
                Thread.sleep(forTimeInterval: 0.5)
                continue
            } catch CoordinatorError.refused(.unknownTicket, _) {
                // A restarted coordinator: the checkpoint was taken before it died, or it must be asked again.
                if let (path, m) = onDemandCheckpoint(runDir: runDir, since: askedAt) {
                    print(String(format: "checkpoint=%@ name=%@ global_step=%llu (taken before the coordinator restarted)",
                                 path, m.name, m.global_step))
                    return
                }
                ticket = try ask()
                continue
            }
            switch r.state {
            case .done:
                print(String(format: "checkpoint=%@ name=%@ epoch=%u chunks_done=%llu mb=%.1f push_stall_ms=%.3f seconds=%.2f",
                             r.path, r.name, r.epoch, r.chunksDone, Double(r.bytes) / 1e6, r.pushStallMs, r.seconds))
                return
            case .failed:
                throw ScenePSError(.checkpoint, "the job's checkpoint failed (the previous one stays the latest): \(r.message)")
            case .pending:
                guard Date() < end else {
                    throw ScenePSError(.timeout, "the job's coordinator has not written the checkpoint within \(Int(waitSeconds)) s (\(r.message)); it may still do so")
                }
                Thread.sleep(forTimeInterval: 0.2)
            }
        }
    }

    /// The newest complete checkpoint of the job tagged `on-demand` (and with every tag asked for) that
    /// was cut at or after `since`.
    func onDemandCheckpoint(runDir: String, since: Double) -> (String, CheckpointManifest)? {
        let dir = (runDir as NSString).appendingPathComponent("checkpoints")
        let wanted = Set(["on-demand"] + tags.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
        for e in (try? CheckpointDirectory.list(dir)) ?? [] {
            guard let m = e.manifest, m.created_unix >= since - 1, wanted.isSubset(of: Set(m.tags)) else { continue }
            return (e.path, m)
        }
        return nil
    }
}

/// `psctl verify-checkpoint`: every check a restoring server makes, on every shard file.
struct VerifyCheckpoint: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify-checkpoint",
        abstract: "Check a checkpoint without a cluster: manifest, every shard's size and checksum, layout, schemas and row invariants.",
        discussion: "PATH is a checkpoint directory, or `latest` (the newest complete checkpoint under --dir) or `latest-good` (the newest that passes every check; refused ones are listed). Exit 1 with the file and the failed check if it is damaged.")

    @Argument(help: "Checkpoint directory, or `latest` / `latest-good` (then --dir).") var path: String
    @Option(help: "Checkpoint directory for `latest` / `latest-good`.") var dir: String?

    func run() throws {
        try reportingErrors {
            if path == "latest" || path == "latest-good" {
                guard let dir else { throw ScenePSError.invalidArgument("\(path) needs --dir") }
                for e in try CheckpointDirectory.list(dir) where e.manifest == nil {
                    print("incomplete \(e.path): \(e.problem ?? "")")
                }
            }
            var report = ""
            let t0 = Date()
            let chosen = try CheckpointRestore.resolve(path, dir: dir, logger: nil) { p in
                do {
                    let (m, bytes, rows) = try CheckpointRestore.verify(path: p)
                    let secs = Date().timeIntervalSince(t0)
                    report = """
                    ok \(p)
                      format \(m.format) v\(m.format_version), created \(m.created), tags \(m.tags.isEmpty ? "-" : m.tags.joined(separator: ","))
                      shards \(m.shard_count), global_step \(m.global_step), sparse rows \(rows), \(String(format: "%.1f", Double(bytes) / 1e6)) MB checked in \(String(format: "%.2f", secs)) s
                      cut: push stall \(String(format: "%.3f", m.cut.push_stall_ms)) ms, hold \(String(format: "%.3f", m.cut.hold_ms)) ms, held pushes \(m.cut.held_pushes), write \(String(format: "%.2f", m.cut.write_seconds)) s
                    """
                    for t in m.tables {
                        report += "\n  table \(t.id) '\(t.name)' \(t.kind) dim=\(t.dim)\(t.kind == "dense" ? " size=\(t.dense_size)" : "") rows=\(t.rows) init=\(t.`init`) lr=\(t.optimiser.learning_rate)"
                    }
                    for s in m.shards { report += "\n  shard \(s.index) \(s.file) \(s.bytes) bytes \(s.checksum) rows=\(s.rows) pushes=\(s.applied_pushes)" }
                } catch {
                    if path == "latest-good" { print("refused \(p): \(error)") }
                    throw error
                }
            }
            _ = chosen
            print(report)
        }
    }
}
