import Logging
import ScenePSClient
import ScenePSCore
import ScenePSProtocol
import XCTest
@testable import ScenePSServer

/// What the servers promise beyond one kernel: deterministic initial values
/// (golden), the learning-rate scale applied end to end, Adam's bias
/// correction past its table, and what a mismatched declaration gets.
final class ContractTests: XCTestCase {
    // MARK: initial values

    /// Golden initial rows, computed once from the implementation of 2026-12.
    /// They are the contract: a re-run, a restore and a re-sharded cluster give
    /// every new row these values. NEVER change them.
    func testInitialRowsGoldenValues() {
        func row(_ s: TableSpec, _ key: UInt64, _ n: Int) -> [Float] {
            var v = [Float](repeating: .nan, count: n)
            v.withUnsafeMutableBufferPointer { RowInitializer.fill($0.baseAddress!, count: n, spec: s, key: key) }
            return v
        }
        let item = TableSpec.sparse(id: 1, name: "item", dim: 4, initKind: .uniform, initScale: 0.05, seed: 42)
        // Uniform: Double arithmetic then one rounding to Float, exact on every IEEE machine.
        XCTAssertEqual(row(item, KeyHash.idKey("item-123456"), 4),
                       [-0.009931933134794235, -0.016696937382221222, 0.011870723217725754, -0.0023866957053542137])
        // Normal goes through libm's log/cos/sin: allow 2 ulps.
        let normal = TableSpec.sparse(id: 3, name: "user", dim: 5, initKind: .normal, initScale: 0.1, seed: 7)
        let want: [Float] = [-0.20153290033340454, 0.11208055913448334, 0.09881202131509781, -0.17699980735778809, 0.15522032976150513]
        let got = row(normal, 12345, 5)
        XCTAssertEqual(got.count, want.count)
        for (a, b) in zip(got, want) { XCTAssertLessThanOrEqual(abs(a - b), 2 * b.ulp, "normal row: \(got)") }
        // Dense elements use their global index as the key.
        let dense = TableSpec.dense(id: 100, name: "dense", size: 1000, initKind: .uniform, initScale: 0.05, seed: 42)
        XCTAssertEqual([0, 1, 999].map { RowInitializer.denseValue(spec: dense, index: $0) },
                       [-0.04545227438211441, -0.005232659168541431, -0.02255529910326004])
        XCTAssertEqual(RowInitializer.rowSeed(spec: item, key: 1), 0x99AF_4188_3BC4_FF29)
        XCTAssertEqual(row(TableSpec.sparse(id: 6, name: "item_bias", dim: 1, initKind: .zeros), 5, 1), [0])
    }

    // MARK: learning-rate scale, end to end

    /// A push with scale s moves a row (sparse and dense) by s times what the
    /// same push with scale 1 moves it, through a real server over ZeroMQ and
    /// the real client, over several steps (Adam's moments do not depend on the
    /// rate, so the displacement is exactly linear in it).
    func testLearningRateScaleReachesTheRowsThroughTheServer() throws {
        let server = try TestServer(threads: 2)
        defer { server.stop() }
        var opts = PSClientOptions()
        opts.timeout = .seconds(5)
        opts.retries = 1
        var logger = Logger(label: "test-client")
        logger.logLevel = .critical
        let client = try PSClient(endpoints: [server.endpoint], sender: "lr-test", options: opts, logger: logger)
        let adam = AdamConfig(learningRate: 0.01, beta1: 0.9, beta2: 0.999, epsilon: 1e-8)
        // Zero initial rows, so that a row's value is its displacement.
        let item = TableSpec.sparse(id: 1, name: "item", dim: 8, initKind: .zeros, adam: adam)
        let d1 = TableSpec.dense(id: 10, name: "d1", size: 6, adam: adam)
        let d2 = TableSpec.dense(id: 11, name: "d2", size: 6, adam: adam)
        try client.declare([item, d1, d2])
        var rng = SplitMix64(seed: 31)
        let scale: Float = 0.25
        for _ in 0..<3 {
            let g = (0..<8).map { _ in Float(rng.nextUnit() * 2 - 1) }
            let gd = (0..<6).map { _ in Float(rng.nextUnit() * 2 - 1) }
            // Row 1 and dense d1 at scale 1; row 2 and dense d2 at scale s, same gradients.
            try client.wait(client.push([SparseGradient(tableID: 1, keys: [1], values: g)], dense: [DenseGradient(tableID: 10, values: gd)]))
            try client.wait(client.push([SparseGradient(tableID: 1, keys: [2], values: g)], dense: [DenseGradient(tableID: 11, values: gd)],
                            lrScale: scale))
        }
        let pulled = try client.wait(client.pull([SparsePull(tableID: 1, keys: [1, 2])], dense: [10, 11]))
        let full = Array(pulled.sparse[0][0..<8]), scaled = Array(pulled.sparse[0][8..<16])
        let denseFull = try XCTUnwrap(pulled.dense[10]), denseScaled = try XCTUnwrap(pulled.dense[11])
        XCTAssertEqual(denseFull.count, 6)
        XCTAssertEqual(denseScaled.count, 6)
        for (what, a, b) in [("sparse", full, scaled), ("dense", denseFull, denseScaled)] {
            for i in 0..<a.count {
                XCTAssertGreaterThan(abs(a[i]), 1e-3, "\(what)[\(i)]: the scale-1 push moved the row")
                XCTAssertEqual(Double(b[i]), Double(scale) * Double(a[i]), accuracy: 1e-5 * Double(abs(a[i])),
                               "\(what)[\(i)]: scale \(scale) moves by \(b[i]), scale 1 by \(a[i])")
            }
        }
    }

