/// The sparse tables of the model, declared once: what the servers hold, the
/// config's `tables:` keys and their defaults, and the checkpoints' table ids
/// all come from `FeatureTable.all`. Which model input reads which table, and
/// by which key, is the worker's `FeatureSchema.slots` (ScenePSWorker).
///
/// Ids are part of the wire and checkpoint format: never renumber a table.
public struct FeatureTable: Sendable, Equatable {
    /// A row is `d` wide (an embedding), one value (a bias), the title
    /// vectors' configured width (`model.text_dim`: 384, or their top
    /// principal components), or a fixed width independent of the model.
    public enum Width: Sendable, Equatable { case embedding, scalar, text, fixed(Int) }

    /// A table the model reads only when its config says so.
    public enum Condition: Sendable, Equatable {
        case always
        /// `model.text_features: true`.
        case textFeatures
    }

    /// The config key under `tables:` and the table's name on the servers.
    public let name: String
    /// Wire and checkpoint id.
    public let id: UInt32
    public let width: Width
    /// Settings when the config does not override them.
    public let defaults: ClusterConfig.Table
    /// When the model has this table.
    public let condition: Condition
    /// Pull-only: its rows come from outside the model (`ClusterConfig.Model.textEmbeddings`),
    /// are never pushed and can not be made trainable in the config.
    public let alwaysFrozen: Bool

    public init(name: String, id: UInt32, width: Width, defaults: ClusterConfig.Table,
                condition: Condition = .always, alwaysFrozen: Bool = false) {
        self.name = name
        self.id = id
        self.width = width
        self.defaults = defaults
        self.condition = condition
        self.alwaysFrozen = alwaysFrozen
    }

    /// Values per row for embedding width `d` and title-vector width `textDim` (`model.text_dim`).
    public func dim(d: Int, textDim: Int) -> Int {
        switch width {
        case .embedding: d
        case .scalar: 1
        case .text: textDim
        case .fixed(let n): n
        }
    }

    /// Values per row in a model with these settings.
    public func dim(for model: ClusterConfig.Model) -> Int { dim(d: model.d, textDim: model.textDim) }

    /// Whether a model with these settings has this table.
    public func isUsed(by model: ClusterConfig.Model) -> Bool {
        switch condition {
        case .always: true
        case .textFeatures: model.textFeatures
        }
    }
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

    /// The catalogue items' title vectors (`psctl embed-titles`: all-MiniLM-L6-v2,
    /// L2-normalised, 384-d), keyed by item, `model.text_dim` wide: the full
    /// vectors (384) or their projection on the catalogue's top `text_dim`
    /// principal components (`TitleReduction`, `psctl reduce-titles`).
    /// Frozen: each server reads its rows from `model.text_embeddings` (or
    /// its `pca-K/` directory) when the table is declared; a key without a
    /// title vector reads zeros. Only with `model.text_features: true`.
    public static let itemText = FeatureTable(name: "item_text", id: 7, width: .text,
                                              defaults: { var t = ClusterConfig.Table(initKind: .zeros, initScale: 0); t.frozen = true; return t }(),
                                              condition: .textFeatures, alwaysFrozen: true)

    /// Width of the sentence-embedding model's vectors (all-MiniLM-L6-v2), `embeddings.npy`'s rows.
    public static let titleVectorDim = 384

    /// Every sparse table, in wire-id order: the order of a worker's pulls and pushes.
    public static let all: [FeatureTable] = [item, category, user, scene, behaviourScene, itemBias, itemText]

    /// The tables of a model with these settings, in wire-id order.
    public static func used(by model: ClusterConfig.Model) -> [FeatureTable] { all.filter { $0.isUsed(by: model) } }

    /// The one dense table (every dense parameter of the model, flat).
    public static let denseID: UInt32 = 100
}
