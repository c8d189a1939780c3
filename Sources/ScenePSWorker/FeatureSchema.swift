import ScenePSClient
import ScenePSCore
import ScenePSModel

/// The model's sparse features, declared once (docs/ARCHITECTURE.md §3). The tables
/// (name, wire id, width, defaults) are `FeatureTable.all` in ScenePSCore,
/// because the config and the servers see them; the slots here say which
/// `ModelInput` field reads which table, at which positions and by which key.
/// `BatchAssembler` (keys, pulls, gather, scatter), `ModelTables` and
/// `ClusterConfig` loop over these lists; nothing else names a feature.
///
/// Adding a feature: its table in `FeatureTable.all` (a new, never reused id),
/// its slot below, its field in `ModelInput` (and `resize`/`isConsistent`/
/// `withPointers`), and the model's use of it. `FeatureSchemaTests` checks
/// that every `[Float]` field of `ModelInput` is written by exactly one slot.
public enum FeatureSchema {
    /// Where a slot's key comes from. The first four give one key per example;
    /// the history ones one per kept history token (the history cut to the
    /// model's L and, under the same-scene ablation, filtered to the example's
    /// scene; padding reads zeros and gets no gradient).
    public enum Source: Sendable, Equatable {
        /// The sample's item, category or user id.
        case item, category, user
        /// The scene key of the example's scene.
        case scene
        /// A history token's item or category id.
        case historyItem, historyCategory
        /// The scene key of a history token's scene.
        case historyScene

        public var isHistory: Bool {
            switch self {
            case .item, .category, .user, .scene: false
            case .historyItem, .historyCategory, .historyScene: true
            }
        }
    }

    /// One `ModelInput` field and where its rows come from. The same type
    /// carries the gradient, so `scatter` reads the field back through it.
    ///
    /// A slot with an `index` field reads its table by reference: `input` is
    /// then the table's field of distinct rows (the batch's unique keys, in
    /// pull order, shared by every slot of that table) and `index` gets each
    /// position's row (-1 = padding). Only pull-only tables are read so (no
    /// gradient); the model then computes once per distinct row.
    public struct Slot: Sendable {
        public let input: WritableKeyPath<ModelInput<Float>, [Float]> & Sendable
        public let index: (WritableKeyPath<ModelInput<Float>, [Int32]> & Sendable)?
        /// The field's name, for messages and the schema test.
        public let name: String
        public let table: FeatureTable
        public let source: Source

        init(_ input: WritableKeyPath<ModelInput<Float>, [Float]> & Sendable, _ name: String,
             reads table: FeatureTable, keyedBy source: Source) {
            self.input = input
            self.index = nil
            self.name = name
            self.table = table
            self.source = source
        }

        init(rows: WritableKeyPath<ModelInput<Float>, [Float]> & Sendable,
             index: WritableKeyPath<ModelInput<Float>, [Int32]> & Sendable, _ name: String,
             reads table: FeatureTable, keyedBy source: Source) {
            precondition(table.alwaysFrozen, "slot \(name): only pull-only tables are read by reference")
            self.input = rows
            self.index = index
            self.name = name
            self.table = table
            self.source = source
        }
    }

    /// Every table, in pull order (wire-id order).
    public static let tables: [FeatureTable] = FeatureTable.all

    /// The tables a model with these settings reads (`FeatureTable.isUsed`), in pull order.
    public static func tables(for model: ClusterConfig.Model) -> [FeatureTable] { FeatureTable.used(by: model) }

    /// The slots of those tables.
    public static func slots(for model: ClusterConfig.Model) -> [Slot] { slots(reading: tables(for: model)) }

    static func slots(reading tables: [FeatureTable]) -> [Slot] { slots.filter { tables.contains($0.table) } }

    /// `ModelInput.textDim` of such a model: the width of `item_text`, or 0 without it.
    public static func textDim(for model: ClusterConfig.Model) -> Int {
        tables(for: model).contains(.itemText) ? FeatureTable.itemText.dim(for: model) : 0
    }

    /// A worker's caches of the pull-only tables of `tables` (`FrozenRowCache`).
    public static func frozenCaches(_ tables: [FeatureTable], d: Int, textDim: Int) -> [FrozenRowCache] {
        tables.filter(\.alwaysFrozen).map { FrozenRowCache(table: $0.id, dim: $0.dim(d: d, textDim: textDim)) }
    }

    /// `pulls` with the keys a cache already holds left out.
    public static func uncached(_ pulls: [SparsePull], _ caches: [FrozenRowCache]) -> [SparsePull] {
        pulls.map { p in
            guard let c = caches.first(where: { $0.table == p.tableID }) else { return p }
            return SparsePull(tableID: p.tableID, keys: c.missing(p.keys))
        }
    }

    /// Adds the rows a pull of `requested` brought for the cached tables.
    public static func fill(_ caches: [FrozenRowCache], requested: [SparsePull], rows: [[Float]]) {
        for c in caches {
            guard let t = requested.firstIndex(where: { $0.tableID == c.table }) else { continue }
            c.insert(keys: requested[t].keys, values: rows[t])
        }
    }

    /// Every sparse input of the model. Within a table, slots are summed into
    /// its gradient in this order.
    public static let slots: [Slot] = [
        Slot(\.targetItem, "targetItem", reads: .item, keyedBy: .item),
        Slot(\.targetCategory, "targetCategory", reads: .category, keyedBy: .category),
        Slot(\.user, "user", reads: .user, keyedBy: .user),
        Slot(\.sceneEmbedding, "sceneEmbedding", reads: .scene, keyedBy: .scene),
        Slot(\.itemBias, "itemBias", reads: .itemBias, keyedBy: .item),
        Slot(\.historyItem, "historyItem", reads: .item, keyedBy: .historyItem),
        Slot(\.historyCategory, "historyCategory", reads: .category, keyedBy: .historyCategory),
        Slot(\.historyScene, "historyScene", reads: .behaviourScene, keyedBy: .historyScene),
        Slot(rows: \.textRows, index: \.targetTextRow, "targetTextRow", reads: .itemText, keyedBy: .item),
        Slot(rows: \.textRows, index: \.historyTextRow, "historyTextRow", reads: .itemText, keyedBy: .historyItem),
    ]
}
