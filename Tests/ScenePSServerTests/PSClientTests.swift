import Logging
import ScenePSClient
import ScenePSCore
import ScenePSProtocol
import XCTest
@testable import ScenePSServer

final class PSClientTests: XCTestCase {
    let item = TableSpec.sparse(id: 1, name: "item", dim: 3, initKind: .uniform, initScale: 0.1, seed: 1,
                                adam: AdamConfig(learningRate: 0.05))
    let mlp = TableSpec.dense(id: 3, name: "mlp", size: 11, adam: AdamConfig(learningRate: 0.05))

    func makeCluster(_ n: Int) throws -> ([TestServer], PSClient) { try makeTestCluster(n) }

    func sparseTable(_ s: TestServer, _ id: UInt32) -> SparseTable? {
        if case .sparse(let t)? = s.server.registry.table(id) { return t }
        return nil
    }

    func testPullPushRoutesDedupsAndGathersAcrossTwoServers() throws {
        let (servers, client) = try makeCluster(2)
        defer { servers.forEach { $0.stop() } }
        let hello = try client.hello(role: "test", scene: "feed")
        XCTAssertEqual(hello.map(\.shardIndex), [0, 1])
        let initial = (0..<11).map { Float($0) / 10 }
        try client.declare([item, mlp], denseInitial: [3: initial])

        var rng = SplitMix64(seed: 12)
        let unique = (0..<200).map { _ in rng.next() }
        let keys = unique + unique.prefix(50) + [unique[3], unique[3]]
        let result = try client.pull([SparsePull(tableID: 1, keys: keys)], dense: [3])
        XCTAssertEqual(result.sparse.count, 1)
        XCTAssertEqual(result.sparse[0].count, keys.count * 3)
        XCTAssertEqual(result.dense[3], initial, "dense gathered from both slices")
        // Each key's row is the one its owning server holds, and both servers got keys.
        var owners = Set<Int>()
        for (i, k) in keys.enumerated() {
            let s = Sharding.server(table: 1, key: k, servers: 2)
            owners.insert(s)
            XCTAssertEqual(Array(result.sparse[0][(i * 3)..<(i * 3 + 3)]), sparseTable(servers[s], 1)!.row(k)!.weights)
        }
        XCTAssertEqual(owners, [0, 1])
        XCTAssertEqual(servers.map { sparseTable($0, 1)!.memory().rows }.reduce(0, +), 200, "duplicates created no extra rows")

        // Push with a duplicated key: the server sees the summed gradient once.
        let k = unique[3]
        let owner = servers[Sharding.server(table: 1, key: k, servers: 2)]
        let before = sparseTable(owner, 1)!.row(k)!.weights
        try client.push([SparseGradient(tableID: 1, keys: [k, unique[4], k], values: [1, 0, 0, 5, 5, 5, 2, 0, 0])],
                        dense: [DenseGradient(tableID: 3, values: [Float](repeating: 1, count: 11))])
        let after = sparseTable(owner, 1)!.row(k)!
        XCTAssertEqual(after.step, 1, "one update for the duplicated key")
        XCTAssertEqual(after.state[0], 0.1 * 3, accuracy: 1e-6, "m holds (1 - b1) · (1 + 2)")
        XCTAssertEqual(after.weights[1], before[1], "zero gradient coordinate: m = 0, no move")
        XCTAssertEqual(after.weights[0], before[0] - 0.05, accuracy: 1e-5)
        let dense = try client.pull([], dense: [3]).dense[3]!
        XCTAssertEqual(dense.count, 11)
        for i in 0..<11 { XCTAssertEqual(dense[i], initial[i] - 0.05, accuracy: 1e-5, "dense[\(i)]") }

        let stats = try client.stats()
        XCTAssertEqual(stats.map(\.shardIndex), [0, 1])
    }

