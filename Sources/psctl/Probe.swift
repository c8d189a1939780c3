import ArgumentParser
import Foundation
import Logging
import ScenePSClient
import ScenePSCore
import ScenePSProtocol

/// A health probe for engines that run ScenePS processes (Kubernetes readiness and liveness probes,
/// scripts): exits 0 only when the process answers as ready.
struct Probe: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Exit 0 when a ScenePS process answers as ready (for Kubernetes probes and scripts), else 1.",
        discussion: """
            --endpoint E alone: a ps-server or the coordinator at E answers a heartbeat within --timeout. A \
            server answers only once it has bound and restored its shard (ps-server --restore runs before it \
            serves), so this is "serving". With --member NAME, E is the coordinator and the probe passes only \
            when NAME is one of its registered members (a worker's readiness: registered and leasing). \
            --member with --coordinator-away-ok also passes when the coordinator does not answer, so that a \
            worker's liveness probe does not restart every worker while the coordinator itself restarts; it \
            fails when the coordinator answers and does not know NAME (the worker lost its membership and has \
            not registered again). Exit 1 names what did not answer or what was missing.
            """)

    @Option(help: "The process to ask: a ps-server's or the coordinator's advertised endpoint, e.g. tcp://ps-0.ps:7000.")
    var endpoint: String
    @Option(help: "With the coordinator's endpoint: pass only when this worker name (worker --name) is a registered member.")
    var member: String?
    @Flag(help: "With --member: also pass when the coordinator does not answer (for a worker's liveness probe).")
    var coordinatorAwayOk = false
    @Option(help: "Seconds to wait for an answer.") var timeout: Double = 2

    func validate() throws {
        guard timeout > 0 && timeout <= 60 else { throw ValidationError("--timeout must be in (0, 60] seconds, got \(timeout)") }
        guard endpoint.hasPrefix("tcp://") || endpoint.hasPrefix("ipc://") else {
            throw ValidationError("--endpoint must be a ZeroMQ endpoint such as tcp://ps-0.ps:7000, got '\(endpoint)'")
        }
        if coordinatorAwayOk && member == nil { throw ValidationError("--coordinator-away-ok goes with --member NAME") }
    }

    func run() throws {
        var logger = Logger(label: "psctl-probe")
        logger.logLevel = .critical
        let ms = Int64(timeout * 1000)
        let link: ZMQCoordinatorLink
        do {
            link = try ZMQCoordinatorLink(endpoint: endpoint, sender: "psctl-probe-\(getpid())", attemptTimeout: .milliseconds(ms),
                                          patience: .milliseconds(ms), logger: logger)
        } catch {
            printError("psctl probe: not ready: cannot open a socket to \(endpoint): \(error)")
            throw ExitCode(1)
        }
        guard let member else {
            guard (try? link.call(.heartbeat(Heartbeat()))) != nil else {
                printError("psctl probe: not ready: \(endpoint) did not answer a heartbeat within \(timeout) s")
                throw ExitCode(1)
            }
            print("ready: \(endpoint) answers")
            return
        }
        let status: StatusReply
        do { status = try CoordinatorCalls(link).status() } catch {
            if coordinatorAwayOk {
                print("alive: the coordinator at \(endpoint) does not answer (\(error)); not held against \(member)")
                return
            }
            printError("psctl probe: not ready: the coordinator at \(endpoint) did not answer a status request within \(timeout) s: \(error)")
            throw ExitCode(1)
        }
        guard let m = status.members.first(where: { $0.name == member }) else {
            printError("psctl probe: not ready: \(member) is not a registered member of the coordinator at \(endpoint) (\(status.members.count) members, phase \(status.phase))")
            throw ExitCode(1)
        }
        print("ready: \(member) is member \(m.memberID) of scene \(m.scene)" + (m.leaseID != 0 ? ", training lease \(m.leaseID)" : ""))
    }
}
