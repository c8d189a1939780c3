import Foundation

/// A JSON value kept as it was given (the manifest's caller-supplied
/// `progress`: the coordinator's data progress and state, opaque here).
public indirect enum JSONValue: Codable, Sendable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Double.self) { self = .number(n) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .number(let n): try c.encode(n)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }

    /// `value` as a JSON tree (what a typed progress is stored as).
    public init<T: Encodable>(encoding value: T) throws {
        self = try JSONDecoder().decode(JSONValue.self, from: try JSONEncoder().encode(value))
    }

    /// This tree as a `T` (how a typed progress is read back).
    public func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try JSONDecoder().decode(T.self, from: try JSONEncoder().encode(self))
    }

    /// Parses `data`, which must hold one JSON object.
    public static func object(from data: Data, what: String) throws -> JSONValue {
        let v: JSONValue
        do { v = try JSONDecoder().decode(JSONValue.self, from: data) } catch {
            throw ScenePSError(.checkpoint, "\(what): not valid JSON (\(error))")
        }
        guard case .object = v else { throw ScenePSError(.checkpoint, "\(what): must be a JSON object ({...})") }
        return v
    }
}

/// `DIR/<name>/manifest.json`: what a checkpoint holds. Written last, after
/// every shard file is complete and synced, to a temporary name, synced and
/// renamed; a directory without it is an incomplete checkpoint and is never
/// restored. See docs/CHECKPOINTS.md.
public struct CheckpointManifest: Codable, Sendable, Equatable {
    public static let formatName = "sceneps-checkpoint"
    public static let currentVersion = 1
    public static let fileName = "manifest.json"

    public struct Optimiser: Codable, Sendable, Equatable {
        public var name: String           // "adam"
        public var learning_rate: Float
        public var beta1: Float
        public var beta2: Float
        public var epsilon: Float
        public var l2: Float
        public init(name: String, learning_rate: Float, beta1: Float, beta2: Float, epsilon: Float, l2: Float) {
            self.name = name; self.learning_rate = learning_rate; self.beta1 = beta1
            self.beta2 = beta2; self.epsilon = epsilon; self.l2 = l2
        }
    }

    public struct Table: Codable, Sendable, Equatable {
        public var id: UInt32
        public var name: String
        public var kind: String           // "sparse" | "dense"
        public var dim: UInt32
        public var dense_size: UInt64
        public var `init`: String         // "zeros" | "uniform" | "normal"
        public var init_scale: Float
        public var seed: UInt64
        public var frozen: Bool
        public var optimiser: Optimiser
        /// Sparse rows over all shards (dense: dense_size).
        public var rows: UInt64
        public init(id: UInt32, name: String, kind: String, dim: UInt32, dense_size: UInt64, init: String,
                    init_scale: Float, seed: UInt64, frozen: Bool, optimiser: Optimiser, rows: UInt64) {
            self.id = id; self.name = name; self.kind = kind; self.dim = dim; self.dense_size = dense_size
            self.`init` = `init`; self.init_scale = init_scale; self.seed = seed; self.frozen = frozen
            self.optimiser = optimiser; self.rows = rows
        }
    }

    public struct Shard: Codable, Sendable, Equatable {
        public var index: Int
        public var file: String           // relative to the checkpoint directory
        public var bytes: UInt64
        public var checksum: String       // "xxh64:<16 hex digits>" of the whole file
        public var rows: UInt64           // sparse rows in the file
        public var applied_pushes: UInt64 // pushes this shard had applied at the cut
        public init(index: Int, file: String, bytes: UInt64, checksum: String, rows: UInt64, applied_pushes: UInt64) {
            self.index = index; self.file = file; self.bytes = bytes; self.checksum = checksum
            self.rows = rows; self.applied_pushes = applied_pushes
        }
    }

