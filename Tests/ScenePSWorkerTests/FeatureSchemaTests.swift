import Foundation
import ScenePSCore
import ScenePSModel
import XCTest

@testable import ScenePSWorker

/// The feature schema is consistent: the tables keep their historical wire
/// ids (part of the wire and checkpoint format), every slot reads a declared
/// table at the width its input field has, and every sparse field of
/// `ModelInput` is written by exactly one slot.
final class FeatureSchemaTests: XCTestCase {
    func testTablesKeepTheirWireIdsWidthsAndDefaults() {
        let tables = FeatureSchema.tables
        XCTAssertEqual(tables.map(\.name), ["item", "category", "user", "scene", "behaviour_scene", "item_bias", "item_text"])
        XCTAssertEqual(tables.map(\.id), [1, 2, 3, 4, 5, 6, 7], "wire ids must never change")
        XCTAssertEqual(Set(tables.map(\.id)).count, tables.count, "ids are unique")
        XCTAssertEqual(Set(tables.map(\.name)).count, tables.count, "names are unique")
        XCTAssertFalse(tables.map(\.id).contains(FeatureTable.denseID))
        XCTAssertEqual(FeatureTable.denseID, 100)
        XCTAssertEqual(tables.map(\.width), [.embedding, .embedding, .embedding, .embedding, .embedding, .scalar, .text], "item_text is model.text_dim wide")
        for t in tables where t.name != "item_bias" && t.name != "item_text" {
            XCTAssertEqual(t.defaults, ClusterConfig.Table(initKind: .uniform, initScale: 0.05), t.name)
        }
        XCTAssertEqual(FeatureTable.itemBias.defaults, ClusterConfig.Table(initKind: .zeros, initScale: 0))
        XCTAssertEqual(FeatureTable.itemText.defaults.initKind, .zeros)
        XCTAssertTrue(FeatureTable.itemText.defaults.frozen)
        XCTAssertEqual(tables.filter(\.alwaysFrozen), [.itemText], "only the title vectors are pull-only")
    }

    func testConfigAndModelTablesDeriveFromTheSchema() {
        XCTAssertEqual(ClusterConfig.sparseTableNames, FeatureSchema.tables.map(\.name))
        XCTAssertEqual(Set(ClusterConfig.defaultTables.keys), Set(FeatureSchema.tables.map(\.name)))
        var config = ClusterConfig()
        config.model.d = 8
        let m = ModelTables(config: config, denseSize: 10)
        let plain = FeatureSchema.tables.filter { $0 != .itemText }
        XCTAssertEqual(FeatureSchema.tables(for: config.model), plain, "without text_features there is no item_text")
        XCTAssertEqual(m.sparse.map(\.id), plain.map(\.id))
        XCTAssertEqual(m.sparse.map(\.name), plain.map(\.name))
        XCTAssertEqual(m.sparse.map(\.dim), [8, 8, 8, 8, 8, 1])
        XCTAssertEqual(FeatureSchema.textDim(for: config.model), 0)
        XCTAssertEqual(FeatureSchema.slots(for: config.model).count, 8)

        // The text slot derives the table, its settings, the wire spec and the model input's width.
        config.model.textFeatures = true
        config.model.textEmbeddings = "rel/emb"
        let t = ModelTables(config: config, denseSize: 10)
        XCTAssertEqual(t.sparse.map(\.id), FeatureSchema.tables.map(\.id))
        XCTAssertEqual(t.sparse.map(\.dim), [8, 8, 8, 8, 8, 1, 64], "model.text_dim's default")
        let text = t.table(FeatureTable.itemText.id)
        XCTAssertTrue(text.settings.frozen)
        XCTAssertEqual(text.initFile, FileManager.default.currentDirectoryPath + "/rel/emb/pca-64",
                       "servers get an absolute path, of the reduced vectors")
        XCTAssertTrue(t.sparse.filter { $0.id != text.id }.allSatisfy { $0.initFile.isEmpty })
        XCTAssertEqual(FeatureSchema.textDim(for: config.model), 64)
        // text_dim 384: the vectors as embedded, from the directory itself.
        var full = config
        full.model.textDim = 384
        let f = ModelTables(config: full, denseSize: 10)
        XCTAssertEqual(f.sparse.map(\.dim), [8, 8, 8, 8, 8, 1, 384])
        XCTAssertEqual(f.table(FeatureTable.itemText.id).initFile, FileManager.default.currentDirectoryPath + "/rel/emb")
        XCTAssertEqual(FeatureSchema.textDim(for: full.model), 384)
        XCTAssertEqual(try ClusterConfig.parse(yaml: "model: {text_dim: 32}").model.textDim, 32)
        XCTAssertThrowsError(try ClusterConfig.parse(yaml: "model: {text_dim: 385}")) {
            XCTAssertTrue("\($0)".contains("text_dim"), "\($0)")
        }
        XCTAssertEqual(FeatureSchema.slots(for: config.model).map(\.name).suffix(2), ["targetTextRow", "historyTextRow"])
        let specs = t.specs
        XCTAssertEqual(specs.first { $0.id == 7 }?.initFile, text.initFile)
        XCTAssertEqual(specs.first { $0.id == 7 }?.frozen, true)
        // A config can not make it trainable.
        XCTAssertThrowsError(try ClusterConfig.parse(yaml: "tables: {item_text: {frozen: false}}")) {
            XCTAssertTrue("\($0)".contains("tables.item_text.frozen"), "\($0)")
        }
        XCTAssertThrowsError(try ClusterConfig.parse(yaml: "model: {text_features: true}")) {
            XCTAssertTrue("\($0)".contains("text_embeddings"), "\($0)")
        }
    }

