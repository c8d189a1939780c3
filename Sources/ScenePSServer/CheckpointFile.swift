import Foundation
import ScenePSCore
import ScenePSProtocol
#if canImport(Glibc)
import Glibc
#endif

/// One server's shard of a checkpoint: a little-endian binary file.
///
///     header   "SPSCKPT\0" | version u32 | shard u32 | shards u32 | tables u32 | applied_pushes u64   (32 bytes)
///     per table, in id order:
///       "TABL" | id u32 | kind u32 (0 sparse, 1 dense) | dim u32 | state_width u32 | record_bytes u32
///       sparse: rows u64, then rows records of record_bytes:
///               key u64 | step u32 | weights f32[dim] | m f32[dim] | v f32[dim]   (the in-memory record)
///       dense:  dense_size u64 | lower u64 | count u64 | step u32 | 0 u32,
///               weights f32[count] | m f32[count] | v f32[count]
///     "DDUP" | senders u32, per sender: name_len u32 | name | ids u32 | (id u64, rows u64)[ids], oldest first
///     "END\0" | 0 u32 | bytes before this trailer u64
///
/// The manifest holds the file's size and XXH64; the reader checks both
/// before it parses anything.
enum CheckpointFile {
    static let magic: [UInt8] = Array("SPSCKPT\0".utf8)
    static let version: UInt32 = 1
    static let tableTag: UInt32 = 0x4C42_4154   // "TABL"
    static let dedupTag: UInt32 = 0x5055_4444   // "DDUP"
    static let endTag: UInt32 = 0x0044_4E45     // "END\0"
}

/// Fault points for tests (`SCENEPS_FAULT_CHECKPOINT`):
/// `mid-shard-write` (SIGKILL after the first buffer is written),
/// `after-shard-write` (SIGKILL once the shard file is complete and renamed,
/// before the server reports it), `enospc` (the first write fails with ENOSPC).
/// `POINT:NAME` limits the fault to the checkpoint called NAME.
public enum CheckpointFaults {
    nonisolated(unsafe) public static var override: String?
    static var configured: String { override ?? ProcessInfo.processInfo.environment["SCENEPS_FAULT_CHECKPOINT"] ?? "" }
    /// The fault point armed for checkpoint `name` ("" for none).
    static func point(for name: String) -> String {
        let parts = configured.split(separator: ":", maxSplits: 1).map(String.init)
        guard let p = parts.first else { return "" }
        return parts.count == 1 || parts[1] == name ? p : ""
    }
}

/// Streams a file through a buffer, hashing what it writes; `finish` syncs
/// and renames it into place. Any failure removes the temporary file.
final class DurableWriter {
    let path: String, tmp: String
    private let fd: Int32
    private var buffer: UnsafeMutableRawPointer
    private let capacity: Int
    private var used = 0
    var usedBytes: Int { used }
    private(set) var bytes: UInt64 = 0
    private var hasher = XXH64()
    private var writes = 0
    private var closed = false

    /// The fault point armed for this file's checkpoint.
    let fault: String

