/// Everything preparation needs to turn a row into a chunk sample: the
/// columnar log, truth, and the history index (per user, positives in time
/// order as CSR `posStart`/`posRows`; `histEnd[r]` = how many of them have a
/// timestamp strictly before row r's).
struct ChunkTables {
    let log: BehaviourLog
    let truth: [Float]
    let histEnd: [Int32]
    let posStart: [Int]
    let posRows: [Int32]
    let itemInTraining: [Bool]
    let lLong: Int
    /// Scratch marks for distinct users/items per scene.
    var userStamp: [Int32]
    var itemStamp: [Int32]

    init(log: BehaviourLog, truth: [Float], histEnd: [Int32], posStart: [Int], posRows: [Int32],
         itemInTraining: [Bool], lLong: Int) {
        self.log = log
        self.truth = truth
        self.histEnd = histEnd
        self.posStart = posStart
        self.posRows = posRows
        self.itemInTraining = itemInTraining
        self.lLong = lLong
        userStamp = [Int32](repeating: -1, count: log.userKeys.count)
        itemStamp = [Int32](repeating: -1, count: log.itemKeys.count)
    }

    /// Appends the samples of `rows` (kept-row indices) to `chunk`, and their statistics to `stats`.
    @inline(never)
    mutating func fill(_ chunk: inout ChunkColumns, rows: ArraySlice<Int32>, test: Bool, stats: inout SceneAccumulator) {
        let L = lLong
        for r32 in rows {
            let r = Int(r32)
            let u = Int(log.userIndex[r])
            let item = Int(log.itemIndex[r])
            let isCold = test && !itemInTraining[item]
            chunk.begin(ChunkSample(user: log.userKeys[u], item: log.itemKeys[item],
                                    category: log.categoryKey[r], row: log.dataRow[r],
                                    label: Float(log.label[r]), truth: truth[r], cold: isCold))
            let e = Int(histEnd[r])
            let b = max(0, e - L)
            let base = posStart[u]
            var j = e - 1
            while j >= b {
                let p = Int(posRows[base + j])
                chunk.addHistory(item: log.itemKeys[Int(log.itemIndex[p])], category: log.categoryKey[p], scene: log.scene[p])
                j -= 1
            }
            chunk.end()
            let h = e - b
            stats.historySum += h
            stats.hist[h == 0 ? 0 : h >= L ? 5 : h < 5 ? 1 : h < 10 ? 2 : h < 20 ? 3 : 4] += 1
            stats.positives += Int(log.label[r])
            if userStamp[u] != stats.scene { userStamp[u] = stats.scene; stats.users += 1 }
            if itemStamp[item] != stats.scene { itemStamp[item] = stats.scene; stats.items += 1 }
            if isCold { stats.coldTest += 1 }
        }
    }
}

/// Per-scene statistics gathered while writing chunks.
struct SceneAccumulator {
    let scene: Int32
    /// History lengths: 0, 1-4, 5-9, 10-19, 20-(L-1), L.
    var hist = [Int](repeating: 0, count: 6)
    var historySum = 0
    var positives = 0
    var users = 0
    var items = 0
    var coldTest = 0

    init(scene: Int32) { self.scene = scene }
}
