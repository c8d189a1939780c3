import Foundation
import Logging
import ScenePSCore
import ScenePSProtocol
import ScenePSTransport

/// Drives one cluster-wide checkpoint cut (docs/CHECKPOINTS.md): PREPARE on
/// every server (each holds pushes), COMMIT on every server (each takes its
/// cut and releases pushes), STATUS until every shard file is written, then
/// `manifest.json`, then pruning. `psctl checkpoint` calls it; so will the
/// coordinator. Uses its own sockets (not a `PSClient`), so it can run beside
/// a training client in the same process.
public final class CheckpointDriver {
    public struct Options: Sendable {
        /// Checkpoint directory (shared with the servers: they write their shards there).
        public var dir: String
        /// The checkpoint's name (directory under `dir`); nil: `ckpt-<UTC time>`.
        public var name: String?
        /// Keep the newest K complete checkpoints (nil: keep all). Those with
        /// a tag in `protectedTags` are never pruned.
        public var keep: Int?
        public var tags: [String] = []
        public var protectedTags: Set<String> = ["best"]
        /// Caller's JSON object, stored as the manifest's `progress`.
        public var progress: JSONValue = .object([:])
        /// A server releases its hold by itself after this long without COMMIT.
        public var holdTimeoutMs: UInt32 = 2000
        /// Per control request.
        public var requestTimeout: Duration = .seconds(10)
        /// For all shard files to be written.
        public var writeTimeout: Duration = .seconds(1800)
        public init(dir: String) { self.dir = dir }
    }

    public struct Result: Sendable {
        public var path: String
        public var manifest: CheckpointManifest
        /// Longest time one push waited because of this checkpoint (over the servers).
        public var pushStallMs: Double
        /// Time from the first PREPARE sent to the last COMMIT answered.
        public var cutMs: Double
        public var writeSeconds: Double
        public var bytes: UInt64
        public var pruned: [String]
        /// Rows that pushes copied before the writer reached them (copy-on-write).
        public var preservedRows: UInt64
    }

    public let endpoints: [String]
    private let sender: String
    private let logger: Logger
    private let context: ZMQContext
    private var sockets: [ZMQSocket] = []
    private var nextID: UInt64

    /// - curve: connect as this CURVE client (the admin's: servers refuse checkpoints from a worker key).
    public init(endpoints: [String], sender: String = "checkpoint-driver-\(getpid())", curve: CurveClientKeys? = nil,
                logger: Logger) throws {
        guard !endpoints.isEmpty else { throw ScenePSError.invalidArgument("checkpoint needs at least one server endpoint") }
        self.endpoints = endpoints
        self.sender = sender
        self.logger = logger
        context = try ZMQContext(ioThreads: 1)
        for e in endpoints {
            let s = try ZMQSocket(context, type: .dealer, lingerMilliseconds: 0)
            if let curve { try s.makeCurveClient(curve) }
            try s.connect(e)
            sockets.append(s)
        }
        nextID = UInt64(max(1, Date().timeIntervalSince1970 * 1e6))
    }

    deinit { for s in sockets { s.close() } }

