import Logging
import ScenePSClient
import ScenePSCore
import ScenePSProtocol
import XCTest
@testable import ScenePSServer

/// The client over real sockets (routing, gathering, errors naming the
/// server) and, through `InProcessTransport`, its logic without sockets:
/// lost requests and replies, retries applied once, tickets collected out of
/// order, replies that do not fit.
final class PSClientTests: XCTestCase {
    let item = TableSpec.sparse(id: 1, name: "item", dim: 3, initKind: .uniform, initScale: 0.1, seed: 1,
                                adam: AdamConfig(learningRate: 0.05))
    let mlp = TableSpec.dense(id: 3, name: "mlp", size: 11, adam: AdamConfig(learningRate: 0.05))

    var quiet: Logger {
        var l = Logger(label: "test-client")
        l.logLevel = .critical
        return l
    }

    func sparseTable(_ r: TableRegistry, _ id: UInt32) -> SparseTable? {
        if case .sparse(let t)? = r.table(id) { return t }
        return nil
    }

    func testPullPushRoutesAndGathersAcrossTwoServers() throws {
        let (servers, client) = try makeTestCluster(2)
        defer { servers.forEach { $0.stop() } }
        let hello = try client.hello(role: "test", scene: "feed")
        XCTAssertEqual(hello.map(\.shardIndex), [0, 1])
        let initial = (0..<11).map { Float($0) / 10 }
        try client.declare([item, mlp], denseInitial: [3: initial])

        var rng = SplitMix64(seed: 12)
        let keys = (0..<200).map { _ in rng.next() }
        let result = try client.wait(client.pull([SparsePull(tableID: 1, keys: keys)], dense: [3]))
        XCTAssertEqual(result.sparse.count, 1)
        XCTAssertEqual(result.sparse[0].count, keys.count * 3)
        XCTAssertEqual(result.dense[3], initial, "dense gathered from both slices")
        // Each key's row is the one its owning server holds, and both servers got keys.
        var owners = Set<Int>()
        for (i, k) in keys.enumerated() {
            let s = Sharding.server(table: 1, key: k, servers: 2)
            owners.insert(s)
            XCTAssertEqual(Array(result.sparse[0][(i * 3)..<(i * 3 + 3)]), sparseTable(servers[s].server.registry, 1)!.row(k)!.weights)
        }
        XCTAssertEqual(owners, [0, 1])

        // A push reaches each row's owner once, with the caller's gradient.
        let k = keys[3]
        let owner = servers[Sharding.server(table: 1, key: k, servers: 2)].server.registry
        let before = sparseTable(owner, 1)!.row(k)!.weights
        try client.wait(client.push([SparseGradient(tableID: 1, keys: [k, keys[4]], values: [3, 0, 0, 5, 5, 5])],
                                    dense: [DenseGradient(tableID: 3, values: [Float](repeating: 1, count: 11))]))
        let after = sparseTable(owner, 1)!.row(k)!
        XCTAssertEqual(after.step, 1)
        XCTAssertEqual(after.state[0], 0.1 * 3, accuracy: 1e-6, "m holds (1 - b1) · 3")
        XCTAssertEqual(after.weights[1], before[1], "zero gradient coordinate: m = 0, no move")
        XCTAssertEqual(after.weights[0], before[0] - 0.05, accuracy: 1e-5)
        let dense = try client.wait(client.pull([], dense: [3])).dense[3]!
        XCTAssertEqual(dense.count, 11)
        for i in 0..<11 { XCTAssertEqual(dense[i], initial[i] - 0.05, accuracy: 1e-5, "dense[\(i)]") }

        XCTAssertEqual(try client.stats().map(\.shardIndex), [0, 1])
    }

