import Foundation
import Logging
import ScenePSClient
import ScenePSCore
import ScenePSProtocol
import ScenePSTransport

/// The tables of the model on the servers: the declared tables
/// (`FeatureTable.all`: wire ids, widths) with their settings from the
/// cluster config. Ids are part of the checkpoint format.
public struct ModelTables: Sendable {
    public struct Sparse: Sendable, Equatable {
        public let id: UInt32
        public let name: String
        public let dim: Int
        public let settings: ClusterConfig.Table
        public let adam: ClusterConfig.Adam
        /// Directory the servers read the initial rows from (`TableSpec.initFile`); empty = none.
        public let initFile: String
    }

    /// The dense table's id (the sparse ids are declared in `FeatureTable.all`).
    public static let denseID = FeatureTable.denseID

    public let sparse: [Sparse]
    public let denseSize: Int
    public let denseAdam: ClusterConfig.Adam
    public let seed: UInt64

    public init(config: ClusterConfig, denseSize: Int) {
        sparse = FeatureSchema.tables(for: config.model).map { table in
            var t = config.tables[table.name]!
            if table.alwaysFrozen { t.frozen = true }
            // The title vectors' directory, absolute: every server opens it by this path
            // (the reduced vectors' `pca-K/` when model.text_dim < 384).
            let file = table == .itemText && !config.model.textEmbeddings.isEmpty
                ? TitleReduction.directory(of: URL(fileURLWithPath: config.model.textEmbeddings).standardizedFileURL.path,
                                           k: config.model.textDim) : ""
            return Sparse(id: table.id, name: table.name, dim: table.dim(for: config.model),
                          settings: t, adam: t.adam ?? config.sparseAdam, initFile: file)
        }
        self.denseSize = denseSize
        self.denseAdam = config.denseAdam
        self.seed = config.seed
    }

    public func table(_ id: UInt32) -> Sparse { sparse.first { $0.id == id }! }
}

extension ModelTables {
    /// The wire schemas of the model's tables.
    public var specs: [TableSpec] {
        func adam(_ a: ClusterConfig.Adam) -> AdamConfig {
            AdamConfig(learningRate: Float(a.learningRate), beta1: Float(a.beta1), beta2: Float(a.beta2),
                       epsilon: Float(a.epsilon), l2: Float(a.l2))
        }
        func initKind(_ k: ClusterConfig.InitKind) -> InitKind {
            switch k { case .zeros: .zeros; case .uniform: .uniform; case .normal: .normal }
        }
        var specs = sparse.map { s in
            TableSpec.sparse(id: s.id, name: s.name, dim: UInt32(s.dim), initKind: initKind(s.settings.initKind),
                             initScale: Float(s.settings.initScale), seed: seed, frozen: s.settings.frozen,
                             adam: adam(s.adam), initFile: s.initFile)
        }
        specs.append(.dense(id: ModelTables.denseID, name: "dense", size: UInt64(denseSize), seed: seed, adam: adam(denseAdam)))
        return specs
    }
}

extension PSClient {
    /// A client of the model's servers with the config's timeout and
    /// retries, greeted (`hello`), so it knows the tables they hold.
    public static func forModel(endpoints: [String], sender: String, config: ClusterConfig, role: String, scene: String,
                                curve: CurveClientKeys? = nil, logger: Logger) throws -> PSClient {
        var options = PSClientOptions()
        options.curve = curve
        options.timeout = .milliseconds(Int64(config.training.timeoutSeconds * 1000))
        options.retries = config.training.retries
        let client = try PSClient(endpoints: endpoints, sender: sender, options: options, logger: logger)
        try client.hello(role: role, scene: scene)
        return client
    }

    /// Declares the model's tables: created by the first worker, verified
    /// for every later one (a declaration equal to the servers' is a no-op).
    public func declare(_ tables: ModelTables, denseInitial: [Float]) throws {
        try declare(tables.specs, denseInitial: [ModelTables.denseID: denseInitial])
    }
}
