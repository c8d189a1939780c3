import ScenePSCore
import ScenePSModel

/// The model's sparse features, declared once (DESIGN.md §3). The tables
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
    public struct Slot: Sendable {
        public let input: WritableKeyPath<ModelInput<Float>, [Float]> & Sendable
        /// The field's name, for messages and the schema test.
        public let name: String
        public let table: FeatureTable
        public let source: Source

        init(_ input: WritableKeyPath<ModelInput<Float>, [Float]> & Sendable, _ name: String,
             reads table: FeatureTable, keyedBy source: Source) {
            self.input = input
            self.name = name
            self.table = table
            self.source = source
        }
    }

    /// The tables, in pull order (wire-id order).
    public static let tables: [FeatureTable] = FeatureTable.all

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
    ]
}