    /// Keys of a table in one call are distinct: a repeat is refused before
    /// anything is sent (it would get two optimiser steps), naming the key.
    func testARepeatedKeyIsRefusedBeforeAnythingIsSent() throws {
        let server = try PSServer(options: PSServerOptions(shardIndex: 0, shardCount: 1, bind: "inproc://unused"), logger: quiet)
        let transport = InProcessTransport(servers: [server])
        let client = try PSClient(transport: transport, sender: "c", logger: quiet)
        try client.declare([item, mlp])
        let sent = transport.delivered[0]
        for keys: [UInt64] in [[7, 8, 7], [0, 0], Array(0..<5000) + [4999]] {
            XCTAssertThrowsError(try client.pull([SparsePull(tableID: 1, keys: keys)])) { e in
                XCTAssertEqual(e as? PSClientError, .duplicateKey(table: 1, name: "item", key: keys.last!), "\(e)")
            }
            XCTAssertThrowsError(try client.push([SparseGradient(tableID: 1, keys: keys, values: [Float](repeating: 1, count: keys.count * 3))])) { e in
                XCTAssertEqual(e as? PSClientError, .duplicateKey(table: 1, name: "item", key: keys.last!), "\(e)")
                XCTAssertTrue("\(e)".contains("listed twice"), "\(e)")
            }
        }
        XCTAssertEqual(transport.delivered[0], sent, "nothing was sent")
        XCTAssertEqual(sparseTable(server.registry, 1)!.memory().rows, 0)
        XCTAssertEqual(try client.wait(client.pull([SparsePull(tableID: 1, keys: Array(0..<5000))])).sparse[0].count, 15000)
    }

