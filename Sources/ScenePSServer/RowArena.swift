#if canImport(Glibc)
import Glibc
#endif
/// Rows of one stripe in large chunks that never move: row `r` lives at a
/// fixed address for the arena's life, so growing never loses or copies a
/// row. Chunks start small (16 rows) and double up to `maxChunkRows`, so a
/// tiny table costs little and a large one wastes at most one chunk.
struct RowArena {
    static let firstShift = 4
    let recordFloats: Int
    let capShift: Int
    private(set) var chunks: [UnsafeMutablePointer<Float>] = []
    private(set) var rowCapacity = 0
    private(set) var rows = 0

    init(recordFloats: Int, targetChunkBytes: Int = 256 << 10) {
        self.recordFloats = recordFloats
        var shift = RowArena.firstShift
        while shift < 20 && (1 << (shift + 1)) * recordFloats * 4 <= targetChunkBytes { shift += 1 }
        capShift = shift
    }

    /// Rows before the first full-size chunk: 16 + 32 + … + C/2 = C - 16.
    private var geometricRows: Int { (1 << capShift) - (1 << RowArena.firstShift) }
    private var geometricChunks: Int { capShift - RowArena.firstShift }

    /// Index of the first row of chunk `k`.
    func chunkStart(_ k: Int) -> Int {
        k < geometricChunks ? (1 << (RowArena.firstShift + k)) - (1 << RowArena.firstShift)
                            : geometricRows + ((k - geometricChunks) << capShift)
    }

    func chunkRows(_ k: Int) -> Int {
        k < geometricChunks ? (1 << (RowArena.firstShift + k)) : (1 << capShift)
    }

    @inline(__always)
    func record(_ r: Int) -> UnsafeMutablePointer<Float> {
        let g = geometricRows
        if r < g {
            let q = (r >> RowArena.firstShift) + 1
            let k = (Int.bitWidth - 1) - q.leadingZeroBitCount     // floor(log2 q)
            let offset = r - ((1 << RowArena.firstShift) * ((1 << k) - 1))
            return chunks[k] + offset * recordFloats
        }
        let q = r - g
        return chunks[geometricChunks + (q >> capShift)] + (q & ((1 << capShift) - 1)) * recordFloats
    }

    /// Appends one uninitialised row and returns its index.
    mutating func append() -> Int {
        if rows == rowCapacity {
            let n = chunkRows(chunks.count)
            chunks.append(.allocate(capacity: n * recordFloats))
            rowCapacity += n
        }
        rows += 1
        return rows - 1
    }

    var allocatedBytes: Int { rowCapacity * recordFloats * MemoryLayout<Float>.size }

    /// Allocates chunks until `rows` rows fit, their pages populated in one
    /// call each (a restore: one madvise instead of a fault per 4 KiB page).
    mutating func reserve(rows: Int) {
        while rowCapacity < rows {
            let n = chunkRows(chunks.count)
            let chunk = UnsafeMutablePointer<Float>.allocate(capacity: n * recordFloats)
            RowArena.populate(UnsafeMutableRawPointer(chunk), bytes: n * recordFloats * MemoryLayout<Float>.size)
            chunks.append(chunk)
            rowCapacity += n
        }
    }

    static func populate(_ p: UnsafeMutableRawPointer, bytes: Int) {
        #if os(Linux)
        let page = 4096
        let start = (Int(bitPattern: p) + page - 1) & ~(page - 1)
        let end = (Int(bitPattern: p) + bytes) & ~(page - 1)
        if end > start { _ = madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, 23 /* MADV_POPULATE_WRITE */) }
        #endif
    }

    /// A deep copy: the same chunk sizes, the same rows at the same indices.
    func copy() -> RowArena {
        var c = RowArena(recordFloats: recordFloats, capShift: capShift)
        for (k, chunk) in chunks.enumerated() {
            let n = chunkRows(k)
            let fresh = UnsafeMutablePointer<Float>.allocate(capacity: n * recordFloats)
            // Only rows in use are initialised; copy those.
            let used = max(0, min(n, rows - chunkStart(k)))
            fresh.update(from: chunk, count: used * recordFloats)
            c.chunks.append(fresh)
        }
        c.rowCapacity = rowCapacity
        c.rows = rows
        return c
    }

    private init(recordFloats: Int, capShift: Int) {
        self.recordFloats = recordFloats
        self.capShift = capShift
    }

    func deallocate() { for c in chunks { c.deallocate() } }
}

/// One stripe of a sparse table: an open-addressing (linear probing) index
/// from key to row, plus the arena. A slot is 8 bytes:
/// `fingerprint(32) << 32 | (row + 1)`, 0 = empty; the key itself lives in
/// the record, so the index stays small. Not thread-safe: the table holds
/// one lock per stripe.
final class SparseStripe {
    static let maxLoadNumerator = 4, maxLoadDenominator = 5   // grow above 0.8
    private(set) var slots: UnsafeMutablePointer<UInt64>
    private(set) var capacity: Int
    private(set) var arena: RowArena
    let keyOffset: Int        // float index of the key (2 floats) in a record
    let stepOffset: Int       // float index of the step counter (UInt32 bits)