    // MARK: Adam past the bias table

    /// Steps around the end of Adam's precomputed bias table (4096) and far
    /// beyond it (the `powf` path), with betas close enough to 1 that the bias
    /// correction still matters there, against the Double reference.
    func testBiasCorrectionAroundTheTableEndAndFarBeyond() {
        // 0.9995^4097 = 0.13, 0.9999^8192 = 0.44: both corrections are far from 1.
        let cfg = AdamConfig(learningRate: 0.05, beta1: 0.9995, beta2: 0.9999, epsilon: 1e-8, l2: 0.001)
        let adam = Adam(cfg)
        // The reference uses the betas as Float holds them.
        let ref = ReferenceAdam(lr: Double(cfg.learningRate), b1: Double(cfg.beta1), b2: Double(cfg.beta2),
                                eps: Double(cfg.epsilon), l2: Double(cfg.l2))
        var rng = SplitMix64(seed: 4096)
        let n = 13   // one SIMD block and a scalar tail
        for t in [4094, 4095, 4096, 4097, 4098, 4500, 8192, 20_000, 100_000, 1_000_000, 50_000_000] {
            let w0: [Float] = (0..<n).map { _ in Float(rng.nextUnit() - 0.5) }
            // Moments as a long run leaves them: m of either sign, v > 0.
            var s: [Float] = (0..<n).map { _ in Float(rng.nextUnit() - 0.5) * 0.02 } + (0..<n).map { _ in Float(rng.nextUnit() + 0.1) * 1e-4 }
            let g: [Float] = (0..<n).map { _ in Float(rng.nextUnit() - 0.5) * 0.05 }
            var w = w0
            var rw = w0.map(Double.init), rm = s[0..<n].map(Double.init), rv = s[n...].map(Double.init)
            w.withUnsafeMutableBufferPointer { wp in s.withUnsafeMutableBufferPointer { sp in g.withUnsafeBufferPointer { gp in
                adam.update(weights: wp.baseAddress!, state: sp.baseAddress!, gradient: gp.baseAddress!, count: n, step: UInt32(t))
            } } }
            ref.step(w: &rw, m: &rm, v: &rv, g: g.map(Double.init), t: t)
            // Compare the step taken (not the weights, whose size would hide an error in it).
            for i in 0..<n {
                let ours = Double(w[i]) - Double(w0[i]), want = rw[i] - Double(w0[i])
                XCTAssertGreaterThan(abs(want), 1e-4, "t=\(t)[\(i)]: the step is not negligible")
                XCTAssertLessThanOrEqual(abs(ours - want), 1e-4 * abs(want), "t=\(t)[\(i)]: step \(ours), reference \(want)")
            }
            assertClose(s, rm + rv, rel: 1e-4, "m|v at t=\(t)")
        }
    }

    /// A sparse row pushed past 4096 times keeps its own step and crosses into
    /// the `powf` path without a jump (SparseTable + Adam, per-row t).
    func testSparseRowCrossesTheBiasTableEnd() {
        let cfg = AdamConfig(learningRate: 0.001, beta1: 0.9995, beta2: 0.9999)
        let spec = TableSpec.sparse(id: 1, name: "e", dim: 3, initKind: .zeros, adam: cfg)
        let table = SparseTable(spec: spec, optimizer: Adam(cfg))
        let ref = ReferenceAdam(lr: Double(cfg.learningRate), b1: Double(cfg.beta1), b2: Double(cfg.beta2), eps: Double(cfg.epsilon))
        var w = [0.0, 0, 0], m = w, v = w
        var rng = SplitMix64(seed: 2)
        for t in 1...4200 {
            let g: [Float] = (0..<3).map { _ in Float(rng.nextUnit() - 0.3) }
            [UInt64(9)].withUnsafeBufferPointer { k in g.withUnsafeBufferPointer { table.push(keys: k, gradients: $0.baseAddress!) } }
            ref.step(w: &w, m: &m, v: &v, g: g.map(Double.init), t: t)
        }
        let row = table.row(9)!
        XCTAssertEqual(row.step, 4200)
        assertClose(row.weights, w, rel: 1e-3, "weights after 4200 steps")
    }

