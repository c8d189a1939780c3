import ArgumentParser
import Foundation
import Logging
import ScenePSClient
import ScenePSCore
import ScenePSProtocol
import ScenePSServer
#if canImport(Glibc)
import Glibc
#endif

extension Supervisor {
    /// Partial recovery (docs/CHECKPOINTS.md): a dead server comes back with
    /// its shard of the latest complete checkpoint; the other servers and the
    /// workers go on (their requests to it are retried, and pushes it had
    /// applied before the cut are recognised as duplicates). The pushes it
    /// acknowledged after the cut are undone: that is the recovery debt,
    /// logged and kept in RUN_DIR/coordinator/supervisor.json for summary.json.
    /// nil when restarted; else why the job must stop.
    func restartServer(_ i: Int) -> String? {
        let s = servers[i]
        let how = silenced[i] ?? Child.describe(s.exitStatus ?? -1)
        guard restartOnFailure else { return "server-\(i) \(how) while the job ran" }
        if plan.config.recovery == .global { return recoverGlobally(dead: i) }
        guard let latest = (try? CheckpointDirectory.list(checkpointDir))?.first(where: { $0.manifest != nil }),
              let m = latest.manifest else {
            return "server-\(i) \(how), and no checkpoint exists yet to restore its shard from (checkpoint.every_seconds in the config)"
        }
        if let why = restart(s, what: s.name) { return why }
        let age = Date().timeIntervalSince1970 - m.created_unix
        let undone = pushesUndone(deadServer: i, since: m)
        let debt = (undone.map { "\($0) pushes, " } ?? "") + String(format: "%.0f s of its pushes (since checkpoint %@)", age, latest.name)
        FileHandle.standardError.write(Data("local.sh: server-\(i) restores its shard from \(latest.path); recovery debt: \(debt) are undone\n".utf8))
        var e = ["process": "server-\(i)", "policy": "partial", "checkpoint": latest.name, "time": "\(Date().timeIntervalSince1970)",
                 "seconds_undone": String(format: "%.1f", age)]
        if let undone { e["pushes_undone"] = "\(undone)" }
        recoveries.append(e)
        writeSupervisorState()
        do { servers[i] = try startServer(i, restore: latest.path) } catch { return "restarting server-\(i): \(error)" }
        if let why = waitAnswer(servers[i], plan.servers[i], .heartbeat(Heartbeat()), seconds: 120) { return why }
        return nil
    }