    var count: Int { arena.rows }
    /// The checkpoint cut being written, if any (see `StripeCut`).
    var cut: StripeCut?
    /// Written with the sum of look-ahead loads so they are not optimised away.
    var touchSink: UInt32 = 0

    init(recordFloats: Int, stepOffset: Int, keyOffset: Int, initialCapacity: Int = 16) {
        precondition(initialCapacity > 0 && initialCapacity & (initialCapacity - 1) == 0)
        capacity = initialCapacity
        slots = .allocate(capacity: initialCapacity)
        slots.initialize(repeating: 0, count: initialCapacity)
        arena = RowArena(recordFloats: recordFloats)
        self.stepOffset = stepOffset
        self.keyOffset = keyOffset
    }

    deinit {
        slots.deallocate()
        arena.deallocate()
        cut?.release()
    }

    var indexBytes: Int { capacity * MemoryLayout<UInt64>.size }
    var allocatedBytes: Int { indexBytes + arena.allocatedBytes }

    @inline(__always)
    static func key(of record: UnsafeMutablePointer<Float>, at offset: Int) -> UInt64 {
        UnsafeMutableRawPointer(record + offset).loadUnaligned(as: UInt64.self)
    }

    /// The slot at the key's home position (one independent load; used to
    /// overlap the cache misses of many lookups).
    @inline(__always)
    func homeSlot(hash: UInt64) -> UInt64 {
        slots[Int(truncatingIfNeeded: hash) & (capacity - 1)]
    }

    /// The record a slot value points to when its fingerprint matches `hash`.
    @inline(__always)
    func candidate(slot: UInt64, hash: UInt64) -> UnsafeMutablePointer<Float>? {
        guard slot != 0, slot >> 32 == hash >> 32 else { return nil }
        return arena.record(Int(truncatingIfNeeded: slot & 0xFFFF_FFFF) - 1)
    }

    /// The record of `key`, or nil. `hash` is the table's hash of the key.
    @inline(__always)
    func find(key: UInt64, hash: UInt64) -> UnsafeMutablePointer<Float>? {
        let mask = capacity - 1
        let fp = hash >> 32
        var i = Int(truncatingIfNeeded: hash) & mask
        while true {
            let s = slots[i]
            if s == 0 { return nil }
            if s >> 32 == fp {
                let rec = arena.record(Int(truncatingIfNeeded: s & 0xFFFF_FFFF) - 1)
                if SparseStripe.key(of: rec, at: keyOffset) == key { return rec }
            }
            i = (i + 1) & mask
        }
    }

    /// The record of `key`; a new one is appended and passed to `initialise`
    /// (which must fill weights and state) when the key is absent.
    @inline(__always)
    func findOrInsert(key: UInt64, hash: UInt64, initialise: (UnsafeMutablePointer<Float>) -> Void) -> UnsafeMutablePointer<Float> {
        if let rec = find(key: key, hash: hash) { return rec }
        if (arena.rows + 1) * SparseStripe.maxLoadDenominator > capacity * SparseStripe.maxLoadNumerator {
            grow()
        }
        let row = arena.append()
        precondition(row < Int(UInt32.max - 1), "stripe row index overflow")
        let rec = arena.record(row)
        initialise(rec)
        UnsafeMutableRawPointer(rec + stepOffset).storeBytes(of: UInt32(0), as: UInt32.self)
        UnsafeMutableRawPointer(rec + keyOffset).storeBytes(of: key, toByteOffset: 0, as: UInt64.self)
        insertSlot(hash: hash, row: row)
        return rec
    }

    private func insertSlot(hash: UInt64, row: Int) {
        let mask = capacity - 1
        var i = Int(truncatingIfNeeded: hash) & mask
        while slots[i] != 0 { i = (i + 1) & mask }
        slots[i] = (hash >> 32) << 32 | UInt64(row + 1)
    }

    /// Grows the index once so that `rows` rows fit, and the arena (a
    /// restore's bulk insert).
    func reserve(rows: Int) {
        while rows * SparseStripe.maxLoadDenominator > capacity * SparseStripe.maxLoadNumerator { grow() }
        arena.reserve(rows: rows)
    }