    /// How the cut went (informational).
    public struct Cut: Codable, Sendable, Equatable {
        public var push_stall_ms: Double  // longest time any push waited because of this checkpoint
        public var held_pushes: UInt64    // pushes that arrived during the hold, applied after the cut
        public var hold_ms: Double        // longest time a server's push gate was closed
        public var write_seconds: Double  // slowest server's write (after the cut was released)
        public init(push_stall_ms: Double, held_pushes: UInt64, hold_ms: Double, write_seconds: Double) {
            self.push_stall_ms = push_stall_ms; self.held_pushes = held_pushes
            self.hold_ms = hold_ms; self.write_seconds = write_seconds
        }
    }

    public var format: String
    public var format_version: Int
    public var name: String
    public var created: String            // ISO 8601, UTC
    public var created_unix: Double
    public var shard_count: Int
    /// Pushes applied over all servers at the cut (each server's count of
    /// acknowledged, non-duplicate push requests, summed).
    public var global_step: UInt64
    public var tags: [String]
    public var tables: [Table]
    public var shards: [Shard]
    public var cut: Cut
    /// Supplied by the caller (the coordinator's data progress and state), kept as given.
    public var progress: JSONValue

    public init(name: String, created: Date, shardCount: Int, globalStep: UInt64, tags: [String],
                tables: [Table], shards: [Shard], cut: Cut, progress: JSONValue) {
        format = CheckpointManifest.formatName
        format_version = CheckpointManifest.currentVersion
        self.name = name
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        self.created = f.string(from: created)
        created_unix = created.timeIntervalSince1970
        shard_count = shardCount
        global_step = globalStep
        self.tags = tags
        self.tables = tables
        self.shards = shards
        self.cut = cut
        self.progress = progress
    }

    public static func shardFileName(index: Int, count: Int) -> String {
        String(format: "shard-%05d-of-%05d.ckpt", index, count)
    }

    /// Reads and checks the manifest of checkpoint directory `dir`: present,
    /// parseable, this format and version, a shard entry per shard.
    public static func load(dir: String) throws -> CheckpointManifest {
        let path = (dir as NSString).appendingPathComponent(fileName)
        guard FileManager.default.fileExists(atPath: path) else {
            throw ScenePSError(.checkpoint, "\(path): missing (an incomplete checkpoint: the manifest is written last)")
        }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw ScenePSError(.checkpoint, "\(path): cannot read (\(error.localizedDescription))")
        }
        // Version first, so a newer format gets a clear message rather than a decoding error.
        struct Head: Decodable { var format: String?; var format_version: Int? }
        guard let head = try? JSONDecoder().decode(Head.self, from: data) else {
            throw ScenePSError(.checkpoint, "\(path): not a JSON manifest (check: parse)")
        }
        guard head.format == formatName else {
            throw ScenePSError(.checkpoint, "\(path): format is '\(head.format ?? "none")', expected '\(formatName)' (check: format)")
        }
        guard head.format_version == currentVersion else {
            throw ScenePSError(.checkpoint, "\(path): format_version \(head.format_version.map(String.init) ?? "none") is not supported (this build reads \(currentVersion)) (check: format_version)")
        }
        let m: CheckpointManifest
        do { m = try JSONDecoder().decode(CheckpointManifest.self, from: data) } catch {
            throw ScenePSError(.checkpoint, "\(path): malformed manifest (\(error)) (check: schema)")
        }
        guard m.shard_count >= 1, m.shards.count == m.shard_count,
              Set(m.shards.map(\.index)) == Set(0..<m.shard_count) else {
            throw ScenePSError(.checkpoint, "\(path): shard_count \(m.shard_count) but shard entries \(m.shards.map(\.index).sorted()) (check: shards)")
        }
        return m
    }

    /// Writes the manifest into `dir` atomically: temporary name, fsync,
    /// rename, fsync of the directory.
    public func write(dir: String) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try enc.encode(self)
        try DurableFile.writeAtomically(data, to: (dir as NSString).appendingPathComponent(CheckpointManifest.fileName))
    }
}

