import ArgumentParser
import Foundation
import Logging
import ScenePSClient
import ScenePSCoordinator
import ScenePSCore
import ScenePSProtocol

/// The coordinator of a run directory's live job.
enum LiveJob {
    static func calls(runDir: String, sender: String, keys: AdminKeysOption = AdminKeysOption()) throws -> (CoordinatorCalls, String) {
        let file = CoordinatorFiles.endpoint(runDir)
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw ScenePSError.invalidArgument("\(runDir) has no live job: \(file) does not exist (was a job started with this run directory?)")
        }
        let endpoint = text.trimmingCharacters(in: .whitespacesAndNewlines)
        var logger = Logger(label: "psctl")
        logger.logLevel = .error
        let link = try ZMQCoordinatorLink(endpoint: endpoint, sender: "\(sender)-\(getpid())", attemptTimeout: .seconds(1),
                                          patience: .seconds(3), curve: try keys.admin(runDir: runDir), logger: logger)
        return (CoordinatorCalls(link), endpoint)
    }

    /// Runs `body`; a coordinator that does not answer means no live job.
    static func with<R>(runDir: String, sender: String, keys: AdminKeysOption = AdminKeysOption(),
                        _ body: (CoordinatorCalls) throws -> R) throws -> R {
        let (calls, endpoint) = try calls(runDir: runDir, sender: sender, keys: keys)
        do { return try body(calls) } catch let e as ScenePSError where e.code == .timeout {
            throw ScenePSError.invalidArgument("\(runDir) has no live job: its coordinator (\(endpoint)) does not answer")
        } catch let e as CoordinatorError {
            throw ScenePSError.invalidArgument("\(e)")
        }
    }
}

struct Scale: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Grow or shrink one scene's pool of workers while the job runs.",
        discussion: """
            Tells the job's coordinator the scene's new pool size. Growing: the launcher (cluster/local.sh) \
            starts the new workers, which register and lease. Shrinking: the workers over the size finish the \
            chunk in hand (or give it back) and exit 0; no chunk is lost or trained twice. 0 is allowed: the \
            scene then waits (psctl status shows it) until it is scaled up again. Recorded in summary.json's \
            `scaling`.
            """)

    @Option(help: "Run directory of the live job.") var runDir: String
    @Option(help: "The scene whose pool changes.") var scene: String
    @Option(help: "Its new number of workers (0 or more).") var workers: Int
    @OptionGroup var keys: AdminKeysOption

    func run() throws {
        try reportingErrors {
            guard workers >= 0 else { throw ScenePSError.invalidArgument("--workers must be 0 or more, got \(workers)") }
            let before = try LiveJob.with(runDir: runDir, sender: "psctl-scale", keys: keys) { calls -> Int32 in
                let s = try calls.status()
                guard let sc = s.scenes.first(where: { $0.name == scene }) else {
                    throw ScenePSError.invalidArgument("scene '\(scene)' is not in this job (its scenes: \(s.scenes.map(\.name).joined(separator: ", ")))")
                }
                try calls.scale(scene: scene, workers: workers)
                return sc.target
            }
            print("scene \(scene): pool \(before < 0 ? "unset" : String(before)) -> \(workers) workers")
        }
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a live job: its epoch, every scene's pool and chunks, every member.")

    @Option(help: "Run directory of the live job.") var runDir: String
    @OptionGroup var keys: AdminKeysOption

    func run() throws {
        try reportingErrors {
            let s = try LiveJob.with(runDir: runDir, sender: "psctl-status", keys: keys) { try $0.status() }
            print("epoch \(s.epoch): \(s.phase)")
            print("scene            pool  live  chunks  done  leased")
            for sc in s.scenes {
                let name = sc.name.padding(toLength: max(15, sc.name.count), withPad: " ", startingAt: 0)
                print(name + String(format: "  %4@  %4d  %6d  %4d  %6d%@", sc.target < 0 ? "-" : "\(sc.target)" as NSString,
                                    sc.liveWorkers, sc.chunks, sc.chunksDone, sc.chunksLeased,
                                    sc.waiting ? "  waiting: no worker" : ""))
            }
            for m in s.members {
                print(String(format: "member %llu %@ (scene %@): lease %llu, last heard %.1f s ago", m.memberID, m.name, m.scene,
                             m.leaseID, m.silentSeconds))
            }
            if !s.message.isEmpty { print("last event: \(s.message)") }
        }
    }
}