    /// Doubles the index and re-inserts every slot (rows do not move).
    private func grow() {
        let old = slots, oldCapacity = capacity
        capacity *= 2
        slots = .allocate(capacity: capacity)
        slots.initialize(repeating: 0, count: capacity)
        let mask = capacity - 1
        // Slots keep only 32 bits of the hash, so recompute it from the key.
        for j in 0..<oldCapacity where old[j] != 0 {
            let row = Int(truncatingIfNeeded: old[j] & 0xFFFF_FFFF) - 1
            let h = rehash(SparseStripe.key(of: arena.record(row), at: keyOffset))
            var i = Int(truncatingIfNeeded: h) & mask
            while slots[i] != 0 { i = (i + 1) & mask }
            slots[i] = old[j]
        }
        old.deallocate()
    }

    /// A deep copy of the index and the rows (same slots, same row indices).
    func copy() -> SparseStripe {
        let c = SparseStripe(recordFloats: arena.recordFloats, stepOffset: stepOffset, keyOffset: keyOffset, initialCapacity: capacity)
        c.slots.update(from: slots, count: capacity)
        c.arena.deallocate()
        c.arena = arena.copy()
        c.rehash = rehash
        return c
    }

    /// Makes this stripe a deep copy of `other` (its rows, index and count).
    /// A checkpoint being written keeps its cut: every row is preserved first.
    func assign(from other: SparseStripe) {
        precondition(other.arena.recordFloats == arena.recordFloats && other.keyOffset == keyOffset)
        preserveAllForCut()
        slots.deallocate()
        arena.deallocate()
        capacity = other.capacity
        slots = .allocate(capacity: capacity)
        slots.update(from: other.slots, count: capacity)
        arena = other.arena.copy()
    }

    /// Set by the table: the same hash it passes to `find`.
    var rehash: (UInt64) -> UInt64 = { $0 }

    /// Visits every row (for checkpoints and tests).
    func forEach(_ body: (UInt64, UnsafeMutablePointer<Float>) -> Void) {
        for r in 0..<arena.rows {
            let rec = arena.record(r)
            body(SparseStripe.key(of: rec, at: keyOffset), rec)
        }
    }
}

// MARK: checkpoint cut (copy-on-write by row)

/// The rows of one stripe as they were at a checkpoint's cut, while the
/// writer streams them to disk and pushes go on. Rows never move, so the cut
/// is "rows `0..<rows` of the arena" plus, for every row a push changed
/// before the writer reached it, a copy of the row taken just before the
/// change (`preserve`). The writer copies one arena chunk at a time under the
/// stripe lock and overlays the preserved rows of that chunk. Cost to a push:
/// one binary search and one bit test per row, plus one record copy the first
/// time a row is changed: independent of the table's size.
/// Guarded by the stripe's lock.
final class StripeCut {
    let rows: Int
    let recordFloats: Int
    /// Chunks holding cut rows: base address (sorted), chunk index.
    private var bases: [(UInt, Int)]
    private var chunkStart: [Int]
    private var chunkRows: [Int]
    /// Bit per cut row: its cut value is safe (written, or preserved).
    private var done: [UInt64]
    /// Bit per cut row: preserved in the side blocks (position in `locationBlocks`).
    private var kept: [UInt64]
    /// Row -> position in the side blocks, in blocks of 4096 rows allocated
    /// on first use (no table-sized allocation at the cut, no rehash in a push).
    private var locationBlocks: [UnsafeMutablePointer<Int32>?]
    /// Preserved rows in fixed blocks of `sideBlockRows` (never reallocated,
    /// so a push never copies earlier copies).
    private var sideBlocks: [UnsafeMutablePointer<Float>] = []
    private var sideCount = 0
    static let sideBlockRows = 4096
    /// Chunks the writer has not taken yet.
    private(set) var nextChunk = 0
    var chunkCount: Int { chunkStart.count }
    /// Rows copied by pushes (for the report).
    private(set) var preservedRows = 0

    init(arena: RowArena) {
        rows = arena.rows
        recordFloats = arena.recordFloats
        var bases: [(UInt, Int)] = [], starts: [Int] = [], counts: [Int] = []
        var k = 0
        while k < arena.chunks.count && arena.chunkStart(k) < rows {
            let start = arena.chunkStart(k)
            bases.append((UInt(bitPattern: arena.chunks[k]), k))
            starts.append(start)
            counts.append(min(arena.chunkRows(k), rows - start))
            k += 1
        }
        bases.sort { $0.0 < $1.0 }
        self.bases = bases
        chunkStart = starts
        chunkRows = counts
        done = [UInt64](repeating: 0, count: (rows + 63) / 64)
        kept = done
        chunks = Array(arena.chunks.prefix(starts.count))
        locationBlocks = Array(repeating: nil, count: (rows + 4095) / 4096)
    }

    /// The arena's chunks holding cut rows (chunks never move).
    private let chunks: [UnsafeMutablePointer<Float>]
    /// Set when the stripe's storage was replaced after every untaken row was
    /// preserved: the chunks must not be read any more.
    var detached = false