/// Files written so that a crash leaves either the old state or the whole
/// new file: temporary name, fsync, rename, fsync of the directory.
public enum DurableFile {
    public static func writeAtomically(_ data: Data, to path: String) throws {
        let tmp = path + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw ScenePSError(.io, "\(tmp): cannot create (\(String(cString: strerror(errno))))") }
        var ok = true
        var err: Int32 = 0
        data.withUnsafeBytes { raw in
            var off = 0
            while off < raw.count {
                let n = Foundation.write(fd, raw.baseAddress! + off, raw.count - off)
                if n < 0 { if errno == EINTR { continue }; ok = false; err = errno; return }
                off += n
            }
        }
        if ok && fsync(fd) != 0 { ok = false; err = errno }
        close(fd)
        guard ok else {
            unlink(tmp)
            throw ScenePSError(.io, "\(tmp): write failed (\(String(cString: strerror(err))))")
        }
        guard rename(tmp, path) == 0 else {
            let e = errno
            unlink(tmp)
            throw ScenePSError(.io, "\(path): rename from \(tmp) failed (\(String(cString: strerror(e))))")
        }
        syncDirectory((path as NSString).deletingLastPathComponent)
    }

    /// fsync of a directory, so a rename in it is durable.
    public static func syncDirectory(_ dir: String) {
        let fd = open(dir.isEmpty ? "." : dir, O_RDONLY)
        if fd >= 0 { _ = fsync(fd); close(fd) }
    }
}

/// The checkpoints under a directory, for `latest`, `latest-good` and pruning.
public enum CheckpointDirectory {
    public struct Entry: Sendable {
        public var name: String
        public var path: String
        /// nil: no readable manifest of this format (incomplete or damaged).
        public var manifest: CheckpointManifest?
        public var problem: String?
    }

    /// Every subdirectory of `dir`, complete ones (with a readable manifest)
    /// newest first, then the others.
    public static func list(_ dir: String) throws -> [Entry] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
            throw ScenePSError(.checkpoint, "\(dir): checkpoint directory does not exist")
        }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        var out: [Entry] = []
        for n in names where !n.hasPrefix(".") {
            let p = (dir as NSString).appendingPathComponent(n)
            var d: ObjCBool = false
            guard FileManager.default.fileExists(atPath: p, isDirectory: &d), d.boolValue else { continue }
            do { out.append(Entry(name: n, path: p, manifest: try CheckpointManifest.load(dir: p), problem: nil)) }
            catch { out.append(Entry(name: n, path: p, manifest: nil, problem: "\(error)")) }
        }
        return out.sorted { a, b in
            switch (a.manifest, b.manifest) {
            case let (x?, y?): return x.created_unix != y.created_unix ? x.created_unix > y.created_unix : a.name > b.name
            case (.some, .none): return true
            case (.none, .some): return false
            default: return a.name < b.name
            }
        }
    }

    /// Removes complete checkpoints beyond the newest `keep`, except those
    /// carrying a protected tag, and incomplete directories last changed
    /// before the newest complete one was started (dead: servers take one
    /// checkpoint at a time). Returns the removed names.
    @discardableResult
    public static func prune(_ dir: String, keep: Int, protectedTags: Set<String> = ["best"]) throws -> [String] {
        let entries = try list(dir)
        let complete = entries.filter { $0.manifest != nil }
        var removed: [String] = []
        for (i, e) in complete.enumerated() where i >= keep {
            if !protectedTags.isDisjoint(with: e.manifest!.tags) { continue }
            try? FileManager.default.removeItem(atPath: e.path)
            removed.append(e.name)
        }
        if let newest = complete.first {
            let newestTime = newest.manifest!.created_unix
            for e in entries where e.manifest == nil {
                let attrs = try? FileManager.default.attributesOfItem(atPath: e.path)
                if let m = attrs?[.modificationDate] as? Date, m.timeIntervalSince1970 < newestTime {
                    try? FileManager.default.removeItem(atPath: e.path)
                    removed.append(e.name)
                }
            }
        }
        return removed
    }
}
