import XCTest
@testable import ScenePSCore

final class ClusterConfigTests: XCTestCase {
    static var defaultConfigPath: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("cluster/default.yaml").path
    }

    func testDefaultFileEqualsBuiltInDefaults() throws {
        let c = try ClusterConfig.load(path: Self.defaultConfigPath)
        XCTAssertEqual(c, ClusterConfig(), "cluster/default.yaml must document the built-in defaults")
    }

    func testOverridesAndScenes() throws {
        let c = try ClusterConfig.parse(yaml: """
            servers: 3
            model: {kind: baseline, d: 16, heads: 4}
            optimizer: {sparse: {learning_rate: 0.05, l2: 1.0e-6}}
            tables: {item: {init: normal, init_scale: 0.01, frozen: true}}
            scenes: {home: 2, shop: 1}
            training: {lr_decay: 0.5, warmup: 0.1, max_progress_lead: 0, prefetch: true, compute_threads: 2}
            """)
        XCTAssertEqual(c.servers, 3)
        XCTAssertEqual(c.training.lrDecay, 0.5)
        XCTAssertEqual(c.training.warmup, 0.1)
        XCTAssertEqual(c.training.maxProgressLead, 0)
        XCTAssertEqual(c.training.prefetch, true)
        XCTAssertTrue(c.training.prefetchEnabled(hostWorkers: 16, cores: 2))
        XCTAssertEqual(c.training.computeThreads, 2)
        XCTAssertEqual(c.model.kind, .baseline)
        XCTAssertEqual(c.model.d, 16)
        XCTAssertEqual(c.sparseAdam.learningRate, 0.05)
        XCTAssertEqual(c.sparseAdam.l2, 1e-6)
        XCTAssertEqual(c.tables["item"]?.initKind, .normal)
        XCTAssertEqual(c.tables["item"]?.frozen, true)
        XCTAssertEqual(c.sceneOrder, ["home", "shop"])
        XCTAssertEqual(c.workers(forScene: "home", sceneRows: [:]), 2)
        XCTAssertEqual(c.workers(forScene: "video", sceneRows: [:]), 1)
    }

    /// `workers_per_scene: by_rows`: the scene's share of the rows times the scene count, rounded, at least 1;
    /// `scenes` still wins, and a number is the same for every scene.
    func testWorkersByRowsFollowTheScenesShares() throws {
        let rows = ["home": 164_092, "search": 102_413, "video": 102_956, "shop": 40_939]   // the default log
        let c = try ClusterConfig.parse(yaml: "workers_per_scene: by_rows\n", file: "c.yaml")
        XCTAssertEqual(rows.keys.sorted().map { c.workers(forScene: $0, sceneRows: rows) }, [2, 1, 1, 1], "home search shop video")
        let skewed = ["a": 700, "b": 200, "c": 100]
        XCTAssertEqual(["a", "b", "c"].map { c.workers(forScene: $0, sceneRows: skewed) }, [2, 1, 1])
        let sized = try ClusterConfig.parse(yaml: "workers_per_scene: by_rows\nscenes: {a: 5, b: 1, c: 1}\n", file: "c.yaml")
        XCTAssertEqual(sized.workers(forScene: "a", sceneRows: skewed), 5, "scenes wins")
        let flat = try ClusterConfig.parse(yaml: "workers_per_scene: 3\n", file: "c.yaml")
        XCTAssertEqual(["a", "b", "c"].map { flat.workers(forScene: $0, sceneRows: skewed) }, [3, 3, 3])
        let def = try ClusterConfig.load(path: Self.defaultConfigPath)
        XCTAssertTrue(def.workersByRows, "cluster/default.yaml sizes pools by rows")
        assertConfigError("workers_per_scene: lots\n", contains: ["workers_per_scene", "by_rows", "lots"])
        assertConfigError("workers_per_scene: 0\n", contains: ["workers_per_scene", "1...64"])
    }

    func assertConfigError(_ yaml: String, contains parts: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try ClusterConfig.parse(yaml: yaml, file: "c.yaml"), file: file, line: line) { error in
            let text = "\(error)"
            for p in parts { XCTAssertTrue(text.contains(p), "'\(text)' should mention '\(p)'", file: file, line: line) }
        }
    }

    func testUnknownKeyNamesFileLineAndKey() {
        assertConfigError("servers: 2\nmodel:\n  dd: 3\n", contains: ["c.yaml:3", "model.dd", "unknown key"])
    }

    func testBadValueNamesWhatIsExpected() {
        assertConfigError("training:\n  batch_size: many\n", contains: ["c.yaml:2", "training.batch_size", "integer"])
        assertConfigError("servers: 0\n", contains: ["servers", "1..."])
        assertConfigError("model: {ablation: nope}\n", contains: ["model.ablation", "same-scene"])
        assertConfigError("model: [1, 2]\n", contains: ["model", "mapping"])
        assertConfigError("scenes: {home: 0}\n", contains: ["scenes.home"])
        assertConfigError("training: {lr_decay: 0}\n", contains: ["training.lr_decay"])
        assertConfigError("training: {warmup: 1.5}\n", contains: ["training.warmup"])
        assertConfigError("training: {prefetch: sometimes}\n", contains: ["training.prefetch", "auto"])
        assertConfigError("training: {max_progress_lead: -0.1}\n", contains: ["training.max_progress_lead"])
    }

    func testRecoveryPolicy() throws {
        XCTAssertEqual(ClusterConfig().recovery, .partial, "partial is the default (docs/CHECKPOINTS.md says why)")
        XCTAssertEqual(try ClusterConfig.parse(yaml: "recovery: global\n").recovery, .global)
        XCTAssertEqual(try ClusterConfig.parse(yaml: "recovery: partial\n").recovery, .partial)
        assertConfigError("recovery: everything\n", contains: ["c.yaml:1", "recovery", "partial, global", "everything"])
    }

    func testInconsistentSizesRejected() {
        assertConfigError("model: {d: 30, heads: 4}\n", contains: ["heads", "divide"])
        assertConfigError("model: {l_long: 5, l_short: 10}\n", contains: ["l_short", "l_long"])
    }

    func testEmptyFileIsDefaults() throws {
        XCTAssertEqual(try ClusterConfig.parse(yaml: ""), ClusterConfig())
    }

    /// Warm-up ramps linearly over the first `warmup` of epoch 1 only; later
    /// epochs run at lr_decay^(epoch-1); the scale is never 0.
    /// prefetch: auto (the default) is on with at most two workers per core (the quickstart's 4 on 2).
    func testPrefetchAuto() throws {
        let t = try ClusterConfig.parse(yaml: "training: {prefetch: auto}\n").training
        XCTAssertNil(t.prefetch)
        XCTAssertEqual(t, ClusterConfig.Training())
        XCTAssertTrue(t.prefetchEnabled(hostWorkers: 2, cores: 2))
        XCTAssertTrue(t.prefetchEnabled(hostWorkers: 4, cores: 2))
        XCTAssertFalse(t.prefetchEnabled(hostWorkers: 5, cores: 2))
        XCTAssertFalse(t.prefetchEnabled(hostWorkers: 8, cores: 2))
        XCTAssertFalse(t.prefetchEnabled(hostWorkers: 0, cores: 2))   // unknown: off
        let off = try ClusterConfig.parse(yaml: "training: {prefetch: false}\n").training
        XCTAssertFalse(off.prefetchEnabled(hostWorkers: 1, cores: 2))
    }

    func testLearningRateScaleOfALevel() throws {
        var t = ClusterConfig.Training()
        t.warmup = 0.1
        t.lrDecay = 0.5
        XCTAssertEqual(t.learningRateScale(epoch: 1, level: 0, examplesDone: 25, epochExamples: 1000), 0.25, accuracy: 1e-6)
        XCTAssertEqual(t.learningRateScale(epoch: 1, level: 0, examplesDone: 50, epochExamples: 1000), 0.5, accuracy: 1e-6)
        XCTAssertEqual(t.learningRateScale(epoch: 1, level: 0, examplesDone: 100, epochExamples: 1000), 1)
        XCTAssertEqual(t.learningRateScale(epoch: 1, level: 0, examplesDone: 900, epochExamples: 1000), 1)
        // The level, not the epoch, sets the rate after epoch 1; only epoch 1 warms up.
        XCTAssertEqual(t.learningRateScale(epoch: 2, level: 0, examplesDone: 10, epochExamples: 1000), 1)
        XCTAssertEqual(t.learningRateScale(epoch: 2, level: 1, examplesDone: 10, epochExamples: 1000), 0.5)
        XCTAssertEqual(t.learningRateScale(epoch: 5, level: 2, examplesDone: 10, epochExamples: 1000), 0.25)
        t.warmup = 0
        XCTAssertEqual(t.learningRateScale(epoch: 1, level: 0, examplesDone: 1, epochExamples: 1000), 1)
        t.lrDecay = 0.001
        XCTAssertGreaterThan(t.learningRateScale(epoch: 10_000, level: 10_000, examplesDone: 1, epochExamples: 1000), 0)
    }

    func testScheduleKeysParseAndAreChecked() throws {
        let t = try ClusterConfig.parse(yaml: "training: {lr_decays: 3, min_improvement: 0.001, epochs: 7, patience: 2}\n").training
        XCTAssertEqual(t.lrDecays, 3)
        XCTAssertEqual(t.minImprovement, 0.001)
        XCTAssertThrowsError(try ClusterConfig.parse(yaml: "training:\n  lr_decays: -1\n", file: "c.yaml")) { error in
            let m = "\(error)"
            XCTAssertTrue(m.contains("c.yaml:2") && m.contains("lr_decays"), m)
        }
    }
}