    /// Side blocks allocated ahead by the writer (`addSpare`).
    private var spare: [UnsafeMutablePointer<Float>] = []
    var needsSpare: Bool { spare.isEmpty && !detached && nextChunk < chunkStart.count }
    func addSpare(_ b: UnsafeMutablePointer<Float>) { spare.append(b) }

    /// A side block with its pages populated (allocated outside any lock).
    static func allocateSpare(recordFloats: Int) -> UnsafeMutablePointer<Float> {
        let b = UnsafeMutablePointer<Float>.allocate(capacity: sideBlockRows * recordFloats)
        RowArena.populate(UnsafeMutableRawPointer(b), bytes: sideBlockRows * recordFloats * MemoryLayout<Float>.size)
        return b
    }

    func release() {
        for b in sideBlocks { b.deallocate() }
        sideBlocks = []
        for b in spare { b.deallocate() }
        spare = []
        for case let b? in locationBlocks { b.deallocate() }
        locationBlocks = []
    }

    @inline(__always)
    private func sideRecord(_ i: Int) -> UnsafeMutablePointer<Float> {
        sideBlocks[i / StripeCut.sideBlockRows] + (i % StripeCut.sideBlockRows) * recordFloats
    }

    /// The cut row index of `rec`, or nil when it was created after the cut.
    @inline(__always)
    private func rowIndex(_ rec: UnsafeMutablePointer<Float>) -> Int? {
        let a = UInt(bitPattern: rec)
        var lo = 0, hi = bases.count   // last base <= a
        while lo < hi {
            let mid = (lo + hi) >> 1
            if bases[mid].0 <= a { lo = mid + 1 } else { hi = mid }
        }
        guard lo > 0 else { return nil }
        let (base, k) = bases[lo - 1]
        let offset = Int(a - base) / (recordFloats * MemoryLayout<Float>.size)
        guard offset < chunkRows[k] else { return nil }
        return chunkStart[k] + offset
    }

    /// Called before a push changes `rec`: keeps its cut value if the writer
    /// has not taken it yet. Returns true when it copied.
    @inline(__always)
    func preserve(_ rec: UnsafeMutablePointer<Float>) -> Bool {
        guard let r = rowIndex(rec) else { return false }
        let w = r >> 6, bit = UInt64(1) << UInt64(r & 63)
        if done[w] & bit != 0 { return false }
        done[w] |= bit
        kept[w] |= bit
        if sideCount == sideBlocks.count * StripeCut.sideBlockRows {
            // A block the writer allocated and populated ahead, if any (no page faults in a push).
            sideBlocks.append(spare.popLast() ?? .allocate(capacity: StripeCut.sideBlockRows * recordFloats))
        }
        sideRecord(sideCount).update(from: rec, count: recordFloats)
        let lb = r >> 12
        if locationBlocks[lb] == nil { locationBlocks[lb] = .allocate(capacity: 4096) }
        locationBlocks[lb]![r & 4095] = Int32(sideCount)
        sideCount += 1
        preservedRows += 1
        return true
    }

    /// Copies the cut value of the writer's next chunk into `out` (room for
    /// `maxChunkFloats`) and returns its float count, or nil when all are taken.
    func takeNextChunk(into out: UnsafeMutablePointer<Float>) -> Int? {
        guard nextChunk < chunkStart.count else { return nil }
        let k = nextChunk
        nextChunk += 1
        let start = chunkStart[k], n = chunkRows[k]
        if !detached { out.update(from: chunks[k], count: n * recordFloats) }
        var r = start
        let end = start + n
        while r < end {
            let w = r >> 6
            // Whole words at once: only preserved rows need a look-up.
            if r & 63 == 0 && r + 64 <= end {
                var bits = kept[w]
                while bits != 0 {
                    let b = bits.trailingZeroBitCount
                    overlay(row: (w << 6) + b, start: start, out: out)
                    bits &= bits - 1
                }
                done[w] = ~0
                r += 64
                continue
            }
            let bit = UInt64(1) << UInt64(r & 63)
            if kept[w] & bit != 0 { overlay(row: r, start: start, out: out) }
            done[w] |= bit
            r += 1
        }
        return n * recordFloats
    }

    private func overlay(row: Int, start: Int, out: UnsafeMutablePointer<Float>) {
        let pos = Int(locationBlocks[row >> 12]![row & 4095])
        (out + (row - start) * recordFloats).update(from: sideRecord(pos), count: recordFloats)
    }

    /// Largest chunk in floats.
    var maxChunkFloats: Int { (chunkRows.max() ?? 0) * recordFloats }
}

extension SparseStripe {
    /// Preserves every cut row not yet taken (before the stripe's rows are
    /// replaced wholesale by a snapshot restore).
    func preserveAllForCut() {
        guard let c = cut else { return }
        for r in 0..<c.rows { _ = c.preserve(arena.record(r)) }
        c.detached = true
    }
}