    // MARK: mismatched declarations

    /// A declaration of an existing table that differs in anything that changes
    /// results is refused with CONFLICT naming the table and the field, and
    /// changes nothing; an identical one (every later worker's) is accepted.
    func testDeclarationThatDiffersInAResultChangingFieldIsRefused() throws {
        let t = try TestServer(threads: 1)
        defer { t.stop() }
        let item = TableSpec.sparse(id: 1, name: "item", dim: 4, initKind: .uniform, initScale: 0.05, seed: 42,
                                    adam: AdamConfig(learningRate: 0.01, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, l2: 0))
        let dense = TableSpec.dense(id: 100, name: "dense", size: 10, seed: 42, adam: AdamConfig(learningRate: 0.001))
        guard case .ack = try t.request(.declare(DeclareTables(tables: [item, dense]))).body else { return XCTFail("first declaration") }
        guard case .ack = try t.request(.declare(DeclareTables(tables: [item, dense]))).body else {
            return XCTFail("an identical re-declaration (a later worker's) is accepted")
        }
        let before = t.snapshot()
        var cases: [(String, TableSpec, String)] = []
        func variant(_ field: String, _ base: TableSpec, _ change: (inout TableSpec) -> Void, _ text: String) {
            var s = base
            change(&s)
            cases.append((field, s, text))
        }
        variant("learning_rate", item, { $0.adam.learningRate = 0.02 }, "exists with learning_rate 0.01; this declaration has 0.02")
        variant("beta1", item, { $0.adam.beta1 = 0.8 }, "beta1 0.9; this declaration has 0.8")
        variant("beta2", item, { $0.adam.beta2 = 0.99 }, "beta2 0.999; this declaration has 0.99")
        variant("epsilon", item, { $0.adam.epsilon = 1e-6 }, "epsilon")
        variant("l2", item, { $0.adam.l2 = 0.001 }, "l2 0.0; this declaration has 0.001")
        variant("seed", item, { $0.seed = 43 }, "seed 42; this declaration has 43")
        variant("init", item, { $0.initKind = .normal }, "init uniform; this declaration has normal")
        variant("init_scale", item, { $0.initScale = 0.1 }, "init_scale 0.05; this declaration has 0.1")
        variant("frozen", item, { $0.frozen = true }, "frozen false; this declaration has true")
        variant("dense learning_rate", dense, { $0.adam.learningRate = 0.002 }, "table 100 'dense' exists with learning_rate 0.001")
        variant("dense seed", dense, { $0.seed = 1 }, "table 100 'dense' exists with seed 42")
        for (field, spec, text) in cases {
            // A new table in the same declaration is not created either (the request is validated whole).
            let reply = try t.request(.declare(DeclareTables(tables: [TableSpec.sparse(id: 60, name: "new", dim: 2), spec])))
            XCTAssertError(reply, .conflict, contains: text)
            if case .error(let e) = reply.body {
                XCTAssertTrue(e.message.contains("table \(spec.id) '\(spec.name)'"), "\(field): names the table: \(e.message)")
            }
            XCTAssertNil(t.server.registry.table(60), field)
        }
        XCTAssertEqual(t.snapshot(), before)
        // The name is not part of the comparison (renaming does not change results).
        var renamed = item
        renamed.name = "item-v2"
        guard case .ack = try t.request(.declare(DeclareTables(tables: [renamed]))).body else { return XCTFail("same spec") }
    }

    /// Through the client, the refusal names the server and the status, so a
    /// worker started with another config stops with a message that says why.
    func testClientSurfacesTheConflictNamingServerAndField() throws {
        let servers = try (0..<2).map { try TestServer(shardIndex: $0, shardCount: 2) }
        defer { servers.forEach { $0.stop() } }
        var opts = PSClientOptions()
        opts.timeout = .seconds(5)
        opts.retries = 1
        var logger = Logger(label: "test-client")
        logger.logLevel = .critical
        let item = TableSpec.sparse(id: 1, name: "item", dim: 4, adam: AdamConfig(learningRate: 0.01))
        let first = try PSClient(endpoints: servers.map(\.endpoint), sender: "w1", options: opts, logger: logger)
        try first.declare([item])
        var other = item
        other.adam.learningRate = 0.05
        let second = try PSClient(endpoints: servers.map(\.endpoint), sender: "w2", options: opts, logger: logger)
        XCTAssertThrowsError(try second.declare([other])) { e in
            guard case .rejected(_, _, "declare", .conflict, let m)? = e as? PSClientError else { return XCTFail("\(e)") }
            let text = "\(e)"
            XCTAssertTrue(text.contains("CONFLICT"), text)
            XCTAssertTrue(m.contains("learning_rate 0.01; this declaration has 0.05"), m)
            XCTAssertTrue(text.contains(servers[0].endpoint) || text.contains(servers[1].endpoint), "names the server: \(text)")
        }
    }
}
