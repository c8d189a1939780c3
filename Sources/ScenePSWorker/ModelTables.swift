import ScenePSCore

/// The tables of the model on the servers: wire ids, widths and settings,
/// derived from the cluster config. Ids are part of the checkpoint format.
public struct ModelTables: Sendable {
    public struct Sparse: Sendable, Equatable {
        public let id: UInt32
        public let name: String
        public let dim: Int
        public let settings: ClusterConfig.Table
        public let adam: ClusterConfig.Adam
    }

    public static let itemID: UInt32 = 1
    public static let categoryID: UInt32 = 2
    public static let userID: UInt32 = 3
    public static let sceneID: UInt32 = 4
    public static let behaviourSceneID: UInt32 = 5
    public static let itemBiasID: UInt32 = 6
    public static let denseID: UInt32 = 100

    public let sparse: [Sparse]
    public let denseSize: Int
    public let denseAdam: ClusterConfig.Adam
    public let seed: UInt64

    public init(config: ClusterConfig, denseSize: Int) {
        let ids: [String: UInt32] = ["item": Self.itemID, "category": Self.categoryID, "user": Self.userID,
                                     "scene": Self.sceneID, "behaviour_scene": Self.behaviourSceneID,
                                     "item_bias": Self.itemBiasID]
        sparse = ClusterConfig.sparseTableNames.map { name in
            let t = config.tables[name]!
            return Sparse(id: ids[name]!, name: name, dim: name == "item_bias" ? 1 : config.model.d,
                          settings: t, adam: t.adam ?? config.sparseAdam)
        }
        self.denseSize = denseSize
        self.denseAdam = config.denseAdam
        self.seed = config.seed
    }

    public func table(_ id: UInt32) -> Sparse { sparse.first { $0.id == id }! }
}