    init(path: String, fault: String = "", bufferBytes: Int = 8 << 20) throws {
        self.path = path
        self.fault = fault
        tmp = path + ".tmp"
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw ScenePSError(.io, "\(tmp): cannot create (\(String(cString: strerror(errno))))") }
        capacity = bufferBytes
        buffer = .allocate(byteCount: bufferBytes, alignment: 64)
    }

    deinit {
        buffer.deallocate()
        if !closed { close(fd); unlink(tmp) }
    }

    func write(_ raw: UnsafeRawBufferPointer) throws {
        var src = raw.baseAddress!, n = raw.count
        while n > 0 {
            if used == capacity { try flush() }
            let take = min(n, capacity - used)
            (buffer + used).copyMemory(from: src, byteCount: take)
            used += take; src += take; n -= take
        }
    }

    func write<T: FixedWidthInteger>(_ x: T) throws {
        var v = x.littleEndian
        try withUnsafeBytes(of: &v) { try write($0) }
    }

    func write(_ floats: [Float]) throws { try floats.withUnsafeBytes { try write($0) } }

    private func flush() throws {
        guard used > 0 else { return }
        hasher.update(UnsafeRawBufferPointer(start: buffer, count: used))
        writes += 1
        if writes == 1 && fault == "enospc" {
            throw ScenePSError(.io, "\(tmp): write failed (\(String(cString: strerror(ENOSPC)))) [fault point enospc]")
        }
        var off = 0
        while off < used {
            let n = Glibc.write(fd, buffer + off, used - off)
            if n < 0 {
                if errno == EINTR { continue }
                throw ScenePSError(.io, "\(tmp): write failed (\(String(cString: strerror(errno))))")
            }
            off += n
        }
        bytes += UInt64(used)
        used = 0
        if writes == 1 && fault == "mid-shard-write" { kill(getpid(), SIGKILL) }
    }

    /// Flushes, fsyncs, closes and renames into place. Returns size and checksum.
    func finish() throws -> (bytes: UInt64, checksum: UInt64) {
        try flush()
        guard fsync(fd) == 0 else { throw ScenePSError(.io, "\(tmp): fsync failed (\(String(cString: strerror(errno))))") }
        close(fd)
        closed = true
        guard rename(tmp, path) == 0 else {
            let e = errno
            unlink(tmp)
            throw ScenePSError(.io, "\(path): rename failed (\(String(cString: strerror(e))))")
        }
        DurableFile.syncDirectory((path as NSString).deletingLastPathComponent)
        return (bytes, hasher.finalize())
    }
}

/// A server's state at a cut, as the writer streams it.
struct CheckpointCut {
    enum Table {
        case sparse(SparseTable, rows: Int)
        case dense(DenseTable, weights: [Float], state: [Float], step: UInt32)
        var spec: TableSpec {
            switch self {
            case .sparse(let t, _): return t.spec
            case .dense(let t, _, _, _): return t.spec
            }
        }
    }
    var name: String
    var dir: String
    var shardIndex: Int
    var shardCount: Int
    var appliedPushes: UInt64
    var tables: [Table]
    var dedup: [DedupWindow.Entry]

    var sparseRows: UInt64 { tables.reduce(0) { if case .sparse(_, let r) = $1 { return $0 + UInt64(r) }; return $0 } }

    /// Writes the shard file; ends every sparse cut whatever happens.
    func write() throws -> (file: String, bytes: UInt64, checksum: UInt64) {
        defer { for t in tables { if case .sparse(let s, _) = t { s.endCut() } } }
        let ckptDir = (dir as NSString).appendingPathComponent(name)
        do { try FileManager.default.createDirectory(atPath: ckptDir, withIntermediateDirectories: true) } catch {
            throw ScenePSError(.io, "\(ckptDir): cannot create (\(error.localizedDescription))")
        }
        let file = CheckpointManifest.shardFileName(index: shardIndex, count: shardCount)
        let fault = CheckpointFaults.point(for: name)
        let w = try DurableWriter(path: (ckptDir as NSString).appendingPathComponent(file), fault: fault)
        try CheckpointFile.magic.withUnsafeBytes { try w.write($0) }
        try w.write(CheckpointFile.version)
        try w.write(UInt32(shardIndex)); try w.write(UInt32(shardCount)); try w.write(UInt32(tables.count))
        try w.write(appliedPushes)
        for t in tables {
            let spec = t.spec
            try w.write(CheckpointFile.tableTag)
            try w.write(spec.id)
            switch t {
            case .sparse(let s, let rows):
                try w.write(UInt32(0)); try w.write(spec.dim); try w.write(UInt32(s.optimizer.stateWidth))
                try w.write(UInt32(s.recordFloats * 4)); try w.write(UInt64(rows))
                let floats = max(s.cutChunkFloatsMax, 1)
                let scratch = UnsafeMutablePointer<Float>.allocate(capacity: floats)
                defer { scratch.deallocate() }
                try s.writeCut(scratch: scratch) { try w.write($0) }
            case .dense(let d, let weights, let state, let step):
                try w.write(UInt32(1)); try w.write(spec.dim); try w.write(UInt32(d.optimizer.stateWidth)); try w.write(UInt32(4))
                try w.write(spec.denseSize); try w.write(UInt64(d.range.lowerBound)); try w.write(UInt64(d.range.count))
                try w.write(step); try w.write(UInt32(0))
                try w.write(weights); try w.write(state)
            }
        }
        try w.write(CheckpointFile.dedupTag)
        try w.write(UInt32(dedup.count))
        for e in dedup {
            let name = Array(e.sender.utf8)
            try w.write(UInt32(name.count))
            try name.withUnsafeBytes { try w.write($0) }
            try w.write(UInt32(e.ids.count))
            for x in e.ids { try w.write(x.id); try w.write(x.rows) }
        }
        let before = w.bytesSoFar
        try w.write(CheckpointFile.endTag); try w.write(UInt32(0)); try w.write(before)
        let (bytes, sum) = try w.finish()
        if fault == "after-shard-write" { kill(getpid(), SIGKILL) }
        return (file, bytes, sum)
    }
}

