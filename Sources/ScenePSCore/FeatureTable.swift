/// The sparse tables of the model, declared once: what the servers hold, the
/// config's `tables:` keys and their defaults, and the checkpoints' table ids
/// all come from `FeatureTable.all`. Which model input reads which table, and
/// by which key, is the worker's `FeatureSchema.slots` (ScenePSWorker).
///
/// Ids are part of the wire and checkpoint format: never renumber a table.
public struct FeatureTable: Sendable, Equatable {
    /// A row is `d` wide (an embedding) or one value (a bias).
    public enum Width: Sendable, Equatable { case embedding, scalar }

    /// The config key under `tables:` and the table's name on the servers.
    public let name: String
    /// Wire and checkpoint id.
    public let id: UInt32
    public let width: Width
    /// Settings when the config does not override them.
    public let defaults: ClusterConfig.Table

    public init(name: String, id: UInt32, width: Width, defaults: ClusterConfig.Table) {
        self.name = name
        self.id = id
        self.width = width
        self.defaults = defaults
    }

    /// Values per row for embedding width `d`.
    public func dim(d: Int) -> Int { width == .embedding ? d : 1 }
}

extension FeatureTable {
    private static let embeddingDefaults = ClusterConfig.Table(initKind: .uniform, initScale: 0.05)

    public static let item = FeatureTable(name: "item", id: 1, width: .embedding, defaults: embeddingDefaults)
    public static let category = FeatureTable(name: "category", id: 2, width: .embedding, defaults: embeddingDefaults)
    public static let user = FeatureTable(name: "user", id: 3, width: .embedding, defaults: embeddingDefaults)
    /// Keyed by the scene key of the example's scene.
    public static let scene = FeatureTable(name: "scene", id: 4, width: .embedding, defaults: embeddingDefaults)
    /// Keyed by the scene key of a history token's scene (its own table, not `scene`'s).
    public static let behaviourScene = FeatureTable(name: "behaviour_scene", id: 5, width: .embedding, defaults: embeddingDefaults)
    public static let itemBias = FeatureTable(name: "item_bias", id: 6, width: .scalar,
                                             defaults: ClusterConfig.Table(initKind: .zeros, initScale: 0))

    /// Every sparse table, in wire-id order: the order of a worker's pulls and pushes.
    public static let all: [FeatureTable] = [item, category, user, scene, behaviourScene, itemBias]

    /// The one dense table (every dense parameter of the model, flat).
    public static let denseID: UInt32 = 100
}
