import Foundation
import Logging
import ScenePSCore
import ScenePSProtocol
import ScenePSTransport
import XCTest
@testable import ScenePSServer

/// Lines a logger was given, for tests.
final class CapturedLog: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [(message: String, metadata: Logger.Metadata)] = []
    func append(_ m: String, _ md: Logger.Metadata) { lock.withLock { lines.append((m, md)) } }
    var all: [(message: String, metadata: Logger.Metadata)] { lock.withLock { lines } }

    func logger() -> Logger {
        Logger(label: "captured") { _ in Handler(log: self) }
    }

    struct Handler: LogHandler {
        let log: CapturedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String,
                 function: String, line: UInt) {
            log.append(message.description, self.metadata.merging(metadata ?? [:]) { _, b in b })
        }
    }
}

/// A flood of garbage costs a log line per peer per interval, with a count, not a line per frame.
final class LogNoiseTests: XCTestCase {
    func testLimiterLogsOncePerKeyPerIntervalAndReportsWhatItHeldBack() {
        var now = 0.0
        let l = LogLimiter(interval: 10, maxKeys: 2, clock: { now })
        XCTAssertEqual(l.admit("a"), .log(heldBack: 0))
        for _ in 0..<99 { XCTAssertEqual(l.admit("a"), .quiet) }
        XCTAssertEqual(l.admit("b"), .log(heldBack: 0))
        XCTAssertEqual(l.admit("c"), .log(heldBack: 0), "past maxKeys, new keys share one entry")
        XCTAssertEqual(l.admit("d"), .quiet)
        now = 10.5
        XCTAssertEqual(l.admit("a"), .log(heldBack: 99))
        let due = l.due()
        XCTAssertEqual(due.map(\.key), [LogLimiter.otherPeers])
        XCTAssertEqual(due.map(\.heldBack), [1])
        XCTAssertTrue(l.due().isEmpty, "reported once")
    }

    func testAGarbageFloodLogsALinePerPeerPerIntervalWithACount() throws {
        let captured = CapturedLog()
        var o = PSServerOptions(shardIndex: 0, shardCount: 1, bind: "tcp://127.0.0.1:*")
        o.logIntervalSeconds = 1
        let server = try PSServer(options: o, logger: captured.logger())
        let endpoint = try server.start()
        defer { server.shutdown() }
        let ctx = try ZMQContext()
        let raw = try ZMQSocket(ctx, type: .dealer, lingerMilliseconds: 0)
        defer { raw.close() }
        try raw.connect(endpoint)
        let n = 2000
        var garbage = SystemRandomNumberGenerator()
        for _ in 0..<n { try raw.send(bytes: (0..<64).map { _ in UInt8.random(in: 0...255, using: &garbage) }) }
        var replies = 0
        let end = Date().addingTimeInterval(30)
        while replies < n && Date() < end {
            if try ZMQPoll.readable([raw], timeoutMilliseconds: 200)[0] { while try raw.receive(dontWait: true) != nil { replies += 1 } }
        }
        XCTAssertEqual(replies, n, "every garbage frame gets an error reply")
        Thread.sleep(forTimeInterval: 1.6)   // the interval passes; the idle handlers report what they held back
        let rejected = captured.all.filter { $0.message == "request rejected" }
        let summaries = captured.all.filter { $0.message == "requests rejected and not logged one by one" }
        XCTAssertEqual(rejected.count, 1, "one line for the first frame of the peer, not \(rejected.count)")
        let held = summaries.compactMap { $0.metadata["ps.held_back"].flatMap { UInt64("\($0)") } }.reduce(0, +)
        XCTAssertEqual(held, UInt64(n - 1), "the rest are counted: \(summaries.map(\.metadata))")
        XCTAssertLessThanOrEqual(captured.all.count, 10, "\(captured.all.map(\.message))")
    }
}
