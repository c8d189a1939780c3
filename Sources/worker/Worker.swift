import ArgumentParser
import Foundation
import Logging
import ScenePSCore
import ScenePSWorker

@main
struct Worker: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Trains the model on one scene's share of the data against the ScenePS servers.",
        discussion: """
            A worker reads the prepared chunks of its scene (every COUNT-th chunk, starting at INDEX), \
            pulls the rows and dense parameters each minibatch needs, computes the loss and gradients, \
            and pushes them; the servers apply Adam. Workers never wait for each other. \
            It trains one epoch, at the learning rate RUN_DIR/schedule.json gives for it (the full rate without one); \
            when done it writes RUN_DIR/workers/epoch-N/SCENE-INDEX.json. Exits non-zero on any error, \
            including a non-finite loss (nothing is pushed then).
            """)

    @Option(help: "Cluster config file (YAML, see cluster/default.yaml).")
    var config: String

    @Option(help: "Prepared data set directory (psctl prepare --out).")
    var data: String

    @Option(help: "Comma-separated server endpoints, in shard order (tcp://127.0.0.1:17200,...).")
    var servers: String

    @Option(help: "The scene this worker trains on, or * for every scene (one worker for the whole data set).")
    var scene: String

    @Option(help: "This worker's index among its scene's workers (0-based).")
    var index: Int = 0

    @Option(help: "How many workers its scene has.")
    var count: Int = 1

    @Option(help: "The epoch to train (1-based): one pass over this worker's chunks, shuffled by a seed that includes it.")
    var epoch: Int = 1

    @Option(help: "Run directory; the worker's report goes to RUN_DIR/workers/epoch-N/SCENE-INDEX.json.")
    var runDir: String?

    @Option(help: "Workers sharing this machine's cores (the launcher's count; 0 = unknown). With training.prefetch: auto, the worker prefetches when every worker has a core of its own.")
    var hostWorkers: Int = 0

    @Option(help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: String = "info"

    func validate() throws {
        guard epoch >= 1 else { throw ValidationError("--epoch must be at least 1") }
        guard count >= 1 else { throw ValidationError("--count must be at least 1") }
        guard index >= 0 && index < count else { throw ValidationError("--index must be in 0..<\(count)") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("--log-level: unknown level '\(logLevel)'") }
        guard !endpoints.isEmpty else { throw ValidationError("--servers needs at least one endpoint") }
    }

    var endpoints: [String] { servers.split(separator: ",").map { String($0.trimmingCharacters(in: .whitespaces)) }.filter { !$0.isEmpty } }

    func run() throws {
        MemoryTuning.keepFreedMemory()
        let identity = WorkerIdentity(scene: scene, index: index, count: count)
        var logger = Logger(label: "worker.\(identity.name)")
        logger.logLevel = Logger.Level(rawValue: logLevel)!
        do {
            var cfg = try ClusterConfig.load(path: config)
            cfg.training.prefetch = cfg.training.prefetchEnabled(hostWorkers: hostWorkers,
                                                                 cores: ProcessInfo.processInfo.activeProcessorCount)
            logger.info("starting", metadata: ["version": "\(ScenePSVersion.string)", "config": "\(config)",
                                               "servers": "\(endpoints.count)", "model": "\(cfg.model.kind.rawValue)",
                                               "ablation": "\(cfg.model.ablation.rawValue)",
                                               "compute_threads": "\(cfg.training.computeThreads)",
                                               "prefetch": "\(cfg.training.prefetch!)", "host_workers": "\(hostWorkers)"])
            let store = try PSClientStore(endpoints: endpoints, sender: "worker-\(identity.name)-\(getpid())",
                                          config: cfg, role: "worker", scene: scene, logger: logger)
            let trainer = try Trainer(config: cfg, dataDir: data, identity: identity, store: store, logger: logger)
            // The rate of this epoch: the schedule `psctl evaluate` keeps in the run directory.
            let level = try runDir.map { try LearningRateSchedule.load(runDir: $0).level(ofEpoch: epoch) } ?? 0
            let report = try trainer.run(epoch: epoch, lrLevel: level)
            if let runDir {
                let dir = (runDir as NSString).appendingPathComponent("workers/epoch-\(epoch)")
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                try JSONFile.write(report, to: (dir as NSString).appendingPathComponent("\(identity.name).json"))
            }
            logger.info("done", metadata: ["examples": "\(report.examples)", "steps": "\(report.steps)",
                                           "examples_per_sec": "\(Int(report.examplesPerSec))"])
        } catch {
            logger.error("failed", metadata: ["error": "\(error)"])
            FileHandle.standardError.write(Data("worker \(identity.name): error: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
