import CMalloc
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
///       sparse: rows u64, then rows records of record_bytes: the in-memory
///               record, `SparseRecordLayout` (key, step, weights, the optimiser's state)
///       dense:  dense_size u64 | lower u64 | count u64 | step u32 | 0 u32,
///               weights f32[count] | state f32[state_width × count] (state-major: Adam's m, then v)
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

/// Streams a file through an aligned buffer, hashing what it writes;
/// `finish` syncs and renames it into place. Any failure removes the
/// temporary file.
///
/// The file is written with O_DIRECT when the file system takes it: full
/// 8 MiB buffers go from the (reused, always resident) buffer to the disk,
/// so a checkpoint neither copies its gigabytes into the page cache nor
/// evicts what training has cached there (measured: BENCHMARKS.md,
/// "Checkpoints"). The last piece is padded to the block size and the file
/// truncated back to its length before the fsync. Where O_DIRECT is refused
/// (tmpfs, some network file systems) the writer falls back to buffered
/// writes, starting the disk's writeback every 16 MiB so the final fsync
/// waits for the tail only.
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
    private(set) var direct: Bool
    private var writebackFrom: UInt64 = 0
    static let writebackBytes: UInt64 = 16 << 20
    static let alignment = 4096

    /// The fault point armed for this file's checkpoint.
    let fault: String

    init(path: String, fault: String = "", bufferBytes: Int = 8 << 20) throws {
        precondition(bufferBytes > 0 && bufferBytes % DurableWriter.alignment == 0)
        self.path = path
        self.fault = fault
        tmp = path + ".tmp"
        var f = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT, 0o644)
        direct = f >= 0
        if f < 0 && errno == EINVAL { f = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o644) }
        guard f >= 0 else { throw ScenePSError(.io, "\(tmp): cannot create (\(String(cString: strerror(errno))))") }
        fd = f
        capacity = bufferBytes
        buffer = .allocate(byteCount: bufferBytes, alignment: DurableWriter.alignment)
    }

    deinit {
        buffer.deallocate()
        if !closed { close(fd); unlink(tmp) }
    }

    func write(_ raw: UnsafeRawBufferPointer) throws {
        guard var src = raw.baseAddress else { return }
        var n = raw.count
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

    /// Writes the buffer out: whole when full; the last, partial one padded
    /// with zeros to the block size under O_DIRECT (truncated off in `finish`).
    private func flush() throws {
        guard used > 0 else { return }
        let data = UnsafeRawBufferPointer(start: buffer, count: used)
        hasher.update(data)
        var out = used
        if direct && used % DurableWriter.alignment != 0 {
            out = (used + DurableWriter.alignment - 1) / DurableWriter.alignment * DurableWriter.alignment
            memset(buffer + used, 0, out - used)
        }
        try emit(UnsafeRawBufferPointer(start: buffer, count: out))
        bytes += UInt64(used)
        used = 0
    }

    /// Writes `raw` (already hashed) at the current end of the file.
    private func emit(_ raw: UnsafeRawBufferPointer) throws {
        writes += 1
        if writes == 1 && fault == "enospc" {
            throw ScenePSError(.io, "\(tmp): write failed (\(String(cString: strerror(ENOSPC)))) [fault point enospc]")
        }
        var off = 0
        while off < raw.count {
            let n = pwrite(fd, raw.baseAddress! + off, raw.count - off, off_t(bytes) + off_t(off))
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EINVAL && direct {
                    // The file system took O_DIRECT at open but not for this write: go on buffered.
                    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_DIRECT)
                    direct = false
                    continue
                }
                throw ScenePSError(.io, "\(tmp): write failed (\(String(cString: strerror(errno))))")
            }
            off += n
        }
        if writes == 1 && fault == "mid-shard-write" { kill(getpid(), SIGKILL) }
        if !direct && bytes + UInt64(raw.count) - writebackFrom >= DurableWriter.writebackBytes {
            let end = bytes + UInt64(raw.count)
            _ = sceneps_start_writeback(fd, Int64(writebackFrom), Int64(end - writebackFrom))
            writebackFrom = end
        }
    }

    /// Flushes, fsyncs, closes and renames into place. Returns size and checksum.
    func finish() throws -> (bytes: UInt64, checksum: UInt64) {
        let padded = direct && used % DurableWriter.alignment != 0
        try flush()
        if padded {
            guard ftruncate(fd, off_t(bytes)) == 0 else {
                throw ScenePSError(.io, "\(tmp): truncate failed (\(String(cString: strerror(errno))))")
            }
        }
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

/// A shard file read front to back through one reused buffer, hashed as it
/// arrives and parsed with every length bounds-checked. Sparse rows are
/// handed to `onRecords` in batches as they stream past (a restore inserts
/// them into fresh tables that are only installed once everything, the
/// checksum last, has passed), so a file is never held in memory whole.
final class ShardFileContents {
    struct SparseSection { var id: UInt32; var layout: SparseRecordLayout; var optimizer: any Optimizer; var rows: Int
                           var recordBytes: Int { layout.bytes } }
    struct DenseSection { var id: UInt32; var denseSize: UInt64; var lower: Int; var count: Int; var step: UInt32; var weights: [Float]; var state: [Float]; var stateWidth: Int }
    let path: String
    let size: Int
    var shardIndex = 0, shardCount = 0
    var appliedPushes: UInt64 = 0
    var sparse: [UInt32: SparseSection] = [:]
    var dense: [UInt32: DenseSection] = [:]
    var dedup: [DedupWindow.Entry] = []
    /// The reader thread's time paging the file in and hashing it (overlaps the parser's work).
    var readSeconds = 0.0
    /// The parser's time checking rows.
    var checkSeconds = 0.0

    /// Reads and checks `path` against its manifest entry (size, checksum),
    /// the header against `header`, each table against `specs`, every row's
    /// invariants. `onSection(table, rows)` announces a sparse table's rows;
    /// `onRecords(table, batch)` then gets them, checked, in batches.
    init(path: String, expected: CheckpointManifest.Shard, header: (index: Int, count: Int),
         specs: [UInt32: TableSpec], onSection: (UInt32, Int) throws -> Void = { _, _ in },
         onRecords: (UInt32, UnsafeRawBufferPointer) throws -> Void) throws {
        self.path = path
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw ScenePSError(.checkpoint, "\(path): missing (check: shard file present)")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw ScenePSError(.checkpoint, "\(path): not a regular file (check: shard file present)") }
        guard UInt64(st.st_size) == expected.bytes else {
            throw ScenePSError(.checkpoint, "\(path): \(st.st_size) bytes, the manifest says \(expected.bytes) (check: size; truncated or overwritten)")
        }
        size = Int(st.st_size)
        let r = try StreamReader(path: path, size: size)
        try parse(r, expected: expected, header: header, specs: specs, onSection: onSection, onRecords: onRecords)
        let sum = r.hasher.finalize()
        readSeconds = r.hashSeconds
        guard XXH64.format(sum) == expected.checksum else {
            throw ScenePSError(.checkpoint, "\(path): checksum \(XXH64.format(sum)), the manifest says \(expected.checksum) (check: checksum; the file is damaged)")
        }
    }

    private func parse(_ r: StreamReader, expected: CheckpointManifest.Shard, header: (index: Int, count: Int),
                       specs: [UInt32: TableSpec], onSection: (UInt32, Int) throws -> Void,
                       onRecords: (UInt32, UnsafeRawBufferPointer) throws -> Void) throws {
        func fail(_ what: String, _ check: String = "layout") -> ScenePSError {
            ScenePSError(.checkpoint, "\(path): \(what) at byte \(r.offset) (check: \(check))")
        }
        guard try r.bytes(8) == CheckpointFile.magic else { throw fail("not a ScenePS shard file (bad magic)") }
        let version = try r.u32()
        guard version == CheckpointFile.version else { throw fail("shard file version \(version), this build reads \(CheckpointFile.version)", "version") }
        shardIndex = Int(try r.u32()); shardCount = Int(try r.u32())
        guard shardIndex == header.index, shardCount == header.count else {
            throw fail("header says shard \(shardIndex) of \(shardCount), the manifest says \(header.index) of \(header.count)", "header")
        }
        let tables = try r.u32()
        appliedPushes = try r.u64()
        guard appliedPushes == expected.applied_pushes else {
            throw fail("applied pushes \(appliedPushes), the manifest says \(expected.applied_pushes)", "header")
        }
        for _ in 0..<tables {
            guard try r.u32() == CheckpointFile.tableTag else { throw fail("expected a table section") }
            let id = try r.u32(), kind = try r.u32(), dim = try r.u32(), width = try r.u32(), recordBytes = Int(try r.u32())
            guard sparse[id] == nil && dense[id] == nil else { throw fail("table \(id) appears twice") }
            guard let spec = specs[id] else { throw fail("table \(id) is not in the manifest", "schema") }
            // The state the table's optimiser keeps per weight (its own count and check).
            let optimizer = Optimizers.make(for: spec)
            guard width == optimizer.stateWidth else {
                throw fail("table \(id) '\(spec.name)': state width \(width), its optimiser \(optimizer.name) keeps \(optimizer.stateWidth) (\(optimizer.stateNames.joined(separator: ", ")))", "schema")
            }
            switch kind {
            case 0:
                guard spec.kind == .sparse else { throw fail("table \(id) '\(spec.name)' is sparse here, \(spec.kind) in the manifest", "schema") }
                guard dim == spec.dim else { throw fail("table \(id) '\(spec.name)' has dim \(dim), the manifest says \(spec.dim)", "schema") }
                let layout = SparseRecordLayout(dim: Int(dim), stateWidth: Int(width))
                guard dim >= 1, dim <= 1 << 16, recordBytes == layout.bytes else {
                    throw fail("table \(id): sparse record of \(recordBytes) bytes does not fit dim \(dim), state width \(width)")
                }
                let rows = try r.u64()
                guard rows <= UInt64(size) / UInt64(recordBytes) else { throw fail("table \(id): \(rows) rows cannot fit the file") }
                let sec = SparseSection(id: id, layout: layout, optimizer: optimizer, rows: Int(rows))
                sparse[id] = sec
                try onSection(id, Int(rows))
                var done = 0
                try r.records(count: Int(rows), size: recordBytes) { batch in
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    try checkRowsInParallel(sec, name: spec.name, batch, firstRow: done)
                    checkSeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
                    done += batch.count / recordBytes
                    try onRecords(id, batch)
                }
            case 1:
                guard spec.kind == .dense else { throw fail("table \(id) '\(spec.name)' is dense here, \(spec.kind) in the manifest", "schema") }
                guard dim == 1 else { throw fail("table \(id): dense section with dim \(dim), state width \(width)") }
                let total = try r.u64(), lower = try r.u64(), count = try r.u64()
                let want = Sharding.denseRange(size: Int(spec.denseSize), server: shardIndex, servers: shardCount)
                guard total == spec.denseSize, lower == UInt64(want.lowerBound), count == UInt64(want.count) else {
                    throw fail("dense table \(id) '\(spec.name)' holds [\(lower), +\(count)) of \(total), expected [\(want.lowerBound), \(want.upperBound)) of \(spec.denseSize)", "schema")
                }
                let step = try r.u32(); _ = try r.u32()
                let weights = try r.floats(Int(count)), state = try r.floats(Int(count) * optimizer.stateWidth)
                guard allFinite(weights), allFinite(state) else { throw fail("dense table \(id) '\(spec.name)': NaN or Inf", "finite") }
                if let (_, problem, check) = state.withUnsafeBufferPointer({ b in
                    b.baseAddress.flatMap { optimizer.checkRestored(state: $0, count: Int(count), rows: 1, stride: 0) }
                }) {
                    throw fail("dense table \(id) '\(spec.name)': \(problem)", check)
                }
                dense[id] = DenseSection(id: id, denseSize: total, lower: Int(lower), count: Int(count), step: step,
                                         weights: weights, state: state, stateWidth: optimizer.stateWidth)
            default:
                throw fail("table \(id): unknown kind \(kind)")
            }
        }
        let missing = Set(specs.keys).subtracting(sparse.keys).subtracting(dense.keys)
        guard missing.isEmpty else { throw fail("tables \(missing.sorted()) of the manifest are missing", "schema") }
        let rows = sparse.values.reduce(0) { $0 + $1.rows }
        guard UInt64(rows) == expected.rows else { throw fail("\(rows) sparse rows, the manifest says \(expected.rows)", "rows") }
        guard try r.u32() == CheckpointFile.dedupTag else { throw fail("expected the de-duplication section") }
        let senders = try r.u32()
        for _ in 0..<senders {
            let n = Int(try r.u32())
            guard n <= 4096 else { throw fail("sender name of \(n) bytes") }
            let name = String(decoding: try r.bytes(n), as: UTF8.self)
            let ids = Int(try r.u32())
            guard ids <= 1 << 20 else { throw fail("\(ids) remembered ids for one sender") }
            var list: [(id: UInt64, rows: UInt64)] = []
            list.reserveCapacity(ids)
            for _ in 0..<ids { let i = try r.u64(); let n = try r.u64(); list.append((i, n)) }
            dedup.append(DedupWindow.Entry(sender: name, ids: list))
        }
        let trailerAt = UInt64(r.offset)
        guard try r.u32() == CheckpointFile.endTag, try r.u32() == 0, try r.u64() == trailerAt, r.offset == size else {
            throw fail("bad trailer")
        }
    }

    /// `checkRows` over parts of `batch` on every core; the first error (by row) is thrown.
    func checkRowsInParallel(_ s: SparseSection, name: String, _ batch: UnsafeRawBufferPointer, firstRow: Int) throws {
        let rows = batch.count / s.recordBytes
        let parts = rows >= 4096 ? SparseTable.cores : 1
        if parts == 1 { return try checkRows(s, name: name, batch, firstRow: firstRow) }
        let errors = LockedValue<[Int: Error]>([:])
        let per = (rows + parts - 1) / parts
        let box = UncheckedSendable((self, s, name, batch))
        DispatchQueue.concurrentPerform(iterations: parts) { p in
            let (me, s, name, batch) = box.value
            let lo = p * per, hi = min(rows, lo + per)
            guard lo < hi else { return }
            let part = UnsafeRawBufferPointer(rebasing: batch[(lo * s.recordBytes)..<(hi * s.recordBytes)])
            do { try me.checkRows(s, name: name, part, firstRow: firstRow + lo) } catch {
                errors.update { $0[p] = error }
            }
        }
        if let first = errors.get().min(by: { $0.key < $1.key }) { throw first.value }
    }

    /// Checks sparse rows: weights and state finite, the state one the
    /// optimiser can have reached (Adam: the second moment non-negative), a
    /// row never stepped has zero state, and the key belongs to this file's
    /// shard. Throws naming the file, table, row, key.
    func checkRows(_ s: SparseSection, name: String, _ batch: UnsafeRawBufferPointer, firstRow: Int) throws {
        let d = s.layout.dim, stateFloats = d * s.layout.stateWidth
        let payload = s.layout.floats - s.layout.weightsOffset
        let rows = batch.count / s.recordBytes
        // The optimiser checks the whole batch's state at once; its first bad row is reported in row order.
        let stateProblem = rows == 0 ? nil : s.optimizer.checkRestored(
            state: batch.baseAddress!.assumingMemoryBound(to: Float.self) + s.layout.stateOffset,
            count: d, rows: rows, stride: s.layout.floats)
        for i in 0..<rows {
            let rec = batch.baseAddress! + i * s.recordBytes
            let floats = rec.assumingMemoryBound(to: Float.self)
            let key = rec.loadUnaligned(fromByteOffset: s.layout.keyOffset * 4, as: UInt64.self)
            let step = rec.loadUnaligned(fromByteOffset: s.layout.stepOffset * 4, as: UInt32.self)
            let values = UnsafeBufferPointer(start: floats + s.layout.weightsOffset, count: payload)
            let state = floats + s.layout.stateOffset
            func bad(_ what: String) -> ScenePSError {
                ScenePSError(.checkpoint, "\(path): table \(s.id) '\(name)' row \(firstRow + i) key \(key): \(what)")
            }
            guard allFinite(values) else { throw bad("NaN or Inf in weights or moments (check: finite)") }
            if let p = stateProblem, p.row == i { throw bad("\(p.problem) (check: \(p.check))") }
            if step == 0 {
                for j in 0..<stateFloats where state[j] != 0 { throw bad("moments without a step (check: step)") }
            }
            let owner = Sharding.server(table: s.id, key: key, servers: shardCount)
            guard owner == shardIndex else {
                throw bad("belongs to shard \(owner) of \(shardCount), found in shard \(shardIndex) (check: ownership)")
            }
        }
    }
}

