import ArgumentParser
import Foundation
import Logging
import ScenePSCoordinator
import ScenePSCore
import ScenePSProtocol

/// How many lease round trips the coordinator serves per second: N members,
/// each leasing a chunk and reporting it done in its next request, against
/// the coordinator's logic with its real journal (written atomically after
/// every change), in-process, with and without the journal.
@main
struct CoordinatorBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator-bench",
        abstract: "Lease round trips per second of the coordinator, with its journal, in-process, with and without the journal.")

    @Option(help: "Chunks per scene (4 scenes).") var chunks: Int = 2000
    @Option(help: "Members (round-robin over the scenes).") var members: Int = 16
    @Option(help: "Seconds per measurement.") var seconds: Double = 3
    @Option(help: "Directory for the journal (default: a temporary one).") var dir: String?

    func run() throws {
        let work = dir ?? (NSTemporaryDirectory() as NSString).appendingPathComponent("coordinator-bench-\(getpid())")
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { if dir == nil { try? FileManager.default.removeItem(atPath: work) } }
        let plan = LeasePlan(scenes: ["home", "search", "video", "shop"].map { name in
            .init(name: name, chunks: (0..<chunks).map { .init(file: "\(name)/\($0)", examples: 1000) })
        }, servers: ["tcp://127.0.0.1:1"], seed: 1, maxProgressLead: 0)
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        let path = (work as NSString).appendingPathComponent("state.json")

        // In-process: the logic and the journal, no sockets.
        let c = Coordinator(plan: plan, settings: MembershipSettings(), journal: CoordinatorJournal(startedAt: 0), now: 0, logger: logger)
        c.persist = { try JSONFile.write($0, to: path, sync: false) }
        let inProcess = try measure(members: members, seconds: seconds, afterRound: { try nextEpoch(c) }) { body in c.handle(body, now: Date().timeIntervalSince1970) }
        print(String(format: "in-process, journal on: %.0f lease round trips/s (%d members)", inProcess, members))

        // Group commit, as the service does: one write per round of requests.
        let c3 = Coordinator(plan: plan, settings: MembershipSettings(), journal: CoordinatorJournal(startedAt: 0), now: 0, logger: logger)
        c3.persist = { try JSONFile.write($0, to: path, sync: false) }
        c3.deferPersist = true
        let grouped = try measure(members: members, seconds: seconds, afterRound: { try c3.flush(); try nextEpoch(c3) }) { body in
            c3.handle(body, now: Date().timeIntervalSince1970)
        }
        print(String(format: "in-process, journal on, one write per round of %d requests: %.0f lease round trips/s", members, grouped))

        // Without the journal: the logic alone.
        let c2 = Coordinator(plan: plan, settings: MembershipSettings(), journal: CoordinatorJournal(startedAt: 0), now: 0, logger: logger)
        let logic = try measure(members: members, seconds: seconds, afterRound: { try nextEpoch(c2) }) { body in c2.handle(body, now: Date().timeIntervalSince1970) }
        print(String(format: "in-process, journal off: %.0f lease round trips/s", logic))
    }

    /// Epochs never wait for evaluation here: every request is a lease or a report.
    func nextEpoch(_ c: Coordinator) throws {
        if c.epochToEvaluate != nil {
            try c.epochEvaluated(schedule: c.journal.schedule, stop: false, outcome: "", now: Date().timeIntervalSince1970)
        }
    }

    func measure(members: Int, seconds: Double, afterRound: () throws -> Void = {}, _ call: (Body) -> Body) throws -> Double {
        var ids: [UInt64] = []
        for i in 0..<members {
            let scene = ["home", "search", "video", "shop"][i % 4]
            guard case .registerReply(let r) = call(.register(Register(name: "m\(i)-\(UUID())", scene: scene, incarnation: "1"))) else {
                throw ScenePSError(.internalError, "registration failed")
            }
            ids.append(r.memberID)
        }
        var held: [UInt64: LeaseReply] = [:]
        var n = 0
        let t0 = Date()
        while Date().timeIntervalSince(t0) < seconds {
            for m in ids {
                var req = LeaseRequest(memberID: m)
                if let d = held[m] { req.doneLease = d.leaseID; req.doneExamples = d.chunkExamples }
                if case .leaseReply(let r) = call(.leaseRequest(req)) { held[m] = r.kind == .chunk ? r : nil }
                n += 1
            }
            try afterRound()
        }
        return Double(n) / Date().timeIntervalSince(t0)
    }
}
