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
        XCTAssertEqual(tables.map(\.name), ["item", "category", "user", "scene", "behaviour_scene", "item_bias"])
        XCTAssertEqual(tables.map(\.id), [1, 2, 3, 4, 5, 6], "wire ids must never change")
        XCTAssertEqual(Set(tables.map(\.id)).count, tables.count, "ids are unique")
        XCTAssertEqual(Set(tables.map(\.name)).count, tables.count, "names are unique")
        XCTAssertFalse(tables.map(\.id).contains(FeatureTable.denseID))
        XCTAssertEqual(FeatureTable.denseID, 100)
        XCTAssertEqual(tables.map(\.width), [.embedding, .embedding, .embedding, .embedding, .embedding, .scalar])
        for t in tables where t.name != "item_bias" {
            XCTAssertEqual(t.defaults, ClusterConfig.Table(initKind: .uniform, initScale: 0.05), t.name)
        }
        XCTAssertEqual(FeatureTable.itemBias.defaults, ClusterConfig.Table(initKind: .zeros, initScale: 0))
    }

    func testConfigAndModelTablesDeriveFromTheSchema() {
        XCTAssertEqual(ClusterConfig.sparseTableNames, FeatureSchema.tables.map(\.name))
        XCTAssertEqual(Set(ClusterConfig.defaultTables.keys), Set(FeatureSchema.tables.map(\.name)))
        var config = ClusterConfig()
        config.model.d = 8
        let m = ModelTables(config: config, denseSize: 10)
        XCTAssertEqual(m.sparse.map(\.id), FeatureSchema.tables.map(\.id))
        XCTAssertEqual(m.sparse.map(\.name), FeatureSchema.tables.map(\.name))
        XCTAssertEqual(m.sparse.map(\.dim), [8, 8, 8, 8, 8, 1])
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
            if let label = child.label, let v = child.value as? [Float] { out[label] = v }
        }
        return out
    }

    func testEveryModelInputFieldIsWrittenByExactlyOneSlotAtItsWidth() {
        let d = 3, L = 4, B = 2
        var blank = ModelInput<Float>(d: d, historyWidth: L, capacity: B)
        blank.resize(batch: B)
        let fields = Self.sparseFields(blank)
        XCTAssertEqual(fields.count, 8, "ModelInput's sparse fields: \(fields.keys.sorted())")
        var writers: [String: [String]] = [:]
        for slot in FeatureSchema.slots {
            var x = blank
            let n = x[keyPath: slot.input].count
            x[keyPath: slot.input] = [Float](repeating: 7, count: n)
            let changed = Self.sparseFields(x).filter { fields[$0.key] != $0.value }.map(\.key)
            XCTAssertEqual(changed, [slot.name], "slot \(slot.name) writes \(changed)")
            for f in changed { writers[f, default: []].append(slot.name) }
            // One value per position (B, or B·L for a history slot) and row width of its table.
            let positions = slot.source.isHistory ? B * L : B
            XCTAssertEqual(n, positions * slot.table.dim(d: d),
                           "slot \(slot.name): field length \(n) is not \(positions) positions × \(slot.table.name)'s width")
        }
        for f in fields.keys {
            XCTAssertEqual(writers[f]?.count, 1, "ModelInput.\(f) is written by \(writers[f] ?? []) (exactly one slot expected)")
        }
    }
}
