import Foundation
import ScenePSCore

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
            // The title vectors' directory, absolute: every server opens it by this path.
            let file = table == .itemText && !config.model.textEmbeddings.isEmpty
                ? URL(fileURLWithPath: config.model.textEmbeddings).standardizedFileURL.path : ""
            return Sparse(id: table.id, name: table.name, dim: table.dim(d: config.model.d),
                          settings: t, adam: t.adam ?? config.sparseAdam, initFile: file)
        }
        self.denseSize = denseSize
        self.denseAdam = config.denseAdam
        self.seed = config.seed
    }

    public func table(_ id: UInt32) -> Sparse { sparse.first { $0.id == id }! }
}
