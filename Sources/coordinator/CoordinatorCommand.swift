import ArgumentParser
import Foundation
import Logging
import ScenePSCoordinator
import ScenePSCore
import ScenePSTransport
import ScenePSMetrics

@main
struct CoordinatorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator",
        abstract: "Owns a training job's control state: membership, data leases, epochs, evaluation, early stopping.",
        discussion: """
            Workers register with it, lease chunks of their scene's training data, report them done and \
            send beats; a worker silent for longer than --dead-after is declared dead and its lease goes back \
            to the queue. An epoch ends when every chunk of every scene is done, exactly once; the coordinator \
            then scores the validation and test splits, lets the learning-rate schedule decide, writes \
            RUN_DIR/epochs/epoch-N.json and RUN_DIR/summary.json, and starts the next epoch or ends the job \
            (workers are told, and exit 0). Its state is journaled in RUN_DIR/coordinator/state.json: started \
            again with the same run directory, it carries on where it stopped. Pools change with \
            `psctl scale`. Exits 0 when training is over. See docs/COORDINATOR.md.
            """)

    @Option(help: "Cluster config file (YAML).") var config: String
    @Option(help: "Prepared data set directory (psctl prepare --out).") var data: String
    @Option(help: "Comma-separated server endpoints, in shard order.") var servers: String
    @Option(help: "Run directory: the journal, summary.json and epochs/ go there.") var runDir: String
    @Option(help: "ZeroMQ endpoint to bind, e.g. tcp://127.0.0.1:17202, or tcp://0.0.0.0:17202 for every interface.") var bind: String
    @Option(help: "The endpoint workers and psctl connect to, e.g. tcp://coordinator.default.svc:17202 (default: the bound endpoint, with this host's `hostname -f` name in place of a wildcard host); written to RUN_DIR/coordinator/endpoint.")
    var advertise: String?
    @Option(help: "A member silent this many seconds is declared dead (its lease is re-leased).") var deadAfter: Double = 3
    @Option(help: "Members send a beat at least this often (milliseconds).") var heartbeatMs: Int = 500
    @Option(help: "The servers' --checkpoint-dir: the coordinator takes checkpoints there (config `checkpoint`). Without it, none.")
    var checkpointDir: String?
    @Option(help: "Resume: the job's state (epoch, chunks done, schedule) from this checkpoint directory's manifest, not the journal.")
    var restoreProgress: String?
    @Option(help: "Who sizes each scene's pool of workers: `launcher` (the config's workers_per_scene/scenes, changed by psctl scale; workers over the size retire; psctl supervise starts the rest) or `registered` (whoever registers for a scene is its pool and nobody is retired: for an engine that owns the processes, e.g. a Kubernetes Deployment per scene sized by kubectl scale; psctl scale is then refused).")
    var pools: String = PoolPolicy.launcher.rawValue
    @Option(help: "Each scene's pool size for a new job, e.g. home=2,shop=1 (psctl supervise passes its plan: the config's `scenes` and `workers_per_scene`, or --workers-per-scene); scenes not listed get the config's. A journal or --restore-progress keeps its own sizes.")
    var workers: String?
    @Option(help: "Log level: trace, debug, info, notice, warning, error.") var logLevel: String = "info"
    @Option(help: "Job key directory (psctl keys --out DIR): accept only CURVE clients its `authorized` file lists (workers may register, lease, beat and leave; only the admin key may scale, checkpoint or recover), and reach the servers with admin.key (docs/SECURITY.md). Without it, plain TCP.")
    var keys: String?
    @OptionGroup var metrics: MetricsOptions

    func validate() throws {
        guard deadAfter > 0 else { throw ValidationError("--dead-after must be positive") }
        guard heartbeatMs > 0, Double(heartbeatMs) / 1000 < deadAfter else {
            throw ValidationError("--heartbeat-ms must be positive and shorter than --dead-after")
        }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("--log-level: unknown level '\(logLevel)'") }
        guard !endpoints.isEmpty else { throw ValidationError("--servers needs at least one endpoint") }
        for (i, e) in endpoints.enumerated() {
            if let why = Endpoint.problemAsAdvertised(e) {
                throw ValidationError("--servers: endpoint \(i) (server-\(i)): \(why); list the servers' advertised endpoints")
            }
        }
        if let a = advertise, let why = Endpoint.problemAsAdvertised(a) { throw ValidationError("--advertise: \(why)") }
        _ = try workerSizes()
        guard PoolPolicy(rawValue: pools) != nil else {
            throw ValidationError("--pools must be one of \(PoolPolicy.allCases.map(\.rawValue).joined(separator: ", ")), got '\(pools)'")
        }
    }

    /// `--workers home=2,shop=1` as scene → size.
    func workerSizes() throws -> [String: Int] {
        var sizes: [String: Int] = [:]
        for part in (workers ?? "").split(separator: ",") {
            let kv = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard kv.count == 2, !kv[0].isEmpty, let n = Int(kv[1]), (0...64).contains(n) else {
                throw ValidationError("--workers: '\(part)' is not SCENE=N with N in 0...64 (e.g. home=2,shop=1)")
            }
            guard sizes[kv[0]] == nil else { throw ValidationError("--workers: scene '\(kv[0])' given twice") }
            sizes[kv[0]] = n
        }
        return sizes
    }

    var endpoints: [String] { servers.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }

    func run() throws {
        let level = Logger.Level(rawValue: logLevel)!
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let logger = Logger(label: "coordinator")
        do {
            let curve = try keys.map { try CurveKeys.server(dir: $0) }
            let clientCurve = try keys.map { try CurveKeys.client(dir: $0, role: .admin) }
            let endpoint = try metrics.endpoint(logger: logger)
            defer { endpoint?.stop() }
            let cfg = try ClusterConfig.load(path: config)
            var options = CoordinatorService.Options(bind: bind, runDir: runDir, dataDir: data, servers: endpoints)
            options.membership = MembershipSettings(heartbeatMs: UInt32(heartbeatMs), deadAfterSeconds: deadAfter)
            options.checkpointDir = checkpointDir.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
            options.restoreProgress = restoreProgress
            options.pools = PoolPolicy(rawValue: pools)!
            options.workers = try workerSizes()
            options.curve = curve
            options.clientCurve = clientCurve
            options.keysDir = keys
            options.advertise = advertise
            let service = try CoordinatorService(options: options, config: cfg, logger: logger)
            if let e = endpoint {
                service.attachMetrics(CoordinatorMetrics(registry: e.registry), onScrape: e.onScrape)
                e.startAnnounced()
            }
            let status = try service.run()
            if status != 0 { throw ExitCode(status) }
        } catch let e as ExitCode {
            throw e
        } catch {
            FileHandle.standardError.write(Data("coordinator: error: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
