import Foundation
import ScenePSCore
import ScenePSProtocol

/// A sparse embedding table: 64-bit key → one contiguous record
/// (`SparseRecordLayout`: key, step, weights, the optimiser's state), rows
/// created lazily with deterministic initial values.
///
/// Keys are spread over `stripeCount` stripes, each with its own lock, index
/// and arena, so requests touching different keys proceed in parallel.
public final class SparseTable: @unchecked Sendable {
    // @unchecked: every stripe is only touched under its own lock.
    public let spec: TableSpec
    public let dim: Int
    public let optimizer: any Optimizer
    /// The record of every row (in memory and in a checkpoint).
    public let layout: SparseRecordLayout
    /// Floats per record (`layout.floats`).
    public let recordFloats: Int
    let weightsOffset: Int, stateOffset: Int, stepOffset: Int, keyOffset: Int
    let stripeBits: Int
    private let stripes: [SparseStripe]
    private let locks: [Lock]
    private let salt: UInt64
    private let counters = Lock()
    private var pulls: UInt64 = 0, pushes: UInt64 = 0

    /// Initial rows from `spec.initFile` (nil: every row from `spec.initKind`).
    public let initialRows: InitialRows?

    public init(spec: TableSpec, optimizer: any Optimizer, stripeBits: Int = 4, initialRows: InitialRows? = nil) {
        precondition(spec.kind == .sparse && spec.dim > 0)
        precondition(initialRows.map { $0.dim == Int(spec.dim) } ?? true)
        self.spec = spec
        self.initialRows = initialRows
        self.dim = Int(spec.dim)
        self.optimizer = optimizer
        let layout = SparseRecordLayout(dim: Int(spec.dim), stateWidth: optimizer.stateWidth)
        self.layout = layout
        let keyOffset = layout.keyOffset, stepOffset = layout.stepOffset
        weightsOffset = layout.weightsOffset
        stateOffset = layout.stateOffset
        self.stepOffset = stepOffset
        self.keyOffset = keyOffset
        let recordFloats = layout.floats
        self.recordFloats = recordFloats
        self.stripeBits = stripeBits
        // Independent of the sharding hash (which fixes the top bits of the
        // keys a server owns), so stripes and slots are evenly used.
        let salt = KeyHash.mix64(0x5354_5249_5045_0000 ^ UInt64(spec.id))
        self.salt = salt
        let stripes = (0..<(1 << stripeBits)).map { _ in
            SparseStripe(recordFloats: recordFloats, stepOffset: stepOffset, keyOffset: keyOffset)
        }
        for s in stripes { s.rehash = { KeyHash.mix64($0 ^ salt) } }
        self.stripes = stripes
        locks = stripes.map { _ in Lock() }
    }

    /// Raw bytes of one record's payload `[weights | m | v | step]`.
    public var rawRecordBytes: Int { (dim * (1 + optimizer.stateWidth) + 1) * MemoryLayout<Float>.size }

    @inline(__always)
    func hash(_ key: UInt64) -> UInt64 { KeyHash.mix64(key ^ salt) }

    @inline(__always)
    func stripeIndex(_ hash: UInt64) -> Int { Int(truncatingIfNeeded: hash >> UInt64(64 - stripeBits)) }

    private func initialise(_ rec: UnsafeMutablePointer<Float>, key: UInt64) {
        if initialRows?.fill(rec + weightsOffset, key: key) != true {
            RowInitializer.fill(rec + weightsOffset, count: dim, spec: spec, key: key)
        }
        (rec + stateOffset).update(repeating: 0, count: dim * optimizer.stateWidth)
    }

