import ArgumentParser
import Foundation
import ScenePSCore
import ScenePSData

/// Prints what a launcher starts: servers, their endpoints, workers per scene.
struct Plan: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the cluster a config and a prepared data set call for (used by cluster/local.sh).",
        discussion: """
            Output, one item a line: `servers N`, `epochs N`, `endpoints EP,EP,...`, `coordinator EP` (the port \
            after the servers'), then `scene NAME WORKERS` for every scene of the data set, in scene-index \
            order. Flags override the config.
            """)

    @Option(help: "Cluster config file (YAML).") var config: String
    @Option(help: "Prepared data set directory.") var data: String
    @Option(help: "Number of servers (overrides `servers`).") var servers: Int?
    @Option(help: "Workers for each scene the config does not size (overrides `workers_per_scene`).") var workersPerScene: Int?
    @Option(help: "Server i listens on tcp://127.0.0.1:(base-port + i) (overrides `base_port`).") var basePort: Int?
    @Option(help: "Host the local endpoints use (without --hosts).") var host: String = "127.0.0.1"
    @Option(help: "Hosts file (YAML, docs/DEPLOY.md): the endpoints are advertised on the hosts it places each process on.")
    var hosts: String?

    func validate() throws {
        if let servers, servers < 1 { throw ValidationError("--servers must be at least 1") }
        if let workersPerScene, workersPerScene < 1 { throw ValidationError("--workers-per-scene must be at least 1") }
        if let basePort, !(1024...65_000).contains(basePort) { throw ValidationError("--base-port must be in 1024...65000") }
    }

    func run() throws {
        try reportingErrors {
            let plan = try ClusterPlan(configPath: config, dataDir: data, servers: servers, workersPerScene: workersPerScene,
                                       basePort: basePort, hosts: try hosts.map(HostsFile.load) ?? .local(address: host))
            print("servers \(plan.servers.count)")
            print("epochs \(plan.config.training.epochs)")
            print("endpoints " + plan.servers.joined(separator: ","))
            print("coordinator \(plan.coordinator)")
            for (name, n) in plan.scenes { print("scene \(name) \(n)") }
        }
    }
}

/// What the launcher starts: servers and their endpoints, the coordinator's, and the workers of
/// every scene, each on its host (`hosts`; one local host without a hosts file). Server i listens
/// on port base_port + i of its host, the coordinator on base_port + servers. Flags override the config.
struct ClusterPlan {
    var config: ClusterConfig
    var hosts: HostsFile
    /// The servers' advertised endpoints, in shard order (what the coordinator hands to workers).
    var servers: [String]
    /// The endpoints they bind.
    var serverBinds: [String]
    /// The coordinator's advertised endpoint, and the one it binds.
    var coordinator: String
    var coordinatorBind: String
    /// Scene name → workers, in scene-index order.
    var scenes: [(String, Int)]
    /// The scenes `--workers-per-scene` sized (given, and the config sizes
    /// them not by name): on a resume their pools are the flag's, not the
    /// checkpoint's.
    var sizedByFlag: Set<String> = []

    init(configPath: String, dataDir: String, servers: Int?, workersPerScene: Int?, basePort: Int?, hosts: HostsFile = .local()) throws {
        var cfg = try ClusterConfig.load(path: configPath)
        if let servers { cfg.servers = servers }
        if let workersPerScene { cfg.workersPerScene = workersPerScene; cfg.workersByRows = false }
        if let basePort { cfg.basePort = basePort }
        let manifest = try DatasetManifest.load(directory: dataDir)
        let names = Set(manifest.scenes.map(\.name))
        for s in cfg.sceneOrder where !names.contains(s) {
            throw ScenePSError.config("\(configPath): scenes.\(s): the data set at \(dataDir) has no rows of scene '\(s)' (its scenes: \(manifest.scenes.map(\.name).joined(separator: ", ")))")
        }
        try hosts.validate(scenes: manifest.scenes.map(\.name))
        config = cfg
        self.hosts = hosts
        self.servers = (0..<cfg.servers).map { "tcp://\(hosts.serverHost($0).address):\(cfg.basePort + $0)" }
        serverBinds = (0..<cfg.servers).map { "tcp://\(hosts.serverHost($0).bind):\(cfg.basePort + $0)" }
        coordinator = "tcp://\(hosts.coordinatorHost.address):\(cfg.basePort + cfg.servers)"
        coordinatorBind = "tcp://\(hosts.coordinatorHost.bind):\(cfg.basePort + cfg.servers)"
        scenes = []
        let rows = Dictionary(uniqueKeysWithValues: manifest.scenes.map { ($0.name, $0.trainCount) })
        for s in manifest.scenes.sorted(by: { $0.index < $1.index }) {
            let n = cfg.workers(forScene: s.name, sceneRows: rows)
            // More workers than chunks would leave some idle: say so, do not fail.
            if n > s.train.count {
                FileHandle.standardError.write(Data("psctl: scene \(s.name) has \(s.train.count) training chunks for \(n) workers; \(n - s.train.count) will idle (lower chunk_size to share it finer)\n".utf8))
            }
            scenes.append((s.name, n))
            if workersPerScene != nil && cfg.scenes[s.name] == nil { sizedByFlag.insert(s.name) }
        }
    }
}