extension DurableWriter {
    var bytesSoFar: UInt64 { bytes + UInt64(usedBytes) }
}

// MARK: reading

/// A shard file, checked and parsed (the mapping stays open while it lives).
final class ShardFileContents {
    struct SparseSection { var id: UInt32; var dim: UInt32; var stateWidth: UInt32; var recordBytes: Int; var rows: Int; var records: UnsafeRawBufferPointer }
    struct DenseSection { var id: UInt32; var denseSize: UInt64; var lower: Int; var count: Int; var step: UInt32; var weights: [Float]; var state: [Float]; var stateWidth: Int }
    let path: String
    let file: MappedFile
    var shardIndex = 0, shardCount = 0
    var appliedPushes: UInt64 = 0
    var sparse: [UInt32: SparseSection] = [:]
    var dense: [UInt32: DenseSection] = [:]
    var dedup: [DedupWindow.Entry] = []

    /// Maps `path`, checks its size and XXH64 against the manifest entry,
    /// then parses it with every length bounds-checked.
    init(path: String, expected: CheckpointManifest.Shard) throws {
        self.path = path
        guard FileManager.default.fileExists(atPath: path) else {
            throw ScenePSError(.checkpoint, "\(path): missing (check: shard file present)")
        }
        file = try MappedFile(path: path)
        guard UInt64(file.size) == expected.bytes else {
            throw ScenePSError(.checkpoint, "\(path): \(file.size) bytes, the manifest says \(expected.bytes) (check: size; truncated or overwritten)")
        }
        let sum = file.withBytes { XXH64.hash($0) }
        guard XXH64.format(sum) == expected.checksum else {
            throw ScenePSError(.checkpoint, "\(path): checksum \(XXH64.format(sum)), the manifest says \(expected.checksum) (check: checksum; the file is damaged)")
        }
        try file.withBytes { try parse($0) }
    }