    /// Visits `keys` grouped by stripe, each stripe's lock taken once.
    /// `body(i, record)` gets the key's position in `keys` and its record.
    private func forEachGrouped(_ keys: UnsafeBufferPointer<UInt64>, mutates: Bool,
                                _ body: (Int, UnsafeMutablePointer<Float>) -> Void) {
        let n = keys.count
        if n == 0 { return }
        let nStripes = stripes.count
        if n < 64 || nStripes == 1 {
            for i in 0..<n {
                let k = keys[i], h = hash(k), s = stripeIndex(h)
                locks[s].withLock {
                    let rec = stripes[s].findOrInsert(key: k, hash: h) { initialise($0, key: k) }
                    if mutates, let cut = stripes[s].cut { preserveForCut(cut, recs: CollectionOfOne(rec)) }
                    body(i, rec)
                }
            }
            return
        }
        // Counting sort of positions by stripe.
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: n) { hashes in
            withUnsafeTemporaryAllocation(of: Int32.self, capacity: n) { order in
                withUnsafeTemporaryAllocation(of: Int.self, capacity: nStripes + 1) { start in
                    start.initialize(repeating: 0)
                    for i in 0..<n {
                        let h = hash(keys[i])
                        hashes[i] = h
                        start[stripeIndex(h) + 1] += 1
                    }
                    for s in 0..<nStripes { start[s + 1] += start[s] }
                    withUnsafeTemporaryAllocation(of: Int.self, capacity: nStripes) { fill in
                        for s in 0..<nStripes { fill[s] = start[s] }
                        for i in 0..<n {
                            let s = stripeIndex(hashes[i])
                            order[fill[s]] = Int32(i)
                            fill[s] += 1
                        }
                    }
                    // Phase 1 per stripe: resolve every record under the lock.
                    // Phase 2: visit them, loading a few rows ahead so their
                    // cache misses overlap with the work on the current row.
                    withUnsafeTemporaryAllocation(of: UnsafeMutablePointer<Float>.self, capacity: n) { recs in
                      withUnsafeTemporaryAllocation(of: UInt64.self, capacity: n) { home in
                        func visit(_ s: Int) {
                            guard start[s] < start[s + 1] else { return }
                            let stripe = self.stripes[s]
                            let lo = start[s], hi = start[s + 1]
                            locks[s].withLock {
                                // Home slots first (independent loads), then their
                                // records' keys (independent again), so the misses of
                                // many keys overlap; probing and inserts go the slow way.
                                for j in lo..<hi {
                                    let h = hashes[Int(order[j])]
                                    home[j] = stripe.homeSlot(hash: h)
                                }
                                for j in lo..<hi {
                                    let i = Int(order[j]), k = keys[i], h = hashes[i]
                                    if let rec = stripe.candidate(slot: home[j], hash: h),
                                       SparseStripe.key(of: rec, at: keyOffset) == k {
                                        recs[j] = rec
                                    } else {
                                        recs[j] = stripe.findOrInsert(key: k, hash: h) { initialise($0, key: k) }
                                    }
                                }
                                if mutates, let cut = stripe.cut {
                                    preserveForCut(cut, recs: UnsafeBufferPointer(rebasing: UnsafeBufferPointer(recs)[lo..<hi]))
                                }
                                var sink: UInt32 = 0
                                let lastLine = recordFloats - 1
                                for j in lo..<hi {
                                    if j + lookAhead < hi {
                                        let r = recs[j + lookAhead]
                                        var o = 0
                                        while o < lastLine { sink &+= r[o].bitPattern; o += 16 }
                                        sink &+= r[lastLine].bitPattern
                                    }
                                    body(Int(order[j]), recs[j])
                                }
                                stripe.touchSink = sink
                            }
                        }
                        // Requests of a few thousand keys and up spread their
                        // stripes over the cores (a key's stripe is fixed, so two
                        // threads never touch the same row): a lone client waits
                        // while its request is applied, so the other core is free,
                        // and the row lookups' cache misses are what a request costs.
                        if n >= SparseTable.parallelThreshold && SparseTable.cores > 1 {
                            withoutActuallyEscaping(visit) { v in
                                // Unchecked: the iterations touch disjoint stripes, rows and slots.
                                let box = UncheckedSendable(v)
                                DispatchQueue.concurrentPerform(iterations: nStripes) { box.value($0) }
                            }
                        } else {
                            for s in 0..<nStripes { visit(s) }
                        }
                      }
                    }
                }
            }
        }
    }

    /// Keys per request above which stripes are visited on several threads.
    /// Measured (ps-bench case a, 4096 keys x 32, 1 server): 65,536 -> 2,048
    /// took pull from ~770 to ~1,180 requests/s and push from ~600 to ~980.
    static let parallelThreshold = 2_048
    static let cores = ProcessInfo.processInfo.activeProcessorCount

    /// Rows loaded ahead of the one being worked on (see `forEachGrouped`).
    private let lookAhead = 4

    /// Copies the weights of `keys` (creating missing rows) into `out`
    /// (`keys.count * dim` floats, in key order).
    public func pull(keys: UnsafeBufferPointer<UInt64>, into out: UnsafeMutablePointer<Float>) {
        let d = dim
        let wo = weightsOffset
        forEachGrouped(keys, mutates: false) { i, rec in (out + i * d).update(from: rec + wo, count: d) }
        counters.withLock { pulls &+= 1 }
    }

    /// Applies one optimiser step to each row of `keys` with its gradient
    /// (`keys.count * dim` floats). The caller has validated the input.
    public func push(keys: UnsafeBufferPointer<UInt64>, gradients: UnsafePointer<Float>, lrScale: Float = 1) {
        let d = dim, wo = weightsOffset, so = stateOffset, stepOff = stepOffset, opt = optimizer
        forEachGrouped(keys, mutates: true) { i, rec in
            let stepPtr = UnsafeMutableRawPointer(rec + stepOff)
            let step = stepPtr.load(as: UInt32.self) &+ 1
            stepPtr.storeBytes(of: step, as: UInt32.self)
            opt.update(weights: rec + wo, state: rec + so, gradient: gradients + i * d, count: d, step: step, lrScale: lrScale)
        }
        counters.withLock { pushes &+= 1 }
    }

    /// A row's weights and its step, if it exists (tests and tools).
    public func row(_ key: UInt64) -> (weights: [Float], state: [Float], step: UInt32)? {
        let h = hash(key), s = stripeIndex(h)
        return locks[s].withLock {
            guard let rec = stripes[s].find(key: key, hash: h) else { return nil }
            let w = Array(UnsafeBufferPointer(start: rec + weightsOffset, count: dim))
            let st = Array(UnsafeBufferPointer(start: rec + stateOffset, count: dim * optimizer.stateWidth))
            let step = UnsafeMutableRawPointer(rec + stepOffset).load(as: UInt32.self)
            return (w, st, step)
        }
    }

    /// Writes a whole row (weights, optimiser state, step), creating it if
    /// needed: the restore side of `forEachRow` for checkpoints.
    public func restoreRow(key: UInt64, weights: UnsafeBufferPointer<Float>, state: UnsafeBufferPointer<Float>, step: UInt32) {
        precondition(weights.count == dim && state.count == dim * optimizer.stateWidth, "row shape mismatch")
        let h = hash(key), s = stripeIndex(h)
        locks[s].withLock {
            let rec = stripes[s].findOrInsert(key: key, hash: h) { initialise($0, key: key) }
            if let cut = stripes[s].cut { _ = cut.preserve(rec) }
            (rec + weightsOffset).update(from: weights.baseAddress!, count: dim)
            (rec + stateOffset).update(from: state.baseAddress!, count: state.count)
            UnsafeMutableRawPointer(rec + stepOffset).storeBytes(of: step, as: UInt32.self)
        }
    }

    /// Visits every row under its stripe's lock (checkpoints, tests).
    public func forEachRow(_ body: (_ key: UInt64, _ weights: UnsafeBufferPointer<Float>,
                                    _ state: UnsafeBufferPointer<Float>, _ step: UInt32) -> Void) {
        for s in 0..<stripes.count {
            locks[s].withLock {
                stripes[s].forEach { key, rec in
                    body(key, UnsafeBufferPointer(start: rec + weightsOffset, count: dim),
                         UnsafeBufferPointer(start: rec + stateOffset, count: dim * optimizer.stateWidth),
                         UnsafeMutableRawPointer(rec + stepOffset).load(as: UInt32.self))
                }
            }
        }
    }

    /// A deep copy of every row (weights, optimiser state, step), stripe by
    /// stripe, each under its lock. Pushes that run meanwhile may land in
    /// some stripes' copies and not others': take it when nobody pushes.
    public func snapshot() -> SparseTableSnapshot {
        SparseTableSnapshot(stripes: (0..<stripes.count).map { s in locks[s].withLock { stripes[s].copy() } }, dim: dim)
    }

    /// Puts every row back as `snapshot` holds it; rows created after it are
    /// gone (pulled again, they start from their deterministic initial value).
    public func restore(_ snapshot: SparseTableSnapshot) {
        precondition(snapshot.stripes.count == stripes.count && snapshot.dim == dim, "snapshot of another table shape")
        for s in 0..<stripes.count {
            locks[s].withLock { stripes[s].assign(from: snapshot.stripes[s]) }   // keeps a checkpoint's cut
        }
    }

    // MARK: checkpoint cut

    /// Copies of rows taken for a cut by pushes: count and time (stall accounting).
    private var cutPreservedNanosMax: UInt64 = 0
    private var cutPreservedRows = 0

    /// Closes stripe `s`'s cut (under its lock), counting the rows pushes copied.
    private func closeCut(_ s: Int) {
        guard let c = stripes[s].cut else { return }
        let n = c.preservedRows
        c.release()
        stripes[s].cut = nil
        counters.withLock { cutPreservedRows += n }
    }

    /// Keeps the cut value of `recs` (under the stripe's lock). Timed: this
    /// copy is part of what a push waits for because of a checkpoint.
    @inline(__always)
    private func preserveForCut<C: Collection>(_ cut: StripeCut, recs: C) where C.Element == UnsafeMutablePointer<Float> {
        let t0 = DispatchTime.now().uptimeNanoseconds
        var copied = false
        for r in recs { if cut.preserve(r) { copied = true } }
        if copied {
            let dt = DispatchTime.now().uptimeNanoseconds &- t0
            counters.withLock { cutPreservedNanosMax = max(cutPreservedNanosMax, dt) }
        }
    }

    /// Starts a cut: the rows as they are now are what `takeCutChunk` will
    /// hand out, whatever pushes do meanwhile. O(stripes + chunks): call it
    /// while pushes are held. Returns the rows in the cut.
    public func beginCut() -> Int {
        var rows = 0
        for s in 0..<stripes.count {
            locks[s].withLock {
                precondition(stripes[s].cut == nil, "a cut of table \(spec.id) is already open")
                let c = StripeCut(arena: stripes[s].arena)
                stripes[s].cut = c
                rows += c.rows
            }
        }
        counters.withLock { cutPreservedNanosMax = 0; cutPreservedRows = 0 }
        return rows
    }

    /// Floats of the largest chunk of any stripe (the writer's buffer size).
    public var cutChunkFloatsMax: Int {
        (0..<stripes.count).map { s in locks[s].withLock { stripes[s].cut?.maxChunkFloats ?? 0 } }.max() ?? 0
    }

    /// Streams the cut: `body` gets raw records `[key | step | weights | state]`
    /// (`recordFloats` floats each), a chunk at a time, copied under the
    /// stripe's lock and handed over outside it. Ends the cut (also on error).
    public func writeCut(scratch: UnsafeMutablePointer<Float>, _ body: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        defer { endCut() }
        var turn = 0
        for s in 0..<stripes.count {
            while true {
                guard let n = locks[s].withLock({ stripes[s].cut?.takeNextChunk(into: scratch) }) else { break }
                // Keep a populated side block ready in one stripe per chunk written, round robin,
                // so that pushes copying rows never fault pages in.
                let k = (s + turn) % stripes.count
                turn += 1
                if locks[k].withLock({ stripes[k].cut?.needsSpare ?? false }) {
                    let b = StripeCut.allocateSpare(recordFloats: recordFloats)
                    locks[k].withLock {
                        if let c = stripes[k].cut { c.addSpare(b) } else { b.deallocate() }
                    }
                }
                try body(UnsafeRawBufferPointer(start: scratch, count: n * MemoryLayout<Float>.size))
            }
            locks[s].withLock { closeCut(s) }
        }
    }

    /// Drops any open cut (after a failed write).
    public func endCut() {
        for s in 0..<stripes.count { locks[s].withLock { closeCut(s) } }
    }

    /// The longest a push spent copying rows for the current cut (ns), and rows so copied.
    public func cutPreserveStats() -> (maxNanos: UInt64, rows: Int) {
        let open = (0..<stripes.count).reduce(0) { acc, s in acc + locks[s].withLock { stripes[s].cut?.preservedRows ?? 0 } }
        return counters.withLock { (cutPreservedNanosMax, cutPreservedRows + open) }
    }

    /// Sizes every stripe's index for `rows` more rows over the table (a
    /// restore knows its row count up front: no rehash while it inserts).
    public func reserve(rows: Int) {
        let per = rows / stripes.count + rows / (stripes.count * 16) + 64
        // In parallel: populating the pages is most of it, and the kernel zeroes them on every core.
        let box = UncheckedSendable(self)
        DispatchQueue.concurrentPerform(iterations: stripes.count) { s in
            let t = box.value
            t.locks[s].withLock { t.stripes[s].reserve(rows: t.stripes[s].count + per) }
        }
    }

    /// Inserts raw records (the checkpoint layout, `recordFloats` floats each)
    /// for which `keep(key)` holds. A key already present is an error (a
    /// checkpoint holds each row once). Records are grouped by stripe, each
    /// stripe's index sized once, and the stripes filled in parallel.
    /// Returns the rows inserted.
    public func insertRecords(_ raw: UnsafeRawBufferPointer, keep: (UInt64) -> Bool) -> Result<Int, ScenePSError> {
        let bytes = recordFloats * MemoryLayout<Float>.size
        let n = raw.count / bytes
        guard n > 0, let base = raw.baseAddress else { return .success(0) }
        let nStripes = stripes.count
        var order = [Int32](repeating: 0, count: n)
        var start = [Int](repeating: 0, count: nStripes + 1)
        var stripeOf = [UInt8](repeating: 0, count: n)
        var kept = 0
        for i in 0..<n {
            let key = (base + i * bytes).loadUnaligned(as: UInt64.self)
            guard keep(key) else { stripeOf[i] = 0xFF; continue }
            let s = stripeIndex(hash(key))
            stripeOf[i] = UInt8(s)
            start[s + 1] += 1
            kept += 1
        }
        for s in 0..<nStripes { start[s + 1] += start[s] }
        var fill = start
        for i in 0..<n where stripeOf[i] != 0xFF {
            let s = Int(stripeOf[i])
            order[fill[s]] = Int32(i)
            fill[s] += 1
        }
        let duplicate = LockedValue<UInt64?>(nil)
        order.withUnsafeBufferPointer { ord in
            let box = UncheckedSendable((self, ord, start, base))
            DispatchQueue.concurrentPerform(iterations: nStripes) { s in
                let (table, ord, start, base) = box.value
                let lo = start[s], hi = start[s + 1]
                guard lo < hi else { return }
                table.locks[s].withLock {
                    let stripe = table.stripes[s]
                    stripe.reserve(rows: stripe.count + (hi - lo))
                    for j in lo..<hi {
                        let src = base + Int(ord[j]) * bytes
                        let key = src.loadUnaligned(as: UInt64.self)
                        var created = false
                        let rec = stripe.findOrInsert(key: key, hash: table.hash(key)) { _ in created = true }
                        guard created else { duplicate.set(key); return }
                        UnsafeMutableRawPointer(rec).copyMemory(from: src, byteCount: bytes)
                    }
                }
            }
        }
        if let key = duplicate.get() {
            return .failure(ScenePSError(.checkpoint, "key \(key) of table \(spec.id) '\(spec.name)' appears twice"))
        }
        return .success(kept)
    }

    public struct Memory: Sendable {
        public var rows: Int
        public var indexBytes: Int
        public var arenaBytes: Int
        public var totalBytes: Int { indexBytes + arenaBytes }
    }

    public func memory() -> Memory {
        var m = Memory(rows: 0, indexBytes: 0, arenaBytes: 0)
        for s in 0..<stripes.count {
            locks[s].withLock {
                m.rows += stripes[s].count
                m.indexBytes += stripes[s].indexBytes
                m.arenaBytes += stripes[s].arena.allocatedBytes
            }
        }
        return m
    }

    public func counts() -> (pulls: UInt64, pushes: UInt64) { counters.withLock { (pulls, pushes) } }

    /// Rows now (one lock per stripe, no row visited).
    public var rowCount: Int {
        var n = 0
        for s in 0..<stripes.count { locks[s].withLock { n += stripes[s].count } }
        return n
    }

    /// When a request of `keys` would take the table past `cap` rows: the rows
    /// now and the new ones it would create; nil when it fits. Cheap far from
    /// the cap (a count); near it, every key is looked up. Concurrent requests
    /// may each fit alone and together pass the cap by at most their new rows.
    public func wouldPass(cap: UInt64, keys: [UInt64]) -> (rows: Int, new: Int)? {
        let rows = rowCount
        if UInt64(rows + keys.count) <= cap { return nil }
        var new = 0
        for k in keys {
            let h = hash(k), s = stripeIndex(h)
            if locks[s].withLock({ stripes[s].find(key: k, hash: h) == nil }) { new += 1 }
        }
        return UInt64(rows + new) > cap ? (rows, new) : nil
    }
}

/// Every row of a sparse table at one moment (`SparseTable.snapshot`).
public final class SparseTableSnapshot: @unchecked Sendable {
    // @unchecked: immutable after creation; stripes are only read (copied from).
    fileprivate let stripes: [SparseStripe]
    fileprivate let dim: Int
    public var rows: Int { stripes.reduce(0) { $0 + $1.count } }
    fileprivate init(stripes: [SparseStripe], dim: Int) {
        self.stripes = stripes
        self.dim = dim
    }
}

/// Hands a value to `concurrentPerform` whose iterations are known not to
/// conflict (each works on its own stripe).
struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// A value behind a lock (the parallel restore's error report).
final class LockedValue<T>: @unchecked Sendable {
    private let lock = Lock()
    private var value: T
    init(_ v: T) { value = v }
    func get() -> T { lock.withLock { value } }
    func set(_ v: T) { lock.withLock { value = v } }
    func update(_ f: (inout T) -> Void) { lock.withLock { f(&value) } }
}
