import Foundation
import Logging
import ScenePSCore
import ScenePSProtocol

/// Loading a checkpoint into a server, onto the same or another number of
/// servers, and verifying one without a server (`psctl verify-checkpoint`).
/// Every check runs before any table is touched; a refused checkpoint names
/// the file and the check that failed.
public enum CheckpointRestore {
    public struct Summary: Sendable {
        public var path: String
        public var manifest: CheckpointManifest
        public var filesRead: [String]
        public var rows: Int
        public var bytesRead: UInt64
        public var seconds: Double
        /// Paging the files in and checksumming them (the reader thread, overlapping the rest),
        /// checking every row, and loading the tables (the parser).
        public var readSeconds: Double = 0
        public var checkSeconds: Double = 0
        public var loadSeconds: Double = 0
    }

    /// The checkpoint directory `which` names: a path, or `latest` (the
    /// newest complete one) or `latest-good` (the newest whose every shard
    /// file passes every check and that `accept` accepts) under `dir`.
    public static func resolve(_ which: String, dir: String?, logger: Logger?,
                               accept: (String) throws -> Void) throws -> String {
        guard which == "latest" || which == "latest-good" else {
            try accept(which)
            return which
        }
        guard let dir else { throw ScenePSError(.checkpoint, "--restore \(which) needs --checkpoint-dir") }
        let entries = try CheckpointDirectory.list(dir)
        let complete = entries.filter { $0.manifest != nil }
        for e in entries where e.manifest == nil {
            logger?.warning("skipping incomplete or unreadable checkpoint", metadata: ["ps.checkpoint": "\(e.path)", "ps.reason": "\(e.problem ?? "")"])
        }
        guard !complete.isEmpty else {
            throw ScenePSError(.checkpoint, "\(dir): no complete checkpoint (no subdirectory with a valid \(CheckpointManifest.fileName))")
        }
        if which == "latest" {
            try accept(complete[0].path)
            return complete[0].path
        }
        var problems: [String] = []
        for e in complete {
            do {
                // Every shard file, not only this server's: every server of a
                // cluster must reach the same verdict and restore the same cut.
                _ = try verify(path: e.path)
                try accept(e.path)
                if !problems.isEmpty {
                    logger?.warning("restored an older checkpoint: newer ones failed their checks", metadata: ["ps.checkpoint": "\(e.path)", "ps.refused": "\(problems)"])
                }
                return e.path
            } catch {
                logger?.warning("checkpoint refused, trying an older one", metadata: ["ps.checkpoint": "\(e.path)", "ps.error": "\(error)"])
                problems.append("\(error)")
            }
        }
        throw ScenePSError(.checkpoint, "\(dir): no checkpoint passes its checks: " + problems.joined(separator: "; "))
    }

    /// The manifest's table as a spec this server can create (the mapping
    /// itself is `CheckpointManifest.Table.tableSpec`).
    static func spec(_ t: CheckpointManifest.Table, path: String) throws -> TableSpec {
        let file = "\(path)/\(CheckpointManifest.fileName)"
        let s = try t.tableSpec(manifest: file)
        if let e = TableRegistry.validate(s) {
            throw ScenePSError(.checkpoint, "\(file): table \(t.id) '\(t.name)': \(e.message) (check: schema)")
        }
        return s
    }

    /// Reads and checks shard files `indices` of checkpoint `path`: size,
    /// checksum, layout, header against the manifest, each table against the
    /// manifest's schema, every row's invariants; the checked sparse rows go
    /// to `onRecords(shard, table, batch)` as they stream past.
    static func openShards(path: String, manifest m: CheckpointManifest, indices: [Int], specs: [UInt32: TableSpec],
                           onSection: (UInt32, Int) throws -> Void = { _, _ in },
                           onRecords: (Int, UInt32, UnsafeRawBufferPointer) throws -> Void = { _, _, _ in }) throws -> [ShardFileContents] {
        var out: [ShardFileContents] = []
        for i in indices {
            let entry = m.shards.first { $0.index == i }!
            guard !entry.file.contains("/") else {
                throw ScenePSError(.checkpoint, "\(path)/\(CheckpointManifest.fileName): shard \(i) file '\(entry.file)' is not a plain file name (check: shards)")
            }
            let file = (path as NSString).appendingPathComponent(entry.file)
            out.append(try ShardFileContents(path: file, expected: entry, header: (i, m.shard_count), specs: specs,
                                             onSection: onSection) { table, batch in
                try onRecords(i, table, batch)
            })
        }
        return out
    }

    /// Loads checkpoint `path` into a fresh set of tables for `registry`'s
    /// shard, then installs them (with the de-duplication window and push
    /// count). On any error the server's state is untouched.
    public static func restore(path: String, into server: PSServer) throws -> Summary {
        try restore(path: path, registry: server.registry, handler: server.handler)
    }

