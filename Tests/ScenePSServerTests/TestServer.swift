import CZeroMQ
import Logging
import ScenePSCore
import ScenePSProtocol
import ScenePSTransport
import XCTest
@testable import ScenePSServer

/// An in-process server on a free loopback port (bound to `tcp://127.0.0.1:*`,
/// the port read back from ZMQ_LAST_ENDPOINT), plus a raw DEALER to it.
final class TestServer {
    let server: PSServer
    let endpoint: String
    let context: ZMQContext
    let raw: ZMQSocket
    private var nextID: UInt64 = 1000

    /// - restore: a checkpoint directory to load before serving.
    init(shardIndex: Int = 0, shardCount: Int = 1, threads: Int = 2, maxMessageBytes: Int = 1 << 20,
         checkpointDir: String? = nil, restore: String? = nil) throws {
        var opts = PSServerOptions(shardIndex: shardIndex, shardCount: shardCount, bind: "tcp://127.0.0.1:*")
        opts.threads = threads
        opts.maxMessageBytes = maxMessageBytes
        opts.checkpointDir = checkpointDir
        var logger = Logger(label: "test-server")
        logger.logLevel = .critical   // the rejected requests are expected here
        server = try PSServer(options: opts, logger: logger)
        if let restore { _ = try CheckpointRestore.restore(path: restore, into: server) }
        endpoint = try server.start()
        context = try ZMQContext()
        raw = try ZMQSocket(context, type: .dealer, lingerMilliseconds: 0)
        try raw.connect(endpoint)
    }

    func stop() {
        raw.close()
        server.shutdown(timeout: .seconds(5))
    }

    func takeID() -> UInt64 { nextID += 1; return nextID }

    /// Sends raw bytes and waits (bounded) for one reply.
    func exchange(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) throws -> Envelope {
        try raw.send(bytes: bytes)
        let ready = try ZMQPoll.readable([raw], timeoutMilliseconds: 5000)
        guard ready[0], let frames = try raw.receive(dontWait: true), let last = frames.last else {
            throw ScenePSError(.timeout, "no reply from test server within 5 s")
        }
        return try last.withUnsafeBytes { b throws(WireDecodingError) in try WireCodec.decode(b) }
    }

    func request(_ body: Body, id: UInt64? = nil, sender: String = "raw-test") throws -> Envelope {
        try exchange(WireCodec.encode(Envelope(requestID: id ?? takeID(), sender: sender, body: body)))
    }

    /// Every sparse row and dense slice of the server, for "state unchanged" checks.
    func snapshot() -> [String] {
        var out: [String] = []
        for t in server.registry.all() {
            switch t {
            case .sparse(let s):
                var rows: [(UInt64, String)] = []
                s.forEachRow { key, w, st, step in rows.append((key, "\(Array(w))|\(Array(st))|\(step)")) }
                out += rows.sorted { $0.0 < $1.0 }.map { "\(s.spec.id):\($0.0)=\($0.1)" }
            case .dense(let d):
                let snap = d.snapshot()
                out.append("\(d.spec.id):dense=\(snap.weights)|\(snap.state)|\(snap.step)")
            }
        }
        return out
    }
}

func XCTAssertError(_ env: Envelope, _ status: ScenePSProtocol.Status, contains text: String,
                    file: StaticString = #filePath, line: UInt = #line) {
    guard case .error(let e) = env.body else {
        return XCTFail("expected error \(status), got \(env.body.kindName)", file: file, line: line)
    }
    XCTAssertEqual(e.status, status, e.message, file: file, line: line)
    XCTAssertTrue(e.message.contains(text), "message '\(e.message)' should mention '\(text)'", file: file, line: line)
}