/// Hashes a mapped file ahead of its parser on a thread of its own, block
/// by block in file order (8 MiB; at most `window` blocks ahead). Hashing a
/// block reads it from the disk into the page cache and maps its pages, so
/// the parser only ever touches resident memory and never copies the file
/// (no read() into a buffer: the page cache pages are the buffer), and the
/// disk read, the checksum and the parser's row checks and inserts overlap.
/// The window is wide (256 MiB) so that the disk keeps reading while the
/// parser sizes a table; what it holds is page cache, not the process's memory.
final class ReadAhead: @unchecked Sendable {
    // @unchecked: shared state under `cond`; the mapping is read-only.
    static let blockBytes = 8 << 20
    static let window = 32
    private let cond = NSCondition()
    private var ready = 0               // bytes hashed (and resident) from the start
    private var wanted = 0              // the parser has asked up to here
    private var finished = false, cancelled = false
    private var hasher = XXH64()
    private var hashSeconds = 0.0

    init(base: UnsafeRawPointer?, size: Int) {
        let box = UncheckedSendable(base)
        let t = Thread { [self] in
            var off = 0
            while off < size, let base = box.value {
                cond.lock()
                while off >= wanted + ReadAhead.window * ReadAhead.blockBytes && !cancelled { cond.wait() }
                let stop = cancelled
                cond.unlock()
                if stop { break }
                let n = min(ReadAhead.blockBytes, size - off)
                // Ask the kernel for the block after this one while this one is hashed.
                let next = off + n
                if next < size {
                    _ = madvise(UnsafeMutableRawPointer(mutating: base + next), min(ReadAhead.blockBytes, size - next), Int32(MADV_WILLNEED))
                }
                let t0 = DispatchTime.now().uptimeNanoseconds
                hasher.update(UnsafeRawBufferPointer(start: base + off, count: n))
                let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
                off += n
                cond.lock()
                hashSeconds += dt
                ready = off
                cond.broadcast()
                cond.unlock()
            }
            cond.lock(); finished = true; cond.broadcast(); cond.unlock()
        }
        t.name = "ps-checkpoint-reader"
        t.start()
    }