    static func restore(path: String, registry: TableRegistry, handler: RequestHandler) throws -> Summary {
        let t0 = Date()
        let m = try CheckpointManifest.load(dir: path)
        var specs: [UInt32: TableSpec] = [:]
        for t in m.tables {
            let s = try spec(t, path: path)
            guard specs.updateValue(s, forKey: s.id) == nil else {
                throw ScenePSError(.checkpoint, "\(path)/\(CheckpointManifest.fileName): table \(s.id) listed twice (check: schema)")
            }
        }
        // Tables this server already has must be the same tables.
        for t in registry.all() {
            guard let s = specs[t.spec.id] else { continue }
            if s.kind != t.spec.kind || s.dim != t.spec.dim || s.denseSize != t.spec.denseSize {
                throw ScenePSError(.checkpoint, "\(path): table \(s.id) '\(s.name)' is \(s.kind) dim=\(s.dim) size=\(s.denseSize) in the checkpoint but \(t.spec.kind) dim=\(t.spec.dim) size=\(t.spec.denseSize) on this server (check: schema)")
            }
        }
        let same = m.shard_count == registry.shardCount
        let indices = same ? [registry.shardIndex] : Array(0..<m.shard_count)
        let fresh = TableRegistry(shardIndex: registry.shardIndex, shardCount: registry.shardCount, stripeBits: registry.stripeBits)
        let ordered = specs.values.sorted { $0.id < $1.id }
        if let e = fresh.declare(DeclareTables(tables: ordered)) {
            throw ScenePSError(.checkpoint, "\(path): tables cannot be created: \(e.message)")
        }
        var sparseTables: [UInt32: SparseTable] = [:]
        for s in ordered { if case .sparse(let t)? = fresh.table(s.id) { sparseTables[s.id] = t } }
        var rows = 0
        var loadSeconds = 0.0
        let me = registry.shardIndex, n = registry.shardCount
        let shards = try openShards(path: path, manifest: m, indices: indices, specs: specs, onSection: { id, rows in
            // Size the index and arena once (re-sharding: about 1/n of each file).
            let t1 = Date()
            sparseTables[id]!.reserve(rows: same ? rows : rows / n + 1024)
            loadSeconds += Date().timeIntervalSince(t1)
        }) { shard, id, batch in
            let t1 = Date()
            let t = sparseTables[id]!
            let result = same ? t.insertRecords(batch) { _ in true }
                              : t.insertRecords(batch) { Sharding.server(table: id, key: $0, servers: n) == me }
            switch result {
            case .success(let k): rows += k
            case .failure(let e): throw ScenePSError(.checkpoint, "\(path) shard \(shard): \(e.message) (check: unique keys)")
            }
            loadSeconds += Date().timeIntervalSince(t1)
        }
        for s in ordered where s.kind == .dense {
            guard case .dense(let d)? = fresh.table(s.id) else { continue }
            let r = d.range, n = r.count, width = d.optimizer.stateWidth
            var w = [Float](repeating: 0, count: n), st = [Float](repeating: 0, count: width * n)
            var covered = 0
            var steps = Set<UInt32>()
            for c in shards {
                let sec = c.dense[s.id]!
                let lo = max(r.lowerBound, sec.lower), hi = min(r.upperBound, sec.lower + sec.count)
                guard lo < hi else { continue }
                steps.insert(sec.step)
                // The overlap of the file's slice and this server's, weights and each state row (state-major).
                let a = lo - r.lowerBound, b = lo - sec.lower, len = hi - lo
                w.replaceSubrange(a..<(a + len), with: sec.weights[b..<(b + len)])
                for k in 0..<width {
                    st.replaceSubrange((k * n + a)..<(k * n + a + len), with: sec.state[(k * sec.count + b)..<(k * sec.count + b + len)])
                }
                covered += hi - lo
            }
            guard covered == n else {
                throw ScenePSError(.checkpoint, "\(path): dense table \(s.id) '\(s.name)': the shard files cover \(covered) of this server's \(n) values (check: dense coverage)")
            }
            if steps.count > 1 {
                handler.logger.warning("dense slices being merged had different step counts; using the largest", metadata: [
                    "ps.table": "\(s.id) '\(s.name)'", "ps.steps": "\(steps.sorted())",
                ])
            }
            d.restore(weights: w, state: st, step: steps.max() ?? 0)
        }
        registry.install(from: fresh)
        for c in shards { handler.dedup.restore(c.dedup) }
        handler.checkpointer.setAppliedPushes(same ? shards[0].appliedPushes : (registry.shardIndex == 0 ? m.global_step : 0))
        let bytes = shards.reduce(UInt64(0)) { $0 + UInt64($1.size) }
        var summary = Summary(path: path, manifest: m, filesRead: shards.map(\.path), rows: rows, bytesRead: bytes,
                              seconds: Date().timeIntervalSince(t0))
        summary.readSeconds = shards.reduce(0) { $0 + $1.readSeconds }
        summary.checkSeconds = shards.reduce(0) { $0 + $1.checkSeconds }
        summary.loadSeconds = loadSeconds
        return summary
    }

    /// Every check of every file of checkpoint `path`, without a server.
    public static func verify(path: String) throws -> (manifest: CheckpointManifest, bytes: UInt64, rows: UInt64) {
        let m = try CheckpointManifest.load(dir: path)
        var specs: [UInt32: TableSpec] = [:]
        for t in m.tables { let s = try spec(t, path: path); specs[s.id] = s }
        var bytes: UInt64 = 0, rows: UInt64 = 0
        for i in 0..<m.shard_count {
            let c = try openShards(path: path, manifest: m, indices: [i], specs: specs)[0]
            bytes += UInt64(c.size)
            rows += UInt64(c.sparse.values.reduce(0) { $0 + $1.rows })
        }
        return (m, bytes, rows)
    }
}

extension TableRegistry {
    /// Takes every table of `other` (a checkpoint restore built them there).
    func install(from other: TableRegistry) {
        let taken = other.all()
        replaceAll(taken)
    }
}