    private func parse(_ b: UnsafeRawBufferPointer) throws {
        var at = 0
        func fail(_ what: String) -> ScenePSError {
            ScenePSError(.checkpoint, "\(path): \(what) at byte \(at) (check: layout)")
        }
        func need(_ n: Int) throws { guard n >= 0, at + n <= b.count else { throw fail("truncated: \(n) more bytes needed") } }
        func u32() throws -> UInt32 { try need(4); defer { at += 4 }; return UInt32(littleEndian: b.loadUnaligned(fromByteOffset: at, as: UInt32.self)) }
        func u64() throws -> UInt64 { try need(8); defer { at += 8 }; return UInt64(littleEndian: b.loadUnaligned(fromByteOffset: at, as: UInt64.self)) }
        func floats(_ n: Int) throws -> [Float] {
            let (bytes, o) = n.multipliedReportingOverflow(by: 4)
            guard !o else { throw fail("float count \(n) overflows") }
            try need(bytes)
            defer { at += bytes }
            return Array(UnsafeBufferPointer(start: (b.baseAddress! + at).assumingMemoryBound(to: Float.self), count: n))
        }
        try need(8)
        guard Array(UnsafeRawBufferPointer(rebasing: b[0..<8])) == CheckpointFile.magic else { throw fail("not a ScenePS shard file (bad magic)") }
        at = 8
        let version = try u32()
        guard version == CheckpointFile.version else { throw fail("shard file version \(version), this build reads \(CheckpointFile.version)") }
        shardIndex = Int(try u32()); shardCount = Int(try u32())
        let tables = try u32()
        appliedPushes = try u64()
        for _ in 0..<tables {
            guard try u32() == CheckpointFile.tableTag else { throw fail("expected a table section") }
            let id = try u32(), kind = try u32(), dim = try u32(), width = try u32(), recordBytes = Int(try u32())
            switch kind {
            case 0:
                guard width == 2, dim >= 1, dim <= 1 << 16, recordBytes == Int(3 + dim * (1 + width)) * 4 else {
                    throw fail("table \(id): sparse record of \(recordBytes) bytes does not fit dim \(dim), state width \(width)")
                }
                let rows = try u64()
                guard rows <= UInt64(b.count) else { throw fail("table \(id): \(rows) rows cannot fit the file") }
                let (bytes, o) = Int(rows).multipliedReportingOverflow(by: recordBytes)
                guard !o else { throw fail("table \(id): rows overflow") }
                try need(bytes)
                guard sparse[id] == nil && dense[id] == nil else { throw fail("table \(id) appears twice") }
                sparse[id] = SparseSection(id: id, dim: dim, stateWidth: width, recordBytes: recordBytes, rows: Int(rows),
                                           records: UnsafeRawBufferPointer(rebasing: b[at..<(at + bytes)]))
                at += bytes
            case 1:
                guard width == 2, dim == 1 else { throw fail("table \(id): dense section with dim \(dim), state width \(width)") }
                let size = try u64(), lower = try u64(), count = try u64()
                guard count <= UInt64(b.count), lower <= size, lower + count <= size else {
                    throw fail("table \(id): dense slice [\(lower), +\(count)) outside size \(size)")
                }
                let step = try u32(); _ = try u32()
                let weights = try floats(Int(count)), state = try floats(Int(count) * 2)
                guard sparse[id] == nil && dense[id] == nil else { throw fail("table \(id) appears twice") }
                dense[id] = DenseSection(id: id, denseSize: size, lower: Int(lower), count: Int(count), step: step,
                                         weights: weights, state: state, stateWidth: 2)
            default:
                throw fail("table \(id): unknown kind \(kind)")
            }
        }
        guard try u32() == CheckpointFile.dedupTag else { throw fail("expected the de-duplication section") }
        let senders = try u32()
        for _ in 0..<senders {
            let n = Int(try u32())
            try need(n)
            let name = String(decoding: UnsafeRawBufferPointer(rebasing: b[at..<(at + n)]), as: UTF8.self)
            at += n
            let ids = Int(try u32())
            try need(ids * 16)
            var list: [(id: UInt64, rows: UInt64)] = []
            list.reserveCapacity(ids)
            for _ in 0..<ids { let i = try u64(); let r = try u64(); list.append((i, r)) }
            dedup.append(DedupWindow.Entry(sender: name, ids: list))
        }
        let trailerAt = UInt64(at)
        guard try u32() == CheckpointFile.endTag, try u32() == 0, try u64() == trailerAt, at == b.count else {
            throw fail("bad trailer")
        }
    }

    /// Checks every sparse row of table `id`: weights and moments finite, the
    /// second moment non-negative, a row never stepped has zero moments, and
    /// the key belongs to this file's shard. Throws naming the file, table, key.
    func checkRows(_ s: SparseSection, name: String) throws {
        let d = Int(s.dim)
        let floatsPerRecord = s.recordBytes / 4
        for i in 0..<s.rows {
            let rec = s.records.baseAddress! + i * s.recordBytes
            let key = rec.loadUnaligned(as: UInt64.self)
            let step = rec.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
            let values = UnsafeBufferPointer(start: (rec + 12).assumingMemoryBound(to: Float.self), count: floatsPerRecord - 3)
            func bad(_ what: String) -> ScenePSError {
                ScenePSError(.checkpoint, "\(path): table \(s.id) '\(name)' row \(i) key \(key): \(what)")
            }
            guard allFinite(values) else { throw bad("NaN or Inf in weights or moments (check: finite)") }
            var vMin: Float = 0
            for j in (2 * d)..<(3 * d) { vMin = min(vMin, values[j]) }
            guard vMin >= 0 else { throw bad("negative second moment (check: moments)") }
            if step == 0 {
                for j in d..<(3 * d) where values[j] != 0 { throw bad("moments without a step (check: step)") }
            }
            guard Sharding.server(table: s.id, key: key, servers: shardCount) == shardIndex else {
                throw bad("belongs to shard \(Sharding.server(table: s.id, key: key, servers: shardCount)) of \(shardCount), found in shard \(shardIndex) (check: ownership)")
            }
        }
    }
}
