import ArgumentParser
import Foundation
import Logging
import ScenePSClient
import ScenePSCore
import ScenePSData
import ScenePSServer
import ScenePSWorker

/// Scores the validation and test splits with the model the servers hold.
struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Score the model the servers hold on the validation and test splits.",
        discussion: """
            Computes per-scene and overall AUC, GAUC and logloss of the test split (and the oracle AUC when \
            the data set has a truth file, and the AUC on cold-start items), and the validation AUC, and \
            prints them; --out FILE also writes them as JSON (summary.json's fields). During a job the \
            coordinator does this after every epoch by itself (RUN_DIR/epochs/, RUN_DIR/summary.json).
            """)

    @Option(help: "Cluster config file (YAML).") var config: String
    @Option(help: "Prepared data set directory.") var data: String
    @Option(help: "Comma-separated server endpoints, in shard order.") var servers: String?
    @Option(help: "Score this checkpoint instead of live servers (a checkpoint directory; no cluster needed: its shards are loaded into one server in this process).")
    var checkpoint: String?
    @Option(help: "Write the metrics as JSON to this file.") var out: String?
    @OptionGroup var keys: AdminKeysOption

    func validate() throws {
        guard (servers == nil) != (checkpoint == nil) else { throw ValidationError("give --servers or --checkpoint (one of them)") }
    }

    func run() throws {
        try reportingErrors {
            let cfg = try ClusterConfig.load(path: config)
            var logger = Logger(label: "psctl.evaluate")
            logger.logLevel = .warning
            let client: PSClient
            let serverCount: Int
            if let checkpoint {
                let (c, s) = try CheckpointModel.client(checkpoint, runDir: nil, sender: "psctl-evaluate-\(getpid())", logger: logger)
                print("checkpoint \(s.path): \(s.rows) rows, global step \(s.manifest.global_step), created \(s.manifest.created)")
                client = c
                serverCount = 1
            } else {
                let endpoints = self.servers!.split(separator: ",").map(String.init)
                client = try PSClient.forModel(endpoints: endpoints, sender: "psctl-evaluate-\(getpid())", config: cfg,
                                               role: "psctl", scene: "", curve: try keys.admin(), logger: logger)
                serverCount = endpoints.count
            }
            let evaluator = try Evaluator(config: cfg, dataDir: data, client: client, logger: logger)
            let valid = try evaluator.predict(.valid)
            let test = try evaluator.predict(.test)
            let summary = RunSummary(epoch: 0, test: test, valid: valid, sceneNames: evaluator.sceneNames,
                                     training: TrainingTotals(examples: 0, seconds: 0, workers: [:],
                                                              startedAt: Date().timeIntervalSince1970),
                                     servers: serverCount, config: cfg, data: evaluator.manifest)
            if let out { try JSONFile.write(summary, to: out) }
            print(summary.table())
        }
    }
}

/// A checkpoint's model without a cluster: one server in this process holding every shard of the
/// checkpoint (re-sharded onto 1), reached without sockets (`psctl evaluate --checkpoint`, `psctl recommend`).
enum CheckpointModel {
    /// `which`: a checkpoint directory, or with `runDir` also `latest` / `latest-good` of RUN_DIR/checkpoints.
    static func client(_ which: String, runDir: String?, sender: String, logger: Logger) throws -> (PSClient, CheckpointRestore.Summary) {
        let path = try runDir.map {
            try CheckpointRestore.resolve(which, dir: ($0 as NSString).appendingPathComponent("checkpoints"), logger: logger) { _ in }
        } ?? which
        let server = try PSServer(options: PSServerOptions(shardIndex: 0, shardCount: 1, bind: "inproc://unused"), logger: logger)
        let s = try CheckpointRestore.restore(path: path, into: server)
        let client = try PSClient(transport: InProcessTransport(servers: [server]), sender: sender, logger: logger)
        try client.hello(role: "psctl", scene: "")
        return (client, s)
    }
}

/// Stops every server (they exit 0 after answering).
struct Shutdown: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Ask every server to shut down gracefully.")
    @Option(help: "Comma-separated server endpoints.") var servers: String
    @Option(help: "Reason, logged by the servers.") var reason: String = "psctl shutdown"
    @OptionGroup var keys: AdminKeysOption

    func run() throws {
        try reportingErrors {
            var logger = Logger(label: "psctl.shutdown")
            logger.logLevel = .warning
            try PSClient.shutdown(endpoints: servers.split(separator: ",").map(String.init), reason: reason,
                                  curve: try keys.admin(), logger: logger)
        }
    }
}
