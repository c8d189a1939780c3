import Logging
import ScenePSClient
import ScenePSCore

/// `ParameterStore` over ZeroMQ: the worker's and psctl's view of the servers.
public final class PSClientStore: ParameterStoreSetup {
    let client: PSClient

    public init(endpoints: [String], sender: String, config: ClusterConfig, role: String, scene: String,
                logger: Logger) throws {
        var options = PSClientOptions()
        options.timeout = .milliseconds(Int64(config.training.timeoutSeconds * 1000))
        options.retries = config.training.retries
        client = try PSClient(endpoints: endpoints, sender: sender, options: options, logger: logger)
        _ = try client.hello(role: role, scene: scene)
    }

    public func declare(_ tables: ModelTables, denseInitial: [Float]) throws {
        try client.declare(Self.specs(tables), denseInitial: [ModelTables.denseID: denseInitial])
    }

    public func beginPull(_ requests: [(table: UInt32, keys: [UInt64], dim: Int)], denseTable: UInt32, denseCount: Int) throws
        -> PendingPull {
        let pending = try client.beginPull(requests.map { SparsePull(tableID: $0.table, keys: $0.keys, keysAreUnique: true) },
                                           dense: denseCount > 0 ? [denseTable] : [])
        let client = self.client
        return PendingPull {
            let r = try client.finishPull(pending)
            return (r.sparse, r.dense[denseTable] ?? [])
        }
    }

    public func push(_ gradients: [(table: UInt32, keys: [UInt64], values: [Float])], denseTable: UInt32, dense: [Float],
                     lrScale: Float) throws {
        try client.push(gradients.map { SparseGradient(tableID: $0.table, keys: $0.keys, values: $0.values, keysAreUnique: true) },
                        dense: dense.isEmpty ? [] : [DenseGradient(tableID: denseTable, values: dense)], lrScale: lrScale)
    }

    /// Keeps (`save`) or brings back (`restore`) snapshot `name` of every
    /// table on every server; returns the sparse rows copied.
    @discardableResult
    public func snapshot(_ action: SnapshotRequest.Action, name: String) throws -> UInt64 {
        try client.snapshot(action, name: name)
    }

    /// The wire schemas of the model's tables.
    public static func specs(_ t: ModelTables) -> [TableSpec] {
        func adam(_ a: ClusterConfig.Adam) -> AdamConfig {
            AdamConfig(learningRate: Float(a.learningRate), beta1: Float(a.beta1), beta2: Float(a.beta2),
                       epsilon: Float(a.epsilon), l2: Float(a.l2))
        }
        func initKind(_ k: ClusterConfig.InitKind) -> InitKind {
            switch k { case .zeros: .zeros; case .uniform: .uniform; case .normal: .normal }
        }
        var specs = t.sparse.map { s in
            TableSpec.sparse(id: s.id, name: s.name, dim: UInt32(s.dim), initKind: initKind(s.settings.initKind),
                             initScale: Float(s.settings.initScale), seed: t.seed, frozen: s.settings.frozen,
                             adam: adam(s.adam), initFile: s.initFile)
        }
        specs.append(.dense(id: ModelTables.denseID, name: "dense", size: UInt64(t.denseSize), seed: t.seed,
                            adam: adam(t.denseAdam)))
        return specs
    }

    public static func shutdown(endpoints: [String], reason: String, logger: Logger) throws {
        var options = PSClientOptions()
        options.timeout = .seconds(5)
        options.retries = 1
        let client = try PSClient(endpoints: endpoints, sender: "psctl-shutdown", options: options, logger: logger)
        try client.shutdownServers(reason: reason)
    }
}