    /// Global recovery (docs/CHECKPOINTS.md, "Recovery policy"): server `dead` died; every server rolls back
    /// to the latest complete checkpoint and the coordinator's data progress rewinds to it.
    ///  1. BEGIN to the coordinator: it leases no chunk and starts no checkpoint from now on; wait until a
    ///     checkpoint under way has ended (its cut is then the latest, or it failed);
    ///  2. choose the latest complete checkpoint; ask each live server how many pushes it applied (the debt:
    ///     those since the cut), stop it;
    ///  3. start every server with `--restore` of that checkpoint and wait until each answers;
    ///  4. REWIND to the coordinator: its progress becomes the checkpoint's, leases in flight are released.
    /// Servers first, rewind second: a chunk leased after the rewind is pushed into the restored state only,
    /// so no chunk counted done is ever lost (one done after the cut is trained again). Workers ride out the
    /// gap: their requests are retried, and the de-duplication windows are the checkpoint's, so a retried push
    /// the cut holds is not applied twice. nil when recovered; else why the job must stop.
    func recoverGlobally(dead i: Int) -> String? {
        let s = servers[i]
        let how = silenced[i] ?? Child.describe(s.exitStatus ?? -1)
        let reason = "server-\(i) \(how)"
        let coordinatorCalls = link(plan.coordinator, "recovery", attempt: .seconds(1), patience: .seconds(5)).map(CoordinatorCalls.init)
        // 1. No new lease, no new checkpoint; a checkpoint under way ends first (bounded: its own timeouts).
        let beginBy = Date().addingTimeInterval(120)
        while Date() < beginBy {
            guard let r = try? coordinatorCalls?.recovery(RecoveryRequest(action: .begin, reason: reason)) else { break }
            if !r.checkpointing { break }
            Thread.sleep(forTimeInterval: 0.2)
        }
        // 2. The cut every server goes back to.
        guard let latest = (try? CheckpointDirectory.list(checkpointDir))?.first(where: { $0.manifest != nil }),
              let m = latest.manifest else {
            _ = try? coordinatorCalls?.recovery(RecoveryRequest(action: .abort, reason: "no checkpoint"))
            return "server-\(i) \(how), and no checkpoint exists yet to roll the servers back to (checkpoint.every_seconds in the config)"
        }
        if let why = restart(s, what: s.name) { return why }
        let age = Date().timeIntervalSince1970 - m.created_unix
        var undone: [Int: UInt64] = [:]
        undone[i] = pushesUndone(deadServer: i, since: m)
        for (j, ep) in plan.servers.enumerated() where j != i && servers[j].exitStatus == nil {
            let probe = CheckpointRequest(action: .status, name: "recovery-probe-\(getpid())")
            if case .checkpointReply(let r)? = try? link(ep, "debt-\(j)", attempt: .seconds(1), patience: .seconds(2))?.call(.checkpoint(probe)),
               m.shard_count == plan.servers.count, j < m.shards.count {
                undone[j] = r.appliedPushes >= m.shards[j].applied_pushes ? r.appliedPushes - m.shards[j].applied_pushes : 0
            }
        }
        FileHandle.standardError.write(Data("local.sh: \(reason); global recovery: every server rolls back to \(latest.path)\n".utf8))
        for (j, c) in servers.enumerated() where j != i { c.terminate() }
        let stopBy = Date().addingTimeInterval(10)
        while servers.enumerated().contains(where: { $0.offset != i && $0.element.exitStatus == nil }) && Date() < stopBy {
            Thread.sleep(forTimeInterval: 0.05)
        }
        for (j, c) in servers.enumerated() where j != i { c.kill() }
        while servers.enumerated().contains(where: { $0.offset != i && $0.element.exitStatus == nil }) && Date() < stopBy.addingTimeInterval(5) {
            Thread.sleep(forTimeInterval: 0.05)
        }
        // 3. Every server from the same cut.
        do {
            for j in plan.servers.indices { servers[j] = try startServer(j, restore: latest.path) }
        } catch { return "restarting the servers from \(latest.path): \(error)" }
        for (j, ep) in plan.servers.enumerated() {
            if let why = waitAnswer(servers[j], ep, .heartbeat(Heartbeat()), seconds: 120) { return why }
        }
        if ProcessInfo.processInfo.environment["SCENEPS_FAULT_SUPERVISOR"] == "kill-coordinator-before-rewind", let c = coordinator {
            // Fault point (tests): the coordinator dies between the servers' restore and the rewind.
            c.kill()
            let by = Date().addingTimeInterval(10)
            while c.exitStatus == nil && Date() < by { Thread.sleep(forTimeInterval: 0.05) }
        }
        // 4. The data progress back to the same cut: one request, resent under the same id until answered
        // (the coordinator applies it once: its reply cache). Should the coordinator process die meanwhile,
        // the wait is abandoned, the coordinator restarted here as the main loop would, and the request sent
        // to its successor (whose journal does not hold BEGIN: it may lease again until the rewind, which
        // then takes those chunks back too).
        guard let rewindLink = link(plan.coordinator, "rewind", attempt: .seconds(2), patience: .seconds(120)) else {
            return "cannot open a socket to the coordinator at \(plan.coordinator)"
        }
        let rewindCalls = CoordinatorCalls(rewindLink)
        var rewound: RecoveryReply?
        let rewindBy = Date().addingTimeInterval(120)
        while rewound == nil {
            if let c = coordinator, c.exitStatus != nil {
                if let why = restart(c, what: "the coordinator") { return why + " during the global recovery" }
                do { try startCoordinator() } catch { return "restarting the coordinator during the global recovery: \(error)" }
            }
            let watched = coordinator
            rewindLink.abandon = { watched?.exitStatus != nil }
            do {
                rewound = try rewindCalls.recovery(RecoveryRequest(action: .rewind, checkpoint: latest.path, reason: reason))
            } catch let e as CoordinatorError {
                return "the coordinator refused to rewind its data progress to \(latest.path): \(e)"
            } catch {
                guard Date() < rewindBy, watched?.exitStatus != nil else {
                    return "the coordinator did not answer the rewind to \(latest.path): \(error)"
                }
            }
        }
        let x = rewound!
        let now = Date().timeIntervalSince1970
        let debt = plan.servers.indices.map { j in "server-\(j): " + (undone[j].map { "\($0) pushes" } ?? "unknown") }
        FileHandle.standardError.write(Data(("local.sh: every server restored \(latest.name); recovery debt: \(String(format: "%.0f", age)) s of pushes since the cut (" +
            debt.joined(separator: ", ") + "); data progress rewound from epoch \(x.epochFrom) to \(x.epochTo): \(x.chunksUndone) chunks trained again, \(x.leasesReleased) leases released\n").utf8))
        for j in plan.servers.indices {
            var e = ["process": "server-\(j)", "policy": "global", "checkpoint": latest.name, "time": "\(now)",
                     "seconds_undone": String(format: "%.1f", age), "cause": reason]
            if let n = undone[j] { e["pushes_undone"] = "\(n)" }
            if j == i {
                e["chunks_rewound"] = "\(x.chunksUndone)"
                e["examples_rewound"] = "\(x.examplesUndone)"
                e["leases_released"] = "\(x.leasesReleased)"
                e["epoch_from"] = "\(x.epochFrom)"
                e["epoch_to"] = "\(x.epochTo)"
            }
            recoveries.append(e)
        }
        writeSupervisorState()
        return nil
    }
}