    /// The fast path for keys the caller already made unique routes and
    /// gathers exactly like the de-duplicating one, over three servers.
    func testUniqueKeyPathMatchesTheDedupPath() throws {
        let (servers, client) = try makeCluster(3)
        defer { servers.forEach { $0.stop() } }
        try client.declare([item, mlp])
        var rng = SplitMix64(seed: 5)
        let keys = (0..<3000).map { _ in rng.next() }
        let slow = try client.pull([SparsePull(tableID: 1, keys: keys)]).sparse[0]
        let fast = try client.pull([SparsePull(tableID: 1, keys: keys, keysAreUnique: true)]).sparse[0]
        XCTAssertEqual(fast, slow)
        let grads = (0..<keys.count * 3).map { Float($0 % 7) - 3 }
        try client.push([SparseGradient(tableID: 1, keys: keys, values: grads, keysAreUnique: true)])
        for k in keys.prefix(100) {
            XCTAssertEqual(sparseTable(servers[Sharding.server(table: 1, key: k, servers: 3)], 1)!.row(k)!.step, 1)
        }
    }

    func testRemoteErrorsAndClientSideChecks() throws {
        let (servers, client) = try makeCluster(2)
        defer { servers.forEach { $0.stop() } }
        try client.declare([item, mlp])
        XCTAssertThrowsError(try client.push([SparseGradient(tableID: 1, keys: [1, 2, 3, 4, 5, 6], values: [Float](repeating: .nan, count: 18))])) { e in
            let err = e as? ScenePSError
            XCTAssertEqual(err?.code, .remote)
            XCTAssertTrue(err?.message.contains("NON_FINITE") ?? false, "\(e)")
            XCTAssertTrue(err?.message.contains("tcp://127.0.0.1:") ?? false, "names the server: \(e)")
        }
        XCTAssertThrowsError(try client.pull([SparsePull(tableID: 77, keys: [1])])) { e in
            XCTAssertEqual((e as? ScenePSError)?.code, .invalidArgument)
            XCTAssertEqual((e as? ScenePSError)?.message, "table 77 is not known to this client: declare it or call hello first")
        }
        XCTAssertThrowsError(try client.push([SparseGradient(tableID: 1, keys: [1], values: [1])])) { e in
            XCTAssertEqual((e as? ScenePSError)?.code, .invalidArgument)
            XCTAssertEqual((e as? ScenePSError)?.message, "gradient of table 1 'item' has 1 values for 1 keys of dim 3")
        }
        var conflicting = item
        conflicting.dim = 5
        XCTAssertThrowsError(try client.declare([conflicting])) { e in
            XCTAssertEqual((e as? ScenePSError)?.code, .remote, "\(e)")
            XCTAssertTrue("\(e)".contains("CONFLICT"), "\(e)")
            XCTAssertTrue("\(e)".contains("dim=5") && "\(e)".contains("tcp://127.0.0.1:"), "names the field and the server: \(e)")
        }
    }

    func testTimeoutNamesTheSilentServer() throws {
        let live = try TestServer()
        defer { live.stop() }
        // A bound ROUTER nobody serves: connections succeed, replies never come.
        let silent = try TestServer.silentEndpoint()
        defer { silent.socket.close() }
        var opts = PSClientOptions()
        opts.timeout = .milliseconds(200)
        opts.retries = 1
        var logger = Logger(label: "test-client")
        logger.logLevel = .critical
        let client = try PSClient(endpoints: [live.endpoint, silent.endpoint], sender: "c", options: opts, logger: logger)
        let start = ContinuousClock.now
        XCTAssertThrowsError(try client.hello(role: "t", scene: "")) { e in
            let err = e as? ScenePSError
            XCTAssertEqual(err?.code, .timeout)
            XCTAssertTrue(err?.message.contains(silent.endpoint) ?? false, "\(e)")
            XCTAssertTrue(err?.message.contains("2 attempts") ?? false, "\(e)")
        }
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(3))
    }
}

import ScenePSTransport

extension TestServer {
    static func silentEndpoint() throws -> (socket: ZMQSocket, endpoint: String) {
        let ctx = try ZMQContext()
        let s = try ZMQSocket(ctx, type: .router, lingerMilliseconds: 0)
        try s.bind("tcp://127.0.0.1:*")
        return (s, try s.lastEndpoint())
    }
}