    func testRemoteErrorsAndClientSideChecks() throws {
        let (servers, client) = try makeTestCluster(2)
        defer { servers.forEach { $0.stop() } }
        try client.declare([item, mlp])
        XCTAssertThrowsError(try client.wait(client.push([SparseGradient(tableID: 1, keys: [1, 2, 3, 4, 5, 6], values: [Float](repeating: .nan, count: 18))]))) { e in
            guard case .rejected(let s, let endpoint, "push", .nonFinite, _)? = e as? PSClientError else { return XCTFail("\(e)") }
            XCTAssertEqual(endpoint, servers[s].endpoint)
            XCTAssertTrue("\(e)".contains("NON_FINITE") && "\(e)".contains("tcp://127.0.0.1:"), "names the status and the server: \(e)")
        }
        XCTAssertThrowsError(try client.pull([SparsePull(tableID: 77, keys: [1])])) { e in
            XCTAssertEqual(e as? PSClientError, .unknownTable(77))
            XCTAssertEqual("\(e)", "table 77 is not known to this client: declare it or call hello first")
        }
        XCTAssertThrowsError(try client.pull([], dense: [1])) { e in
            XCTAssertEqual(e as? PSClientError, .wrongKind(table: 1, name: "item", kind: .sparse, expected: .dense))
        }
        XCTAssertThrowsError(try client.push([SparseGradient(tableID: 1, keys: [1], values: [1])])) { e in
            XCTAssertEqual(e as? PSClientError, .wrongSize(table: 1, name: "item", values: 1, expected: 3, what: "gradient of 1 keys"))
            XCTAssertEqual("\(e)", "gradient of 1 keys of table 1 'item' has 1 values, expected 3")
        }
        for bad: Float in [0, -1, .nan, .infinity] {
            XCTAssertThrowsError(try client.push([], lrScale: bad)) { e in
                guard case .invalidArgument(let m)? = e as? PSClientError else { return XCTFail("\(e)") }
                XCTAssertTrue(m.contains("lrScale"), m)
            }
        }
        var conflicting = item
        conflicting.dim = 5
        XCTAssertThrowsError(try client.declare([conflicting])) { e in
            guard case .rejected(_, _, "declare", .conflict, _)? = e as? PSClientError else { return XCTFail("\(e)") }
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
        let client = try PSClient(endpoints: [live.endpoint, silent.endpoint], sender: "c", options: opts, logger: quiet)
        let start = ContinuousClock.now
        XCTAssertThrowsError(try client.hello(role: "t", scene: "")) { e in
            guard case .timedOut(1, silent.endpoint, "hello", _, 2, .milliseconds(200))? = e as? PSClientError else { return XCTFail("\(e)") }
            XCTAssertTrue("\(e)".contains(silent.endpoint) && "\(e)".contains("2 attempts"), "\(e)")
        }
        // The error pins the event (2 attempts of 200 ms each); the clock only says both attempts were
        // waited out, with a generous upper bound as a hang guard (a loaded machine may be slow).
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - start, .milliseconds(400), "gave up only after both attempts")
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(60), "hang guard")
    }

    // MARK: without sockets

    /// Three in-process shards; the client, its transport and the servers' registries.
    func inProcess(_ n: Int, timeout: Duration = .milliseconds(50), retries: Int = 3) throws
        -> (client: PSClient, transport: InProcessTransport, registries: [TableRegistry]) {
        let servers = try (0..<n).map {
            try PSServer(options: PSServerOptions(shardIndex: $0, shardCount: n, bind: "inproc://unused"), logger: quiet)
        }
        let transport = InProcessTransport(servers: servers)
        var opts = PSClientOptions()
        opts.timeout = timeout
        opts.retries = retries
        let client = try PSClient(transport: transport, sender: "inproc", options: opts, logger: quiet)
        try client.declare([item, mlp])
        return (client, transport, servers.map(\.registry))
    }

    /// A lost request is sent again after the timeout; a lost reply too, and
    /// the server, having applied the push already, acknowledges the retry
    /// without applying it again: every row gets exactly one step.
    func testLostRequestsAndRepliesAreRetriedAndAppliedOnce() throws {
        // The test counts deliveries: a timeout short enough for a slow (loaded) machine to miss a reply
        // that was not lost would add a copy; 1 s is far above an in-process round trip.
        let (client, transport, registries) = try inProcess(3, timeout: .seconds(1))
        try pushLosingARequestAndAReply(client, transport, registries, withTheirConnections: false)
    }

    /// A server killed with requests in flight: they and the replies not yet
    /// delivered are lost with the connection. The client sends them again
    /// as soon as it learns of the loss, not after its timeout (no retries:
    /// waiting it out would fail with `timedOut`), and the server that had
    /// already applied the push acknowledges the copy without applying it
    /// again.
    func testARequestLostWithItsConnectionIsSentAgainAtOnce() throws {
        // No retries: the push can only succeed if the copy is sent at the loss (a resend after the timeout
        // does not exist), so its success is the event; the timeout is long only to bound a hang.
        let timeout = Duration.seconds(60)
        let (client, transport, registries) = try inProcess(3, timeout: timeout, retries: 0)
        let took = try pushLosingARequestAndAReply(client, transport, registries, withTheirConnections: true)
        XCTAssertLessThan(took, timeout, "sent again at the loss, before the timeout")
    }

    /// Pushes 600 rows to 3 servers, losing the first request to server 1 and
    /// the first reply from server 2 (with the connection each went on, when
    /// asked); checks each server got it as often as it should and every row
    /// one step. Returns how long the push took.
    @discardableResult
    func pushLosingARequestAndAReply(_ client: PSClient, _ transport: InProcessTransport, _ registries: [TableRegistry],
                                     withTheirConnections: Bool) throws -> Duration {
        var rng = SplitMix64(seed: 3)
        let keys = (0..<600).map { _ in rng.next() }
        let grads = (0..<(keys.count * 3)).map { Float($0 % 5) - 2 }
        var lostRequest = false, lostReply = false
        transport.drop = { [unowned transport] server, isReply in
            let lose = (!isReply && server == 1 && !lostRequest) || (isReply && server == 2 && !lostReply)
            if lose && isReply { lostReply = true } else if lose { lostRequest = true }
            if lose && withTheirConnections { transport.loseConnection(server) }
            return lose
        }
        let before = transport.delivered
        let start = ContinuousClock.now
        try client.wait(client.push([SparseGradient(tableID: 1, keys: keys, values: grads)]))
        let took = ContinuousClock.now - start
        XCTAssertTrue(lostRequest && lostReply)
        XCTAssertEqual(zip(transport.delivered, before).map { $0 - $1 }, [1, 1, 2],
                       "server 1 got the copy (the first was lost), server 2 the push twice (its reply was lost)")
        for k in keys {
            let owner = registries[Sharding.server(table: 1, key: k, servers: 3)]
            XCTAssertEqual(sparseTable(owner, 1)!.row(k)!.step, 1, "key \(k): one step")
        }
        return took
    }

    /// The same over real sockets: a server takes a request and dies without
    /// answering (its socket closes: ZeroMQ's monitor reports the
    /// disconnection); its replacement binds the same endpoint and answers
    /// the copy sent at the loss, before the timeout (no retries: the only way to succeed).
    func testOverZeroMQARequestToAServerThatDiedIsAnsweredByItsReplacement() throws {
        let (silent, endpoint) = try TestServer.silentEndpoint()
        var opts = PSClientOptions()
        opts.timeout = .seconds(60)   // a hang guard only: with no retries, success means the copy sent at the loss
        opts.retries = 0
        let client = try PSClient(endpoints: [endpoint], sender: "reconnecting", options: opts, logger: quiet)
        let replacement = Locked<PSServer?>(nil)
        let failure = Locked<String?>(nil)
        let box = Unchecked((silent, quiet))
        let thread = Thread {
            let (silent, logger) = box.value
            do {
                guard try ZMQPoll.readable([silent], timeoutMilliseconds: 60_000)[0], try silent.receive() != nil else {
                    throw ScenePSError(.internalError, "the request never reached the first server")
                }
                silent.close()   // dies: the request it took goes unanswered
                Thread.sleep(forTimeInterval: 0.3)
                let server = try PSServer(options: PSServerOptions(shardIndex: 0, shardCount: 1, bind: endpoint), logger: logger)
                _ = try server.start()
                replacement.set(server)
            } catch { failure.set("\(error)") }
        }
        thread.start()
        let start = ContinuousClock.now
        XCTAssertNoThrow(try client.heartbeat())
        XCTAssertLessThan(ContinuousClock.now - start, opts.timeout, "answered after the loss, before the timeout")
        while !thread.isFinished { Thread.sleep(forTimeInterval: 0.01) }
        XCTAssertNil(failure.get())
        replacement.get()?.shutdown(timeout: .seconds(5))
    }

    /// A request too large for one server sends nothing to any (a push half
    /// sent would be half applied).
    func testARequestTooLargeForOneServerSendsNothing() throws {
        let (client, transport, registries) = try inProcess(3)
        var keys: [UInt64] = []   // many keys of server 1, one of the others
        var k: UInt64 = 0
        while keys.count < 3000 { if Sharding.server(table: 1, key: k, servers: 3) == 1 { keys.append(k) }; k += 1 }
        keys.append(contentsOf: (k..<(k + 200)).filter { Sharding.server(table: 1, key: $0, servers: 3) != 1 }.prefix(2))
        var small = client.options
        small.maxMessageBytes = 20_000
        let tight = try PSClient(transport: transport, sender: "tight", options: small, logger: quiet)
        try tight.hello(role: "t", scene: "")
        let before = transport.delivered
        XCTAssertThrowsError(try tight.push([SparseGradient(tableID: 1, keys: keys, values: [Float](repeating: 1, count: keys.count * 3))])) { e in
            guard case .tooLarge(1, _, "push", _, 20_000)? = e as? PSClientError else { return XCTFail("\(e)") }
        }
        XCTAssertEqual(transport.delivered, before, "nothing sent")
        XCTAssertEqual(registries.map { sparseTable($0, 1)!.memory().rows }, [0, 0, 0])
        _ = client
    }

    /// A server that never answers: the wait gives up after the retries,
    /// naming it, in bounded time.
    func testAServerThatNeverAnswersEndsTheWaitNamingIt() throws {
        let (client, transport, _) = try inProcess(2, timeout: .milliseconds(20), retries: 2)
        transport.drop = { server, _ in server == 1 }
        let start = ContinuousClock.now
        XCTAssertThrowsError(try client.wait(client.pull([SparsePull(tableID: 1, keys: Array(0..<64))]))) { e in
            guard case .timedOut(1, "inproc-server-1", "pull", _, 3, _)? = e as? PSClientError else { return XCTFail("\(e)") }
        }
        // The error pins the event (3 attempts); the clock: all were waited out, and a hang guard.
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - start, .milliseconds(60), "gave up only after 3 attempts of 20 ms")
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(60), "hang guard")
    }

    /// Several tickets in flight, waited for in another order than sent: each
    /// gets its own answer (a reply that arrives for another ticket is kept).
    func testTicketsAreCollectedInAnyOrder() throws {
        let (client, _, _) = try inProcess(2)
        let keys: [UInt64] = Array(100..<400)
        let first = try client.pull([SparsePull(tableID: 1, keys: keys)])
        let push = try client.push([SparseGradient(tableID: 1, keys: keys, values: [Float](repeating: 1, count: keys.count * 3))])
        let second = try client.pull([SparsePull(tableID: 1, keys: keys)], dense: [3])
        let after = try client.wait(second)   // answered after the push was applied
        try client.wait(push)
        let before = try client.wait(first)
        XCTAssertEqual(before.sparse[0].count, after.sparse[0].count)
        for i in stride(from: 0, to: before.sparse[0].count, by: 3) {
            XCTAssertEqual(after.sparse[0][i], before.sparse[0][i] - 0.05, accuracy: 1e-5, "row \(i / 3) moved by one step")
        }
        XCTAssertEqual(after.dense[3]?.count, 11)
    }

    /// Replies that do not fit the request are refused, naming the server.
    func testRepliesThatDoNotFitAreRefused() throws {
        final class Forged: ServerTransport {
            let endpoints = ["forged-0"]
            var reply: (Envelope) -> [UInt8]
            var last: Envelope?
            init(_ reply: @escaping (Envelope) -> [UInt8]) { self.reply = reply }
            func send(_ message: MallocBuffer, to server: Int) throws -> Bool {
                last = try message.withUnsafeBytes { try WireCodec.decode($0) }
                return true
            }
            func receive(from servers: [Int], timeout: Duration, _ body: (Int, UnsafeRawBufferPointer) throws -> Void) throws {
                guard let r = last.map(reply) else { return }
                last = nil
                try r.withUnsafeBytes { try body(0, $0) }
            }
            func connectionLosses(of server: Int) -> UInt64 { 0 }
        }
        let forged = Forged { _ in [0xFF, 0x01, 0x02] }
        let client = try PSClient(transport: forged, sender: "c", logger: quiet)
        XCTAssertThrowsError(try client.stats()) { e in
            guard case .badReply(0, "forged-0", "stats", let detail)? = e as? PSClientError else { return XCTFail("\(e)") }
            XCTAssertTrue(detail.contains("undecodable"), detail)
        }
        forged.reply = { WireCodec.encode(Envelope(requestID: $0.requestID, sender: "s", body: .heartbeat(Heartbeat()))) }
        XCTAssertThrowsError(try client.stats()) { e in
            guard case .badReply(0, _, "stats", _)? = e as? PSClientError else { return XCTFail("\(e)") }
        }
        forged.reply = { WireCodec.encode(Envelope(requestID: $0.requestID, sender: "s", body: .helloReply(
            HelloReply(shardIndex: 1, shardCount: 2, serverVersion: "x", tables: [])))) }
        XCTAssertThrowsError(try client.hello(role: "t", scene: "")) { e in
            XCTAssertEqual(e as? PSClientError, .wrongShard(server: 0, endpoint: "forged-0", reportedIndex: 1, reportedCount: 2, listed: 1))
        }
        // A pull answered with too few values for its keys.
        forged.reply = { WireCodec.encode(Envelope(requestID: $0.requestID, sender: "s", body: .helloReply(
            HelloReply(shardIndex: 0, shardCount: 1, serverVersion: "x", tables: [self.item])))) }
        try client.hello(role: "t", scene: "")
        forged.reply = { WireCodec.encode(Envelope(requestID: $0.requestID, sender: "s", body: .pullReply(
            Blocks(sparse: [SparseBlock(tableID: 1, keys: [], values: [1, 2])])))) }
        XCTAssertThrowsError(try client.wait(client.pull([SparsePull(tableID: 1, keys: [5, 6])]))) { e in
            guard case .badReply(0, _, "pull", let detail)? = e as? PSClientError else { return XCTFail("\(e)") }
            XCTAssertTrue(detail.contains("2 values for 2 keys of dim 3"), detail)
        }
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