    public static func defaultName(_ date: Date = Date()) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd-HHmmss-SSS"
        return "ckpt-" + f.string(from: date)
    }

    /// One request to every server; the replies by server. A server's
    /// ErrorReply or silence past `timeout` throws, naming the server.
    private func all(_ request: CheckpointRequest, timeout: Duration) throws -> [CheckpointReply] {
        nextID &+= 1
        let id = nextID
        let bytes = WireCodec.encode(Envelope(requestID: id, sender: sender, body: .checkpoint(request)))
        for s in sockets { _ = try s.send(bytes: bytes) }
        var replies = [CheckpointReply?](repeating: nil, count: sockets.count)
        let deadline = ContinuousClock.now + timeout
        while replies.contains(where: { $0 == nil }) {
            let left = deadline - ContinuousClock.now
            let pending = (0..<sockets.count).filter { replies[$0] == nil }
            guard left > .zero else {
                throw ScenePSError(.timeout, "server \(pending[0]) (\(endpoints[pending[0]])) did not answer checkpoint \(request.action) of '\(request.name)' within \(timeout)")
            }
            let ms = max(1, Int(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000))
            let ready = try ZMQPoll.readable(pending.map { sockets[$0] }, timeoutMilliseconds: min(ms, 100))
            for (k, s) in pending.enumerated() where ready[k] {
                while let frames = try sockets[s].receive(dontWait: true), let last = frames.last {
                    let env: Envelope
                    do { env = try last.withUnsafeBytes { b throws(WireDecodingError) in try WireCodec.decode(b) } } catch {
                        throw ScenePSError(.protocolError, "server \(s) (\(endpoints[s])) sent an undecodable reply to checkpoint \(request.action): \(error)")
                    }
                    guard env.requestID == id else { continue }   // a late reply to an earlier request
                    switch env.body {
                    case .checkpointReply(let r): replies[s] = r
                    case .error(let e):
                        throw ScenePSError(.remote, "server \(s) (\(endpoints[s])) refused checkpoint \(request.action) of '\(request.name)': status=\(e.status): \(e.message)")
                    default:
                        throw ScenePSError(.protocolError, "server \(s) (\(endpoints[s])) answered checkpoint \(request.action) with \(env.body.kindName)")
                    }
                }
            }
        }
        return replies.map { $0! }
    }

    /// Best effort: releases any hold of `name` (after a failed PREPARE or COMMIT).
    private func abort(_ name: String, dir: String) {
        do { _ = try all(CheckpointRequest(action: .abort, name: name, dir: dir), timeout: .seconds(2)) } catch {
            logger.warning("checkpoint abort did not reach every server (their holds time out by themselves)", metadata: ["ps.error": "\(error)"])
        }
    }

    /// Takes one checkpoint of the whole cluster. Throws (after releasing the
    /// holds) when any server refuses, is silent, or fails its write; then no
    /// manifest is written and the previous checkpoint stays the latest.
    public func checkpoint(_ o: Options) throws -> Result {
        let dir = URL(fileURLWithPath: o.dir).standardizedFileURL.path
        let name = o.name ?? CheckpointDriver.defaultName()
        guard !name.isEmpty, !name.contains("/"), !name.hasPrefix(".") else {
            throw ScenePSError.invalidArgument("checkpoint name '\(name)' must be non-empty, not start with '.' and not contain '/'")
        }
        guard case .object = o.progress else { throw ScenePSError.invalidArgument("checkpoint progress must be a JSON object") }
        let path = (dir as NSString).appendingPathComponent(name)
        if FileManager.default.fileExists(atPath: path) {
            throw ScenePSError(.checkpoint, "\(path) already exists; choose another --name")
        }
        do { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) } catch {
            throw ScenePSError(.io, "\(dir): cannot create the checkpoint directory (\(error.localizedDescription))")
        }
        let t0 = ContinuousClock.now
        let created = Date()
        do {
            let held = try all(CheckpointRequest(action: .prepare, name: name, dir: dir, holdTimeoutMs: o.holdTimeoutMs), timeout: o.requestTimeout)
            for (i, r) in held.enumerated() where Int(r.shardIndex) != i || Int(r.shardCount) != endpoints.count {
                throw ScenePSError(.checkpoint, "server \(i) (\(endpoints[i])) is shard \(r.shardIndex) of \(r.shardCount); the endpoints list \(endpoints.count) servers in another order or number")
            }
        } catch {
            abort(name, dir: dir)
            throw error
        }
        let committed: [CheckpointReply]
        do {
            committed = try all(CheckpointRequest(action: .commit, name: name, dir: dir), timeout: o.requestTimeout)
        } catch {
            abort(name, dir: dir)
            throw error
        }
        let cutMs = Double((ContinuousClock.now - t0).components.attoseconds) / 1e15 + Double((ContinuousClock.now - t0).components.seconds) * 1000
        // Wait for the shard files.
        let deadline = ContinuousClock.now + o.writeTimeout
        var final: [CheckpointReply]
        while true {
            final = try all(CheckpointRequest(action: .status, name: name, dir: dir), timeout: o.requestTimeout)
            if let (i, f) = final.enumerated().first(where: { $0.element.state == .failed }) {
                // Let the other servers finish their (now useless) shards, so
                // that the next checkpoint is not refused as overlapping.
                while final.contains(where: { $0.state == .writing }) && ContinuousClock.now < deadline {
                    Thread.sleep(forTimeInterval: 0.02)
                    guard let again = try? all(CheckpointRequest(action: .status, name: name, dir: dir), timeout: o.requestTimeout) else { break }
                    final = again
                }
                throw ScenePSError(.checkpoint, "server \(i) (\(endpoints[i])) failed to write its shard of checkpoint '\(name)': \(f.message); no manifest written, the previous checkpoint stays the latest")
            }
            if final.allSatisfy({ $0.state == .done }) { break }
            if let (i, f) = final.enumerated().first(where: { ![.writing, .done].contains($0.element.state) }) {
                throw ScenePSError(.checkpoint, "server \(i) (\(endpoints[i])) reports checkpoint '\(name)' as \(f.state) (\(f.message)); was it restarted?")
            }
            if ContinuousClock.now > deadline {
                throw ScenePSError(.timeout, "checkpoint '\(name)': shard files not written within \(o.writeTimeout)")
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
        // The manifest.
        var specs: [UInt32: TableSpec] = [:]
        var rows: [UInt32: UInt64] = [:]
        for r in final {
            for s in r.tables { specs[s.id] = s }
        }
        for r in committed { for t in r.tableRows { rows[t.id, default: 0] += t.rows } }
        let tables = specs.values.sorted { $0.id < $1.id }.map { CheckpointManifest.Table(spec: $0, rows: rows[$0.id] ?? 0) }
        let shards = final.enumerated().map { i, r in
            CheckpointManifest.Shard(index: i, file: r.file, bytes: r.bytes, checksum: r.checksum, rows: r.rows, applied_pushes: r.appliedPushes)
        }
        let stall = final.map(\.pushStallMs).max() ?? 0
        let writeSeconds = final.map(\.writeSeconds).max() ?? 0
        let cut = CheckpointManifest.Cut(push_stall_ms: stall, held_pushes: final.reduce(0) { $0 + $1.heldPushes },
                                         hold_ms: final.map(\.holdMs).max() ?? 0, write_seconds: writeSeconds)
        let manifest = CheckpointManifest(name: name, created: created, shardCount: endpoints.count,
                                          globalStep: final.reduce(0) { $0 + $1.appliedPushes }, tags: o.tags,
                                          tables: tables, shards: shards, cut: cut, progress: o.progress)
        try manifest.write(dir: path)
        var pruned: [String] = []
        if let k = o.keep { pruned = try CheckpointDirectory.prune(dir, keep: k, protectedTags: o.protectedTags) }
        logger.info("checkpoint written", metadata: ["ps.checkpoint": "\(path)", "ps.push_stall_ms": "\(stall)", "ps.pruned": "\(pruned)"])
        return Result(path: path, manifest: manifest, pushStallMs: stall, cutMs: cutMs, writeSeconds: writeSeconds,
                      bytes: shards.reduce(0) { $0 + $1.bytes }, pruned: pruned,
                      preservedRows: final.reduce(0) { $0 + $1.preservedRows })
    }
}
