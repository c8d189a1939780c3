import Foundation

/// Everything preparation needs to turn a row into a chunk sample, laid out
/// for the chunk-writing loop, which visits rows in shuffled order: one
/// record per row (one cache miss instead of one per column), and per user
/// its positives in time order as CSR (`posStart[u] ..< posStart[u+1]` into
/// `behaviours`), so a history is one sequential read.
struct ChunkTables {
    struct Record {
        var user: UInt64
        var item: UInt64
        var category: UInt64
        var dataRow: Int64
        var truth: Float
        /// How many of the user's positives have a timestamp strictly before this row's.
        var histEnd: Int32
        var userIndex: Int32
        var itemIndex: Int32
        var label: UInt8
        var cold: Bool
    }

    struct Behaviour {
        var item: UInt64
        var category: UInt64
        var scene: Int32
    }

    let records: [Record]
    let posStart: [Int]
    let behaviours: [Behaviour]
    let lLong: Int

    init(log: BehaviourLog, truth: [Float], histEnd: [Int32], posStart: [Int], posRows: [Int32],
         itemInTraining: [Bool], split: [UInt8], lLong: Int) {
        var records = [Record]()
        records.reserveCapacity(log.count)
        for r in 0..<log.count {
            let i = Int(log.itemIndex[r])
            records.append(Record(user: log.userKeys[Int(log.userIndex[r])], item: log.itemKeys[i],
                                  category: log.categoryKey[r], dataRow: log.dataRow[r], truth: truth[r],
                                  histEnd: histEnd[r], userIndex: log.userIndex[r], itemIndex: log.itemIndex[r],
                                  label: log.label[r], cold: split[r] == 2 && !itemInTraining[i]))
        }
        self.records = records
        var behaviours = [Behaviour]()
        behaviours.reserveCapacity(posRows.count)
        for r32 in posRows {
            let r = Int(r32)
            behaviours.append(Behaviour(item: log.itemKeys[Int(log.itemIndex[r])], category: log.categoryKey[r],
                                        scene: log.scene[r]))
        }
        self.behaviours = behaviours
        self.posStart = posStart
        self.lLong = lLong
    }

    /// Appends the samples of `rows` (kept-row indices) to `chunk`, and their statistics to `stats`.
    @inline(never)
    func fill(_ chunk: inout ChunkColumns, rows: ArraySlice<Int32>, stats: inout SceneAccumulator) {
        let L = lLong
        for r32 in rows {
            let rec = records[Int(r32)]
            let u = Int(rec.userIndex)
            chunk.begin(ChunkSample(user: rec.user, item: rec.item, category: rec.category, row: rec.dataRow,
                                    label: Float(rec.label), truth: rec.truth, cold: rec.cold))
            let e = Int(rec.histEnd)
            let b = max(0, e - L)
            let base = posStart[u]
            var j = base + e - 1
            while j >= base + b {
                let h = behaviours[j]
                chunk.addHistory(item: h.item, category: h.category, scene: h.scene)
                j -= 1
            }
            chunk.end()
            let h = e - b
            stats.historySum += h
            stats.hist[h == 0 ? 0 : h >= L ? 5 : h < 5 ? 1 : h < 10 ? 2 : h < 20 ? 3 : 4] += 1
            stats.positives += Int(rec.label)
            if rec.cold { stats.coldTest += 1 }
        }
    }
}

/// Per-scene statistics gathered while writing chunks (one per chunk, merged per scene).
struct SceneAccumulator: Sendable {
    /// History lengths: 0, 1-4, 5-9, 10-19, 20-(L-1), L.
    var hist = [Int](repeating: 0, count: 6)
    var historySum = 0
    var positives = 0
    var coldTest = 0

    init() {}

    mutating func merge(_ o: SceneAccumulator) {
        for k in 0..<hist.count { hist[k] += o.hist[k] }
        historySum += o.historySum
        positives += o.positives
        coldTest += o.coldTest
    }
}

/// Results of jobs run on several threads, one slot per job.
/// `@unchecked Sendable`: every access holds `lock`.
final class JobResults<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var slots: [T?]
    private var firstError: Error?

    init(count: Int) { slots = [T?](repeating: nil, count: count) }

    func set(_ k: Int, _ value: T) { lock.lock(); slots[k] = value; lock.unlock() }
    func fail(_ e: Error) { lock.lock(); if firstError == nil { firstError = e }; lock.unlock() }
    var failed: Bool { lock.lock(); defer { lock.unlock() }; return firstError != nil }

    /// All results, or the first error thrown by a job.
    func values() throws -> [T] {
        lock.lock(); defer { lock.unlock() }
        if let firstError { throw firstError }
        return slots.map { $0! }
    }
}
