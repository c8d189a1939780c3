import ArgumentParser
import Foundation
import Logging
import ScenePSClient
import ScenePSCore
import ScenePSTransport
import ScenePSMetrics
import ScenePSWorker

@main
struct Worker: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Trains the model on chunks of one scene leased from the coordinator, against the ScenePS servers.",
        discussion: """
            A worker registers with the coordinator (which tells it the servers), then leases a chunk of its \
            scene's training data, pulls the rows and dense parameters each minibatch needs, computes the loss \
            and gradients, pushes them (the servers apply Adam), reports the chunk done and leases the next; \
            workers never wait for each other, except that a scene far ahead of the others waits for them \
            (training.max_progress_lead). It exits 0 when the coordinator says training is over or that its \
            scene's pool shrank, and non-zero on any error, including a non-finite loss (nothing is pushed \
            then). Start as many as a scene needs, at any time; a worker that dies loses nothing but the chunk \
            in hand, which the coordinator leases again. See docs/COORDINATOR.md.
            """)

    @Option(help: "Cluster config file (YAML, see cluster/default.yaml).")
    var config: String

    @Option(help: "Prepared data set directory (psctl prepare --out).")
    var data: String

    @Option(help: "The coordinator's endpoint, e.g. tcp://127.0.0.1:17202.")
    var coordinator: String

    @Option(help: "The scene this worker trains on, or * for every scene.")
    var scene: String

    @Option(help: "This worker's name, stable across its restarts (default: SCENE-PID).")
    var name: String?

    @Option(help: "Workers sharing this machine's cores (the launcher's count; 0 = unknown). With training.prefetch: auto, the worker prefetches when there are at most two workers per core.")
    var hostWorkers: Int = 0

    @Option(help: "How long to keep retrying a coordinator that does not answer before giving up (seconds).")
    var coordinatorPatience: Double = 120

    @Option(help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: String = "info"

    @Option(help: "Job key directory (psctl keys --out DIR): talk CURVE to the coordinator and the servers with its worker.key and server.pub (docs/SECURITY.md). Without it, plain TCP.")
    var keys: String?
    @Option(help: ArgumentHelp("Append this worker's progress to FILE as JSON lines (a start line, then one per progress line: time, epoch, step, examples, examples_per_sec, loss, running_auc), for `psctl report`; cluster/local.sh gives RUN_DIR/workers/NAME.jsonl.", valueName: "FILE"))
    var progressFile: String?
    @OptionGroup var metrics: MetricsOptions

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("--log-level: unknown level '\(logLevel)'") }
        guard !coordinator.isEmpty else { throw ValidationError("--coordinator needs an endpoint") }
        guard coordinatorPatience > 0 else { throw ValidationError("--coordinator-patience must be positive") }
    }

    func run() throws {
        MemoryTuning.keepFreedMemory()
        let me = name ?? "\(scene == "*" ? "all" : scene)-\(getpid())"
        var logger = Logger(label: "worker.\(me)")
        logger.logLevel = Logger.Level(rawValue: logLevel)!
        var member: WorkerMember?
        let endpoint: MetricsEndpoint?
        do { endpoint = try metrics.endpoint(logger: logger) } catch {
            FileHandle.standardError.write(Data("worker \(me): error: \(error)\n".utf8))
            throw ExitCode(1)
        }
        defer { endpoint?.stop() }
        // Opened before anything starts: a progress file that cannot be written is an error naming it.
        let progress: ProgressFile?
        do { progress = try progressFile.map { try ProgressFile(path: $0, worker: me, scene: scene) } } catch {
            FileHandle.standardError.write(Data("worker \(me): error: \(error)\n".utf8))
            throw ExitCode(1)
        }
        do {
            let curve = try keys.map { try CurveKeys.client(dir: $0, role: .worker) }
            var cfg = try ClusterConfig.load(path: config)
            cfg.training.prefetch = cfg.training.prefetchEnabled(hostWorkers: hostWorkers,
                                                                 cores: ProcessInfo.processInfo.activeProcessorCount)
            let sender = "worker-\(me)-\(getpid())"
            func link(_ suffix: String, attempt: Duration, patience: Duration) throws -> ZMQCoordinatorLink {
                try ZMQCoordinatorLink(endpoint: coordinator, sender: sender + suffix, attemptTimeout: attempt,
                                       patience: patience, curve: curve, logger: logger)
            }
            let m = WorkerMember(name: me, scene: scene,
                                 link: try link("", attempt: .seconds(2), patience: .milliseconds(Int64(coordinatorPatience * 1000))),
                                 beatLink: try link("-beat", attempt: .seconds(1), patience: .seconds(1)),
                                 paceLink: try link("-pace", attempt: .milliseconds(500), patience: .seconds(1)),
                                 logger: logger)
            member = m
            let reg = try m.register()
            m.startBeating()
            logger.info("starting", metadata: ["version": "\(ScenePSVersion.string)", "config": "\(config)",
                                               "servers": "\(reg.servers.count)", "model": "\(cfg.model.kind.rawValue)",
                                               "ablation": "\(cfg.model.ablation.rawValue)",
                                               "compute_threads": "\(cfg.training.computeThreads)",
                                               "prefetch": "\(cfg.training.prefetch!)", "host_workers": "\(hostWorkers)"])
            let client = try PSClient.forModel(endpoints: reg.servers, sender: sender, config: cfg, role: "worker", scene: scene,
                                               curve: curve, logger: logger)
            let trainer = try Trainer(config: cfg, dataDir: data, name: me, client: client, logger: logger, times: m.times)
            trainer.progressFile = progress
            if let e = endpoint {
                let wm = WorkerMetrics(registry: e.registry, worker: me, scene: scene)
                client.metrics = wm.client
                trainer.metrics = wm
                wm.collect(alignmentWaited: m.waitedSecondsReader, on: e.onScrape)
                e.startAnnounced()
            }
            var lastEpoch = 0
            let end = try m.serve(lead: cfg.training.maxProgressLead) { lease, pace in
                lastEpoch = Int(lease.epoch)
                return try trainer.train(lease, pace: pace)
            }
            m.stop()
            trainer.logProgress(epoch: lastEpoch)
            let why: String
            switch end { case .jobDone(let r): why = r; case .retired(let r): why = "retired: \(r)" }
            var stages: Logger.Metadata = [:]
            for (k, v) in m.times.snapshot.sorted(by: { $0.key < $1.key }) {
                stages["time." + k] = "\(k.hasPrefix("count.") ? String(format: "%.0f", v) : String(format: "%.3f", v))"
            }
            logger.info("time per stage (seconds; waits as wait.REASON)", metadata: stages)
            logger.info("done", metadata: ["examples": "\(trainer.examples)", "steps": "\(trainer.steps)",
                                           "waited_seconds": "\(String(format: "%.1f", m.waitedSeconds))",
                                           "cpu_seconds": "\(String(format: "%.2f", ProcessStats.cpuSeconds))", "why": "\(why)"])
        } catch {
            member?.stop()
            member?.leave(reason: "\(error)")
            logger.error("failed", metadata: ["error": "\(error)"])
            FileHandle.standardError.write(Data("worker \(me): error: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
