import ArgumentParser
import Foundation
import Logging
import ScenePSClient
import ScenePSCore
import ScenePSProtocol
import ScenePSServer
import ScenePSTransport
#if canImport(Glibc)
import Glibc
#endif

/// Runs a whole job on this machine, as Kubernetes would run it on many:
/// starts the servers and the coordinator, keeps each scene's pool at the
/// size the coordinator asks for, restarts what dies when told to, and stops
/// everything at the end (cluster/local.sh runs it; docs/COORDINATOR.md).
struct Supervise: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a local job: servers, coordinator and workers, supervised (cluster/local.sh runs this).",
        discussion: """
            Starts the servers and waits until each answers, then the coordinator, then every scene's workers. \
            Every process's output is prefixed with its name and copied to RUN_DIR/logs/NAME.log. While the job \
            runs it keeps every scene's pool at the size the coordinator holds (psctl scale changes it): it \
            starts workers when a pool grows; workers over the size retire by themselves. A worker or the \
            coordinator that dies is restarted with --restart-on-failure (at most --max-restarts times each); \
            so is a server, from the latest checkpoint, as the config's `recovery` says (partial: only it, with \
            its shard; global: every server from that cut, and the coordinator's data progress rewound to it). \
            Without the flag, everything is stopped and the exit status is 1, naming the process. Exits 0 when \
            the coordinator ends the job. Ctrl-C / SIGTERM stop every process.
            """)

    @Option(help: "Directory of the ps-server, worker and coordinator executables.") var bin: String
    @Option(help: "Cluster config file (YAML).") var config: String
    @Option(help: "Prepared data set directory.") var data: String
    @Option(help: "Run directory (logs, journal, summary.json).") var runDir: String
    @Option(help: "Number of servers (overrides `servers`).") var servers: Int?
    @Option(help: "Workers for each scene the config does not size (overrides `workers_per_scene`).") var workersPerScene: Int?
    @Option(help: "Server i listens on tcp://127.0.0.1:(base-port + i), the coordinator on the next port (with --hosts: on their hosts' addresses).") var basePort: Int?
    @Option(help: "Hosts file (YAML): which hosts run the servers, the coordinator and each scene's workers, each host's address and how to start a process there (ssh by default, or a command prefix such as `ip netns exec NS`). Every host must see the bin, data and run directories at the same paths. Without it every process runs here. See docs/DEPLOY.md.")
    var hosts: String?
    @Flag(help: "Restart a worker or the coordinator that dies (as Kubernetes would).") var restartOnFailure = false
    @Option(help: "Job key directory (psctl keys --out DIR): every process talks CURVE (encrypted; servers and coordinator accept only the listed keys; workers get the worker key, the supervisor uses the admin key). docs/SECURITY.md.")
    var keys: String?
    @Option(help: "With --restart-on-failure: restarts allowed per process.") var maxRestarts: Int = 3
    @Option(help: "The coordinator declares a worker dead after this many seconds of silence.") var deadAfter: Double = 3
    @Option(help: "A server whose process runs but that has not answered a heartbeat for this many seconds (its host's link cut) is stopped and recovered as a dead one (with --restart-on-failure).")
    var serverDeadAfter: Double = 10
    @Option(help: "Resume the job of RUN_DIR from a checkpoint: `latest`, `latest-good` (the newest that passes every check) or a path. Servers restore it (onto any number of servers), the coordinator takes its data progress.")
    var resumeFrom: String?
    @Option(help: "Processes the allocation can hold (a Slurm job's SLURM_NTASKS: cluster/slurm/sceneps.sbatch passes it). A job that needs more (servers + the coordinator + every scene's workers) is refused before anything starts, and a pool is not grown past it.")
    var slots: Int?
    @Option(help: "Metrics (docs/OBSERVING.md): the supervisor serves Prometheus metrics on this port and gives each process the next free one up (P+1, P+2, ...); RUN_DIR/metrics/targets.json lists them for Prometheus's file_sd. Off when not given.")
    var metricsBasePort: Int?
    @Option(help: "With --metrics-base-port: the address the metrics ports bind.") var metricsHost: String = "127.0.0.1"

    func validate() throws {
        if let servers, servers < 1 { throw ValidationError("--servers must be at least 1") }
        if let slots, slots < 1 { throw ValidationError("--slots must be at least 1") }
        if let workersPerScene, workersPerScene < 0 { throw ValidationError("--workers-per-scene must be 0 or more") }
        guard maxRestarts >= 0 else { throw ValidationError("--max-restarts must be 0 or more") }
        guard serverDeadAfter >= 2 else { throw ValidationError("--server-dead-after must be at least 2 seconds (a heartbeat is asked once a second)") }
        if let p = metricsBasePort, !(1...65000).contains(p) { throw ValidationError("--metrics-base-port must be in 1...65000, got \(p)") }
    }

    func run() throws {
        try reportingErrors {
            let plan = try ClusterPlan(configPath: config, dataDir: data, servers: servers, workersPerScene: workersPerScene,
                                       basePort: basePort, hosts: try hosts.map(HostsFile.load) ?? .local())
            if let slots { try Self.checkFits(plan, slots: slots) }
            let sup = try Supervisor(bin: bin, configPath: config, dataDir: data, runDir: runDir, plan: plan,
                                     restartOnFailure: restartOnFailure, maxRestarts: maxRestarts, deadAfter: deadAfter)
            sup.slots = slots
            if let keys {
                // Every file the children will read, checked before anything starts.
                _ = try CurveKeys.server(dir: keys)
                _ = try CurveKeys.client(dir: keys, role: .worker)
                sup.keysDir = keys
                sup.curve = try CurveKeys.client(dir: keys, role: .admin)
            }
            let caps = RowCapPlan(config: plan.config, servers: plan.servers.count)
            for line in caps.description { sup.say(line) }
            sup.serverArguments = caps.serverArguments
            sup.serverDeadAfter = serverDeadAfter
            if let r = resumeFrom { sup.resume = try Supervisor.resolveCheckpoint(r, dir: sup.checkpointDir) }
            if let p = metricsBasePort {
                do {
                    sup.observe = try SupervisorObservation(basePort: p, host: metricsHost, runDir: runDir, logger: Logger(label: "supervise"))
                } catch { throw ScenePSError.invalidArgument("\(error)") }
                try sup.observe!.checkFree((0..<plan.servers.count).map { "server-\($0)" } + ["coordinator"])
            }
            let status = sup.run()
            if status != 0 { throw ExitCode(status) }
        }
    }

    /// A job that needs more processes than the allocation holds: an error naming both counts, before
    /// anything starts (exit status 2, permanent: submitting it again will not help).
    static func checkFits(_ plan: ClusterPlan, slots: Int) throws {
        let workers = plan.scenes.reduce(0) { $0 + $1.1 }
        let needed = plan.servers.count + 1 + workers
        guard needed > slots else { return }
        printError("psctl supervise: error: the job needs \(needed) processes (\(plan.servers.count) servers, the coordinator, \(workers) workers: " +
                   plan.scenes.map { "\($0.0) \($0.1)" }.joined(separator: ", ") +
                   ") but the allocation holds \(slots) (--slots, from SLURM_NTASKS): submit with sbatch --ntasks=\(needed), or ask for fewer servers or workers (--servers, --workers-per-scene, the config's scenes)")
        throw ExitCode(2)
    }
}