    func testEverySlotReadsADeclaredTableAndEveryTableIsRead() {
        let ids = FeatureSchema.tables.map(\.id)
        for slot in FeatureSchema.slots {
            XCTAssertTrue(FeatureSchema.tables.contains(slot.table), "slot \(slot.name) reads undeclared table \(slot.table.name)")
        }
        for id in ids {
            XCTAssertTrue(FeatureSchema.slots.contains { $0.table.id == id }, "table \(id) is pulled but no slot reads it")
        }
    }

    /// The `[Float]` fields of a ModelInput and their values, by name.
    static func sparseFields(_ x: ModelInput<Float>) -> [String: [Float]] {
        var out: [String: [Float]] = [:]
        for child in Mirror(reflecting: x).children {
            // The exact type: on Linux `as? [Float]` also bridges an [Int32] (the index fields).
            if let label = child.label, type(of: child.value) == [Float].self, let v = child.value as? [Float] { out[label] = v }
        }
        return out
    }

    func testEveryModelInputFieldIsWrittenByExactlyOneSlotAtItsWidth() {
        let d = 3, L = 4, B = 2
        var blank = ModelInput<Float>(d: d, historyWidth: L, capacity: B)
        blank.resize(batch: B)
        let fields = Self.sparseFields(blank)
        XCTAssertEqual(fields.count, 9, "ModelInput's sparse fields: \(fields.keys.sorted())")
        var writers: [String: [String]] = [:]
        for slot in FeatureSchema.slots where slot.index == nil {
            var x = blank
            let n = x[keyPath: slot.input].count
            x[keyPath: slot.input] = [Float](repeating: 7, count: n)
            let changed = Self.sparseFields(x).filter { fields[$0.key] != $0.value }.map(\.key)
            XCTAssertEqual(changed, [slot.name], "slot \(slot.name) writes \(changed)")
            for f in changed { writers[f, default: []].append(slot.name) }
            // One value per position (B, or B·L for a history slot) and row width of its table.
            let positions = slot.source.isHistory ? B * L : B
            XCTAssertEqual(n, positions * slot.table.dim(d: d, textDim: ClusterConfig.Model().textDim),
                           "slot \(slot.name): field length \(n) is not \(positions) positions × \(slot.table.name)'s width")
        }
        for f in fields.keys where f != "textRows" {
            XCTAssertEqual(writers[f]?.count, 1, "ModelInput.\(f) is written by \(writers[f] ?? []) (exactly one slot expected)")
        }
        // Slots by reference (title vectors): each [Int32] index field by exactly one
        // slot, one index per position; the rows field is their table's.
        var text = ModelInput<Float>(d: d, historyWidth: L, capacity: B, textDim: 384)
        text.resize(batch: B)
        var indexWriters: [String: Int] = [:]
        for slot in FeatureSchema.slots {
            guard let index = slot.index else { continue }
            XCTAssertTrue(slot.table.alwaysFrozen, slot.name)
            XCTAssertEqual(slot.input as AnyKeyPath, \ModelInput<Float>.textRows as AnyKeyPath, slot.name)
            XCTAssertEqual(text[keyPath: index].count, slot.source.isHistory ? B * L : B, slot.name)
            var x = text
            x[keyPath: index] = [Int32](repeating: 5, count: x[keyPath: index].count)
            func ints(_ m: ModelInput<Float>) -> [String: [Int32]] {
                var out: [String: [Int32]] = [:]
                for child in Mirror(reflecting: m).children {
                    if let label = child.label, type(of: child.value) == [Int32].self, let v = child.value as? [Int32] { out[label] = v }
                }
                return out
            }
            let before = ints(text)
            for (label, v) in ints(x) where before[label] != v {
                XCTAssertEqual(label, slot.name, "slot \(slot.name) writes \(label)")
                indexWriters[label, default: 0] += 1
            }
        }
        XCTAssertEqual(indexWriters, ["targetTextRow": 1, "historyTextRow": 1])
    }
}
