import ArgumentParser
import Foundation
import Logging
import ScenePSClient
import ScenePSCore
import ScenePSProtocol
import ScenePSServer
import ScenePSWorker
#if canImport(Glibc)
import Glibc
#endif

extension Supervisor {
    func run() -> Int32 {
        let signals = SignalWatch()
        say("== run directory: \(runDir)")
        if let o = observe {
            o.endpoint.start()
            say("== metrics: \(o.endpoint.url) (the supervisor's); every process's in \(o.targetsFile)")
        }
        defer { observe?.endpoint.stop() }
        do {
            let resuming = resume != nil   // startCoordinator clears it
            if let why = checkHosts() { return fail("the hosts file's hosts are not ready:\n  " + why) }
            say("== starting \(plan.servers.count) servers")
            for (i, ep) in plan.servers.enumerated() {
                servers.append(try startServer(i, restore: resume))
            }
            for (i, ep) in plan.servers.enumerated() {
                if let why = waitAnswer(servers[i], ep, .heartbeat(Heartbeat()), seconds: 30) { return fail(why) }
            }
            if let why = checkShardClaims() { return fail(why) }
            say("== starting the coordinator at \(plan.coordinator)")
            try startCoordinator()
            // Resumed from the checkpoint a finished job took at its end: its coordinator has nothing to do and ends.
            func finishedAlready() -> Int32? {
                guard resuming && coordinator?.exitStatus == 0 else { return nil }
                say("== the job in \(runDir) had already finished at that checkpoint: nothing left to train")
                return finish()
            }
            if let why = waitAnswer(coordinator!, plan.coordinator, .status, seconds: 30) { return finishedAlready() ?? fail(why) }
            // The pools the coordinator holds (its journal's, after a restart; else the config's). A resume
            // keeps the checkpoint's (psctl scale changes included) but for the scenes --workers-per-scene
            // sizes: those are resized to it the way psctl scale does (journaled, in summary.json's scaling).
            let asked = Date()
            guard let status = askCoordinator(until: asked.addingTimeInterval(30), { try $0.status() }) else {
                return finishedAlready() ?? fail("the coordinator at \(plan.coordinator) did not report its pools within 30 s")
            }
            var pools: [(String, Int)] = []
            for (scene, n) in plan.scenes {
                var target = status.scenes.first { $0.name == scene }.map { Int($0.target) } ?? n
                if resuming && plan.sizedByFlag.contains(scene) && target != n {
                    // Idempotent (it sets the size), so asked again until it answers.
                    guard askCoordinator(until: asked.addingTimeInterval(60), { try $0.scale(scene: scene, workers: n) }) != nil else {
                        return fail("the coordinator did not take scene \(scene)'s pool size \(n) within 60 s")
                    }
                    say("== scene \(scene): pool \(target) -> \(n) workers (the checkpoint's, resized by --workers-per-scene)")
                    target = n
                }
                for _ in 0..<max(0, target) { try startWorker(scene: scene) }
                pools.append((scene, max(0, target)))
            }
            let cores = ProcessInfo.processInfo.activeProcessorCount
            if workers.count > 2 * cores {
                FileHandle.standardError.write(Data("local.sh: note: \(workers.count) workers on \(cores) cores: every pull is many other workers' pushes old when its gradient lands (measured: 16 workers on 2 cores lose ~0.01 AUC against 4-8); fewer workers per scene train as fast here\n".utf8))
            }
            watch = ServerWatch(endpoints: plan.servers, curve: curve)
            say("== \(workers.count) workers training (" + pools.map { "\($0.0): \($0.1)" }.joined(separator: ", ") + ")")
        } catch {
            return fail("\(error)")
        }
        var lastReconcile = Date.distantPast
        while true {
            if let sig = signals.received {
                let what = sig == SIGINT ? "interrupted" : "terminated"
                FileHandle.standardError.write(Data("local.sh: \(what): checkpointing the job first (at most \(Int(Self.stopCheckpointSeconds)) s; again to stop at once)\n".utf8))
                checkpointBeforeStopping(signals)
                FileHandle.standardError.write(Data("local.sh: \(what), stopping every process\n".utf8))
                stopAll()
                writeReport()
                return sig == SIGINT ? 130 : 143
            }
            for (i, s) in servers.enumerated() {
                if s.exitStatus == nil, !s.host.via.isEmpty, let w = watch, w.silence(i) > serverDeadAfter {
                    // Running on another host, but unheard (a cut link, a frozen host): stopped here and
                    // recovered as a dead server; its successor takes over its port (docs/DEPLOY.md, "Losing
                    // a machine"). Servers started here directly are judged by their process alone.
                    let why = String(format: "did not answer at %@ for %.0f s (--server-dead-after)", plan.servers[i], w.silence(i))
                    FileHandle.standardError.write(Data("local.sh: server-\(i) on host \(s.host.name) \(why): declared dead, stopping it\n".utf8))
                    silenced[i] = why
                    s.kill()
                    let by = Date().addingTimeInterval(15)
                    while s.exitStatus == nil && Date() < by { Thread.sleep(forTimeInterval: 0.05) }
                }
                guard s.exitStatus != nil else { continue }
                if let why = restartServer(i) { return fail(why) }
                silenced[i] = nil
                for j in plan.servers.indices { watch?.reset(j) }   // answered, after a wait the watch did not see
            }
            if let c = coordinator, let st = c.exitStatus {
                if st == 0 { return finish() }
                if let why = restart(c, what: "the coordinator") { return fail(why) }
                do { try startCoordinator() } catch { return fail("restarting the coordinator: \(error)") }
            }
            var i = 0
            while i < workers.count {
                let w = workers[i]
                guard let st = w.exitStatus else { i += 1; continue }
                workers.remove(at: i)
                if st == 0 { continue }   // retired, or the job is over
                if let why = restart(w, what: w.name) {
                    return fail(why + serversNotAnswering())
                }
                do { try startWorker(scene: w.scene, name: w.memberName, on: w.host) } catch { return fail("restarting \(w.name): \(error)") }
            }
            if Date().timeIntervalSince(lastReconcile) > 0.5 {
                lastReconcile = Date()
                reconcile()
                observe?.publish(self)
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    /// Starts workers for scenes whose pool is larger than what runs.
    func reconcile() {
        guard let s = coordinatorStatus(), s.phase != "done" else { return }
        for sc in s.scenes where sc.target >= 0 {
            let running = workers.filter { $0.scene == sc.name && $0.exitStatus == nil }.count
            if running < Int(sc.target) {
                let live = servers.count + 1 + workers.filter { $0.exitStatus == nil }.count
                let room = slots.map { max(0, $0 - live) } ?? Int.max
                if room < Int(sc.target) - running {
                    say("local.sh: scene \(sc.name)'s pool is \(sc.target) but the allocation holds \(slots!) processes (--slots): \(room) more started")
                }
                for _ in running..<(running + min(room, Int(sc.target) - running)) {
                    do { try startWorker(scene: sc.name) } catch { say("local.sh: cannot start a worker of \(sc.name): \(error)") }
                }
                say("== scene \(sc.name): \(sc.target) workers")
            }
        }
    }

    func finish() -> Int32 {
        // Workers hear "job done" at their next lease request; give them time, then stop them.
        let end = Date().addingTimeInterval(30)
        while workers.contains(where: { $0.exitStatus == nil }) && Date() < end { Thread.sleep(forTimeInterval: 0.1) }
        for w in workers where w.exitStatus == nil { w.terminate() }
        for (i, ep) in plan.servers.enumerated() {
            _ = try? link(ep, "shutdown-\(i)", attempt: .seconds(1), patience: .seconds(2))?.call(.shutdown(reason: "the job is over"))
        }
        let stopBy = Date().addingTimeInterval(10)
        while servers.contains(where: { $0.exitStatus == nil }) && Date() < stopBy { Thread.sleep(forTimeInterval: 0.1) }
        stopAll()
        out.flush(children: servers + workers + [coordinator].compactMap { $0 })
        let summaryPath = (runDir as NSString).appendingPathComponent("summary.json")
        say("== done in \(Int(Date().timeIntervalSince(started))) s; results: \(summaryPath)")
        writeReport()
        // The coordinator printed the results before the workers and servers stopped; the last thing a user
        // sees is them again, not the processes' shutdown lines.
        if let summary = try? JSONFile.read(RunSummary.self, from: summaryPath) {
            let how = summary.validAUC == nil ? "the last (no validation split)" : "chosen by validation AUC"
            say("== test metrics at epoch \(summary.bestEpoch ?? summary.epoch) of \(summary.epochsTrained ?? summary.epoch), \(how):")
            for line in summary.table().split(separator: "\n") { say("   " + line) }
        }
        return 0
    }

    /// RUN_DIR/report.html (psctl report), at the end of a job however it ended; a report that cannot be
    /// written is said, and changes nothing about the job's exit status.
    func writeReport() {
        let path = (runDir as NSString).appendingPathComponent("report.html")
        do {
            let r = try RunReport.load(runDir: runDir)
            try r.write(to: path)
            say("== report: \(path)" + (r.notes.isEmpty ? "" : " (\(r.notes.count) part\(r.notes.count == 1 ? "" : "s") missing or damaged, listed at its top)"))
        } catch {
            say("== no report: \(error)")
        }
    }

    /// How long a stop (Ctrl-C, SIGTERM) waits for its checkpoint.
    static let stopCheckpointSeconds = 20.0

    /// Asked to stop: an on-demand checkpoint of the job first (tagged `stop`), so `--resume` goes on
    /// from this moment rather than from the last periodic one. Bounded by `stopCheckpointSeconds`; a
    /// second signal, a coordinator that is gone or refuses, and the stop goes on without it (the
    /// latest complete checkpoint stays the latest).
    func checkpointBeforeStopping(_ signals: SignalWatch) {
        let first = signals.count
        let end = Date().addingTimeInterval(Self.stopCheckpointSeconds)
        func goOn() -> Bool { Date() < end && signals.count == first && coordinator?.exitStatus == nil }
        guard let calls = coordinatorCalls else { return }
        var ticket: UInt64?
        while ticket == nil && goOn() {
            do { ticket = try calls.checkpoint(CoordinatorCheckpointRequest(ticket: 0, tags: "stop")).ticket } catch let e as CoordinatorError {
                return say("== no checkpoint before stopping: \(e); the latest complete one stays")
            } catch { Thread.sleep(forTimeInterval: 0.1) }
        }
        while let t = ticket, goOn() {
            guard let r = try? calls.checkpoint(CoordinatorCheckpointRequest(ticket: t)) else { continue }
            switch r.state {
            case .done:
                return say("== checkpoint \(r.path) taken before stopping: cluster/local.sh --run-dir \(runDir) --resume goes on from it")
            case .failed:
                return say("== the checkpoint before stopping failed (\(r.message)); the latest complete one stays")
            case .pending:
                Thread.sleep(forTimeInterval: 0.1)
            }
        }
        say("== no checkpoint before stopping (\(signals.count != first ? "stopped at once" : "none within \(Int(Self.stopCheckpointSeconds)) s")); the latest complete one stays")
    }

    func stopAll() {
        watch?.stop()
        let all = servers + workers + [coordinator].compactMap { $0 }
        for c in all where c.exitStatus == nil { c.terminate() }
        let end = Date().addingTimeInterval(5)
        while all.contains(where: { $0.exitStatus == nil }) && Date() < end { Thread.sleep(forTimeInterval: 0.05) }
        for c in all where c.exitStatus == nil { c.kill() }
        out.flush(children: all)
    }
}