    /// Waits until the first `bytes` bytes are resident and hashed.
    func wait(upTo bytes: Int) {
        cond.lock(); defer { cond.unlock() }
        if bytes > wanted { wanted = bytes; cond.broadcast() }
        while ready < bytes && !finished { cond.wait() }
    }

    /// Stops the thread, waits for it, and returns the hash of the whole file
    /// when every byte was hashed (nil when stopped early).
    func finish(size: Int) -> (XXH64, Double)? {
        cond.lock()
        cancelled = true
        cond.broadcast()
        while !finished { cond.wait() }
        let r = ready == size ? (hasher, hashSeconds) : nil
        cond.unlock()
        return r
    }
}

/// Sequential reads of a shard file, mapped read-only and parsed in place;
/// `ReadAhead` hashes and pages it in ahead of the parser. The file's size
/// was checked against the manifest before it is opened; one that shrinks
/// while it is read is outside what a restore guards against (docs/CHECKPOINTS.md).
final class StreamReader {
    let path: String
    let size: Int
    private let base: UnsafeRawPointer?
    private var consumed = 0
    private var released = 0           // bytes before this were unmapped from the page tables
    private let ahead: ReadAhead
    private var finalHash: (XXH64, Double)??
    var offset: Int { consumed }
    /// The hash of the whole file: only meaningful once every byte was parsed.
    var hasher: XXH64 { done()?.0 ?? XXH64() }
    var hashSeconds: Double { done()?.1 ?? 0 }

