import Foundation
import XCTest
@testable import ScenePSCore

/// `base: FILE`: the launcher's --text-features writes RUN_DIR/config.yaml as
/// the user's config plus model.text_features; every other key must come
/// from the base, key by key.
final class ConfigBaseTests: XCTestCase {
    func testOverlayKeepsTheBaseAndOverridesKeyByKey() throws {
        let dir = NSTemporaryDirectory() + "config-base-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir + "/sub", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try """
            servers: 3
            model: {d: 16, heads: 2, l_long: 20}
            training: {epochs: 5, batch_size: 64}
            scenes: {home: 2}
            """.write(toFile: dir + "/base.yaml", atomically: true, encoding: .utf8)
        try """
            base: ../base.yaml
            model: {text_features: true, text_embeddings: /emb}
            training: {epochs: 2}
            """.write(toFile: dir + "/sub/run.yaml", atomically: true, encoding: .utf8)
        let c = try ClusterConfig.load(path: dir + "/sub/run.yaml")
        XCTAssertEqual(c.servers, 3)
        XCTAssertEqual(c.model.d, 16)
        XCTAssertEqual(c.model.lLong, 20)
        XCTAssertTrue(c.model.textFeatures)
        XCTAssertEqual(c.model.textEmbeddings, "/emb")
        XCTAssertEqual(c.training.epochs, 2)
        XCTAssertEqual(c.training.batchSize, 64, "a key the overlay does not set stays the base's")
        XCTAssertEqual(c.scenes, ["home": 2])

        try "base: run.yaml\n".write(toFile: dir + "/sub/run.yaml", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ClusterConfig.load(path: dir + "/sub/run.yaml")) { e in
            XCTAssertTrue("\(e)".contains("nested base configs"), "\(e)")
        }
        try "base: missing.yaml\n".write(toFile: dir + "/sub/run.yaml", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ClusterConfig.load(path: dir + "/sub/run.yaml")) { e in
            XCTAssertTrue("\(e)".contains(dir + "/sub/missing.yaml"), "\(e)")
        }
    }
}
