import Foundation
import Logging
import ScenePSClient
import ScenePSCore
import ScenePSProtocol
import ScenePSTransport
import XCTest
@testable import ScenePSServer

/// CURVE on the servers (docs/SECURITY.md): key files and their bad input,
/// the roles, refusals that change nothing, and a client without a listed key.
final class CurveTests: XCTestCase {
    var dir: String!

    override func setUpWithError() throws {
        try XCTSkipUnless(CurveKeys.available, "this libzmq has no CURVE")
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("sceneps-curve-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try CurveKeys.generate(into: dir)
    }

    override func tearDownWithError() throws {
        if let dir { try? FileManager.default.removeItem(atPath: dir) }
    }

    func path(_ name: String) -> String { (dir as NSString).appendingPathComponent(name) }

    func assertConfigError(_ body: @autoclosure () throws -> Any, mentions: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { e in
            let text = "\(e)"
            for m in mentions { XCTAssertTrue(text.contains(m), "'\(text)' should mention '\(m)'", file: file, line: line) }
        }
    }

    func testKeysAreWrittenPrivateAndLoad() throws {
        for name in ["server.key", "server.pub", "admin.key", "worker.key", "authorized"] {
            let mode = (try FileManager.default.attributesOfItem(atPath: path(name))[.posixPermissions] as! NSNumber).intValue
            XCTAssertEqual(mode & 0o777, 0o600, name)
        }
        let server = try CurveKeys.server(dir: dir)
        let admin = try CurveKeys.client(dir: dir, role: .admin), worker = try CurveKeys.client(dir: dir, role: .worker)
        XCTAssertEqual(server.authorized[CurveKeys.encode(admin.client.publicKey)], .admin)
        XCTAssertEqual(server.authorized[CurveKeys.encode(worker.client.publicKey)], .worker)
        XCTAssertEqual(admin.serverPublicKey, server.server.publicKey)
        XCTAssertNotEqual(admin.client.publicKey, worker.client.publicKey)
        assertConfigError(try CurveKeys.generate(into: dir), mentions: ["exists", "refusing to overwrite"])
    }

    func testBadKeyFilesAreNamed() throws {
        chmod(path("worker.key"), 0o644)
        assertConfigError(try CurveKeys.client(dir: dir, role: .worker), mentions: [path("worker.key"), "0644", "chmod 600"])
        chmod(path("worker.key"), 0o600)
        try FileManager.default.removeItem(atPath: path("server.pub"))
        assertConfigError(try CurveKeys.client(dir: dir, role: .worker), mentions: [path("server.pub"), "No such file"])
        FileManager.default.createFile(atPath: path("server.pub"), contents: Data("not a key at all\n".utf8), attributes: [.posixPermissions: 0o600])
        assertConfigError(try CurveKeys.client(dir: dir, role: .admin), mentions: [path("server.pub") + ":1", "not a CURVE key"])
        let authorized = try String(contentsOfFile: path("authorized"), encoding: .utf8)
        try (authorized + "operator AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n").write(toFile: path("authorized"), atomically: false, encoding: .utf8)
        assertConfigError(try CurveKeys.server(dir: dir), mentions: [path("authorized") + ":4", "unknown role 'operator'"])
        try (authorized + "worker abc\n").write(toFile: path("authorized"), atomically: false, encoding: .utf8)
        assertConfigError(try CurveKeys.server(dir: dir), mentions: [path("authorized") + ":4", "40 Z85 characters"])
    }

    // MARK: a server with CURVE on

    static let item = TableSpec.sparse(id: 1, name: "item", dim: 4, initKind: .uniform, initScale: 0.1, seed: 7)

    func startServer(threads: Int, logger: Logger = quietLogger()) throws -> PSServer {
        var o = PSServerOptions(shardIndex: 0, shardCount: 1, bind: "tcp://127.0.0.1:*")
        o.threads = threads
        o.curve = try CurveKeys.server(dir: dir)
        let s = try PSServer(options: o, logger: logger)
        try s.start()
        return s
    }

    static func quietLogger() -> Logger {
        var l = Logger(label: "curve-test")
        l.logLevel = .critical
        return l
    }

    func client(_ server: PSServer, _ curve: CurveClientKeys?, timeout: Duration = .seconds(5)) throws -> PSClient {
        var o = PSClientOptions()
        o.curve = curve
        o.timeout = timeout
        o.retries = 0
        return try PSClient(endpoints: [server.endpoint], sender: "curve-test-\(UInt32.random(in: 0...UInt32.max))", options: o,
                            logger: Self.quietLogger())
    }

    func rows(_ server: PSServer) -> [String] {
        guard case .sparse(let t)? = server.registry.table(1) else { return [] }
        var out: [String] = []
        t.forEachRow { key, w, st, step in out.append("\(key)=\(Array(w))|\(Array(st))|\(step)") }
        return out.sorted()
    }

    func assertDenied(_ body: @autoclosure () throws -> Any, _ kind: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { e in
            guard case PSClientError.rejected(_, _, _, let status, let message) = e else {
                return XCTFail("expected a refusal, got \(e)", file: file, line: line)
            }
            XCTAssertEqual(status, .permissionDenied, message, file: file, line: line)
            XCTAssertTrue(message.contains(kind) && message.contains("admin key") && message.contains("worker key"), message,
                          file: file, line: line)
        }
    }

    func testWorkerKeyPullsAndPushesButCannotAdminister() throws {
        for threads in [1, 2] {   // one handler owning the ROUTER, and the frontend forwarding to handler threads
            let server = try startServer(threads: threads)
            defer { server.shutdown() }
            let admin = try client(server, try CurveKeys.client(dir: dir, role: .admin))
            try admin.declare([Self.item])
            let worker = try client(server, try CurveKeys.client(dir: dir, role: .worker))
            _ = try worker.hello(role: "worker", scene: "")
            _ = try worker.wait(worker.pull([SparsePull(tableID: 1, keys: [1, 2, 3])]))
            try worker.wait(worker.push([SparseGradient(tableID: 1, keys: [1], values: [0.1, 0.2, 0.3, 0.4])]))
            XCTAssertEqual(try admin.snapshot(.save, name: "before"), 3)
            let before = rows(server)
            XCTAssertEqual(before.count, 3)

            assertDenied(try worker.shutdownServers(reason: "test"), "shutdown")
            assertDenied(try worker.snapshot(.restore, name: "before"), "snapshot")
            assertDenied(try worker.snapshot(.save, name: "mine"), "snapshot")
            let driver = try CheckpointDriver(endpoints: [server.endpoint], curve: try CurveKeys.client(dir: dir, role: .worker),
                                              logger: Self.quietLogger())
            var o = CheckpointDriver.Options(dir: dir)
            o.requestTimeout = .seconds(5)
            XCTAssertThrowsError(try driver.checkpoint(o)) { e in
                XCTAssertTrue("\(e)".contains("PERMISSION_DENIED") || "\(e)".contains("admin key"), "\(e)")
            }
            XCTAssertFalse(server.isStopping, "threads=\(threads)")
            XCTAssertEqual(rows(server), before, "a refused request changed rows (threads=\(threads))")
            XCTAssertEqual(try worker.stats().first?.tables.first?.rows, 3)
            // The admin key may do it all.
            XCTAssertEqual(try admin.snapshot(.restore, name: "before"), 3)
            try admin.shutdownServers(reason: "test over")
            XCTAssertTrue(server.wait(timeout: .seconds(5)))
        }
    }

    func testClientWithoutAListedKeyIsNotServed() throws {
        let server = try startServer(threads: 2)
        defer { server.shutdown() }
        let admin = try client(server, try CurveKeys.client(dir: dir, role: .admin))
        try admin.declare([Self.item])
        _ = try admin.wait(admin.pull([SparsePull(tableID: 1, keys: [5])]))
        let before = rows(server)
        let requestsBefore = server.handler.stats().requests

        // No key: the CURVE handshake never completes, so nothing it sends reaches the handler.
        let plain = try client(server, nil, timeout: .milliseconds(1500))
        XCTAssertThrowsError(try plain.hello(role: "plain", scene: "")) { e in
            guard case PSClientError.timedOut = e else { return XCTFail("expected no answer, got \(e)") }
        }
        // A well-formed key that the authorized list does not hold: refused by the ZAP handler.
        let stranger = CurveClientKeys(client: try CurveKeyPair.generate(), serverPublicKey: try CurveKeys.server(dir: dir).server.publicKey,
                                       role: .admin)
        let s = try client(server, stranger, timeout: .milliseconds(1500))
        XCTAssertThrowsError(try s.shutdownServers(reason: "stranger")) { e in
            guard case PSClientError.timedOut = e else { return XCTFail("expected no answer, got \(e)") }
        }
        XCTAssertFalse(server.isStopping)
        XCTAssertEqual(rows(server), before)
        XCTAssertEqual(server.handler.stats().requests, requestsBefore, "a request of an unlisted client reached the handler")
    }
}