    init(path: String, size: Int) throws {
        self.path = path
        self.size = size
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw ScenePSError(.checkpoint, "\(path): cannot open (\(String(cString: strerror(errno)))) (check: shard file present)") }
        defer { close(fd) }
        if size > 0 {
            let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
            guard let p, p != MAP_FAILED else {
                throw ScenePSError(.checkpoint, "\(path): cannot map (\(String(cString: strerror(errno)))) (check: shard file present)")
            }
            _ = madvise(p, size, Int32(MADV_SEQUENTIAL))
            _ = madvise(p, min(size, ReadAhead.blockBytes), Int32(MADV_WILLNEED))
            base = UnsafeRawPointer(p)
        } else {
            base = nil
        }
        ahead = ReadAhead(base: base, size: size)
    }

    private func done() -> (XXH64, Double)? {
        if let f = finalHash { return f }
        let f = ahead.finish(size: size)
        finalHash = .some(f)
        return f
    }

    deinit {
        _ = done()
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), size) }
    }

    /// Ensures the next `n` bytes exist and are hashed.
    private func need(_ n: Int) throws {
        guard consumed + n <= size else {
            throw ScenePSError(.checkpoint, "\(path): truncated: \(n) bytes needed at byte \(consumed) of \(size) (check: layout)")
        }
        ahead.wait(upTo: consumed + n)
    }

    private func take(_ n: Int) -> UnsafeRawPointer {
        let p = base! + consumed
        consumed += n
        // Parsed blocks leave the page tables (the page cache keeps them): the
        // process's resident size does not grow with the file.
        if consumed - released >= 4 * ReadAhead.blockBytes {
            let upTo = (consumed - ReadAhead.blockBytes) & ~4095
            if upTo > released {
                _ = madvise(UnsafeMutableRawPointer(mutating: base! + released), upTo - released, Int32(MADV_DONTNEED))
                released = upTo
            }
        }
        return p
    }

    func u32() throws -> UInt32 { try need(4); return UInt32(littleEndian: take(4).loadUnaligned(as: UInt32.self)) }
    func u64() throws -> UInt64 { try need(8); return UInt64(littleEndian: take(8).loadUnaligned(as: UInt64.self)) }
    func bytes(_ n: Int) throws -> [UInt8] {
        guard n >= 0, n <= ReadAhead.blockBytes else { throw ScenePSError(.checkpoint, "\(path): field of \(n) bytes at byte \(consumed) (check: layout)") }
        try need(n)
        return Array(UnsafeRawBufferPointer(start: take(n), count: n))
    }
    func floats(_ n: Int) throws -> [Float] {
        guard n >= 0, n <= (size - consumed) / 4 else {
            throw ScenePSError(.checkpoint, "\(path): truncated: \(n) floats needed at byte \(consumed) of \(size) (check: layout)")
        }
        var out = [Float](repeating: 0, count: n)
        var done = 0
        let per = ReadAhead.blockBytes / 4
        while done < n {
            let k = min(per, n - done)
            try need(k * 4)
            let p = take(k * 4)
            out.withUnsafeMutableBytes { $0.baseAddress!.advanced(by: done * 4).copyMemory(from: p, byteCount: k * 4) }
            done += k
        }
        return out
    }

    /// `count` records of `size` bytes, handed over in batches of about a block, in place.
    func records(count: Int, size recordSize: Int, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        let per = max(1, ReadAhead.blockBytes / recordSize)
        var left = count
        while left > 0 {
            let k = min(per, left)
            try need(k * recordSize)
            try body(UnsafeRawBufferPointer(start: take(k * recordSize), count: k * recordSize))
            left -= k
        }
    }
}
