import Foundation
import ScenePSCore

/// Turns a behaviour log (+ optional catalogue and truth) into per-scene,
/// per-split binary chunks and a manifest. See docs/ARCHITECTURE.md §4.
///
/// - History of a sample: the same user's earlier positive rows in any scene
///   with a strictly earlier timestamp, most recent first, at most `lLong`.
///   Rows are ordered by timestamp, file order within a timestamp (a stable
///   sort), exactly like the reference `train_torch.py load()`.
/// - Split: `testCut` = numpy linear quantile of all timestamps at
///   1 − testFraction; test rows have ts >= testCut. `validCut` is the same
///   quantile of the training rows' timestamps at 1 − validFraction; those
///   rows with ts >= validCut are validation (none when validFraction = 0).
/// - `cold`: the target item does not occur in any non-test row.
public struct PreparationOptions: Sendable {
    public var logPath: String
    public var itemsPath: String?
    public var truthPath: String?
    public var outDirectory: String
    public var chunkSize: Int
    public var testFraction: Double
    public var validFraction: Double
    public var lLong: Int
    /// Scene names in index order; nil: the scenes of the log, sorted by name.
    public var scenes: [String]?
    public var skipBadRows: Bool
    public var shuffleSeed: UInt64

    /// Defaults: chunk size 8192, test fraction 0.1, validation fraction 0.05,
    /// L_long 50, scenes from the log, stop at the first bad row, shuffle seed 1.
    public init(logPath: String, outDirectory: String) {
        self.logPath = logPath
        self.outDirectory = outDirectory
        itemsPath = nil
        truthPath = nil
        chunkSize = 8192
        testFraction = 0.1
        validFraction = 0.05
        lLong = 50
        scenes = nil
        skipBadRows = false
        shuffleSeed = 1
    }

    public func validate() throws {
        guard chunkSize >= 1 else { throw ScenePSError.invalidArgument("chunk size must be >= 1, got \(chunkSize)") }
        guard testFraction > 0 && testFraction < 1 else {
            throw ScenePSError.invalidArgument("test fraction must be in (0, 1), got \(testFraction)")
        }
        guard validFraction >= 0 && validFraction < 1 else {
            throw ScenePSError.invalidArgument("validation fraction must be in [0, 1), got \(validFraction)")
        }
        guard lLong >= 1 && lLong <= 4096 else { throw ScenePSError.invalidArgument("l-long must be in 1...4096, got \(lLong)") }
        if let scenes {
            guard !scenes.isEmpty else { throw ScenePSError.invalidArgument("--scenes lists no scene") }
            guard Set(scenes).count == scenes.count else {
                throw ScenePSError.invalidArgument("--scenes lists a scene twice: \(scenes.joined(separator: ","))")
            }
            guard !scenes.contains(where: { $0.isEmpty }) else { throw ScenePSError.invalidArgument("--scenes has an empty name") }
        }
    }
}

public struct PreparationResult: Sendable {
    public var manifest: DatasetManifest
    public var badRows: BadRowLog
    /// Rows of the log that have no truth (0 when no truth file was given).
    public var rowsWithoutTruth: Int
    /// The printed summary.
    public var summary: String
    public var seconds: Double
}

public enum Preparation {
    public static func run(_ options: PreparationOptions) throws -> PreparationResult {
        try options.validate()
        let start = Date()
        var bad = BadRowLog(skip: options.skipBadRows)
        let log = try BehaviourLog.read(path: options.logPath, scenes: options.scenes, bad: &bad)
        let n = log.count
        let L = options.lLong

        // Truth, by data row, then by kept row.
        var truth = [Float](repeating: .nan, count: n)
        var rowsWithoutTruth = 0
        if let tp = options.truthPath {
            let byDataRow = try readTruth(path: tp, dataRows: log.dataRows, bad: &bad)
            for r in 0..<n { truth[r] = byDataRow[Int(log.dataRow[r])] }
            let missing = truth.indices.filter { truth[$0].isNaN }
            if let first = missing.first {
                if !options.skipBadRows {
                    throw ScenePSError.data("\(tp): no truth for \(missing.count) data row(s) of \(options.logPath), first: row \(log.dataRow[first]) (line \(log.dataRow[first] + 2) of the log)")
                }
                rowsWithoutTruth = missing.count
            }
        }

        try FileSystem.makeDirectory(options.outDirectory)

        // Catalogue: every item kept, compared with the log's items, rewritten with keys.
        var catalogue: DatasetManifest.CatalogueInfo?
        if let ip = options.itemsPath {
            catalogue = try Catalogue.prepare(path: ip, log: log, out: options.outDirectory, bad: &bad)
        }

        // Time order: stable by timestamp, file order within a timestamp.
        var order = [Int32](0..<Int32(n))
        var sorted = true
        for r in 1..<max(n, 1) where log.timestamp[r] < log.timestamp[r - 1] { sorted = false; break }
        if !sorted {
            log.timestamp.withUnsafeBufferPointer { ts in
                order.sort { a, b in
                    let x = ts[Int(a)], y = ts[Int(b)]
                    return x < y || (x == y && a < b)
                }
            }
        }

        // Split.
        let testCut = quantile(n: n, q: 1 - options.testFraction) { Double(log.timestamp[Int(order[$0])]) }
        var trainCount = 0
        while trainCount < n && Double(log.timestamp[Int(order[trainCount])]) < testCut { trainCount += 1 }
        var validCut: Double?
        if options.validFraction > 0 && trainCount > 0 {
            validCut = quantile(n: trainCount, q: 1 - options.validFraction) { Double(log.timestamp[Int(order[$0])]) }
        }
        // split[r]: 0 train, 1 valid, 2 test
        var split = [UInt8](repeating: 2, count: n)
        for k in 0..<trainCount {
            let r = Int(order[k])
            split[r] = (validCut.map { Double(log.timestamp[r]) >= $0 } ?? false) ? 1 : 0
        }

        // History: per user, positives in time order (CSR); histEnd[r] = how many
        // of them have a timestamp strictly before row r's.
        let users = log.userKeys.count
        var posStart = [Int](repeating: 0, count: users + 1)
        for r in 0..<n where log.label[r] == 1 { posStart[Int(log.userIndex[r]) + 1] += 1 }
        for u in 0..<users { posStart[u + 1] += posStart[u] }
        var posRows = [Int32](repeating: 0, count: posStart[users])
        var histEnd = [Int32](repeating: 0, count: n)
        do {
            var committed = [Int32](repeating: 0, count: users)
            var pending = [Int32](repeating: 0, count: users)
            var pendingTs = [Int64](repeating: .min, count: users)
            for k in 0..<n {
                let r = Int(order[k])
                let u = Int(log.userIndex[r])
                let t = log.timestamp[r]
                if pending[u] > 0 && pendingTs[u] < t {
                    committed[u] += pending[u]
                    pending[u] = 0
                }
                histEnd[r] = committed[u]
                if log.label[r] == 1 {
                    posRows[posStart[u] + Int(committed[u] + pending[u])] = Int32(r)
                    if pending[u] > 0 && pendingTs[u] == t {
                        pending[u] += 1
                    } else {
                        pendingTs[u] = t
                        pending[u] = 1
                    }
                }
            }
        }

        // Cold items: never in a non-test row.
        var itemInTraining = [Bool](repeating: false, count: log.itemKeys.count)
        for r in 0..<n where split[r] != 2 { itemInTraining[Int(log.itemIndex[r])] = true }

        // Rows per scene and split, in time order.
        let sceneCount = log.sceneNames.count
        var lists = [[[Int32]]](repeating: [[], [], []], count: sceneCount)
        for k in 0..<n {
            let r = Int(order[k])
            lists[Int(log.scene[r])][Int(split[r])].append(Int32(r))
        }

        // Chunks: every (scene, split, piece) is a job; jobs run on all cores.
        let tables = ChunkTables(log: log, truth: truth, histEnd: histEnd, posStart: posStart, posRows: posRows,
                                 itemInTraining: itemInTraining, split: split, lLong: L)
        let splitNames = ["train", "valid", "test"]
        struct Job: Sendable { var scene: Int; var split: Int; var number: Int; var range: Range<Int>; var file: String }
        var jobs: [Job] = []
        for s in 0..<sceneCount {
            try FileSystem.makeDirectory(options.outDirectory + "/scene-\(s)")
            // Shuffle training rows so that a chunk is a sample of the whole period.
            var rng = SplitMix64(seed: options.shuffleSeed ^ KeyHash.mix64(UInt64(s) &+ 0x5CE7E))
            lists[s][0].shuffle(using: &rng)
            for k in 0..<3 {
                var c = 0, number = 0
                while c < lists[s][k].count {
                    let end = min(c + options.chunkSize, lists[s][k].count)
                    let file = "scene-\(s)/\(splitNames[k])-\(String(format: "%05d", number)).chunk"
                    jobs.append(Job(scene: s, split: k, number: number, range: c..<end, file: file))
                    number += 1
                    c = end
                }
            }
        }
        let results = JobResults<SceneAccumulator>(count: jobs.count)
        let frozenLists = lists
        let frozenJobs = jobs
        let outDirectory = options.outDirectory
        let chunkSize = options.chunkSize
        DispatchQueue.concurrentPerform(iterations: jobs.count) { k in
            if results.failed { return }
            let job = frozenJobs[k]
            var columns = ChunkColumns(lLong: L, scene: Int32(job.scene), capacity: min(chunkSize, job.range.count))
            var acc = SceneAccumulator()
            tables.fill(&columns, rows: frozenLists[job.scene][job.split][job.range], stats: &acc)
            do {
                try columns.write(to: outDirectory + "/" + job.file)
                results.set(k, acc)
            } catch {
                results.fail(error)
            }
        }
        let perJob = try results.values()

        // Distinct users and items per scene (rows in time order: near-sequential reads).
        var userStamp = [Int32](repeating: -1, count: users)
        var itemStamp = [Int32](repeating: -1, count: log.itemKeys.count)
        var sceneManifests: [SceneManifest] = []
        var summaryLines: [String] = []
        for s in 0..<sceneCount {
            let name = log.sceneNames[s]
            var distinctUsers = 0, distinctItems = 0
            for k in 0..<3 {
                for r32 in lists[s][k] {
                    let r = Int(r32)
                    let u = Int(log.userIndex[r]), i = Int(log.itemIndex[r])
                    if userStamp[u] != Int32(s) { userStamp[u] = Int32(s); distinctUsers += 1 }
                    if itemStamp[i] != Int32(s) { itemStamp[i] = Int32(s); distinctItems += 1 }
                }
            }
            var acc = SceneAccumulator()
            var refs: [[ChunkRef]] = [[], [], []]
            for (k, job) in jobs.enumerated() where job.scene == s {
                acc.merge(perJob[k])
                refs[job.split].append(ChunkRef(file: job.file, count: job.range.count))
            }
            let rowsInScene = lists[s].reduce(0) { $0 + $1.count }
            // Buckets 0, 1-4, 5-9, 10-19, 20-(L-1), L; the middle ones cut at L-1 (or dropped) for a small L.
            let lows = [1, 5, 10, 20], highs = [4, 9, 19, L - 1]
            var labels = ["0"]
            for k in 0..<4 { labels.append(lows[k] <= L - 1 ? "\(lows[k])-\(min(highs[k], L - 1))" : "") }
            labels.append("\(L)")
            var histDict: [String: Int] = [:]
            for (k, label) in labels.enumerated() where !label.isEmpty {
                histDict[label, default: 0] += acc.hist[k]
            }
            let stats = SceneStats(rows: rowsInScene, users: distinctUsers, items: distinctItems,
                                   positiveRate: rowsInScene > 0 ? Double(acc.positives) / Double(rowsInScene) : 0,
                                   meanHistoryLength: rowsInScene > 0 ? Double(acc.historySum) / Double(rowsInScene) : 0,
                                   historyLengths: histDict, coldTestRows: acc.coldTest)
            sceneManifests.append(SceneManifest(name: name, index: s, key: KeyHash.idKey(name),
                                                train: refs[0], valid: refs[1], test: refs[2], stats: stats))
            let pct = { (x: Int) in rowsInScene > 0 ? String(format: "%.1f%%", 100 * Double(x) / Double(rowsInScene)) : "-" }
            summaryLines.append("scene \(s) \(name): rows \(rowsInScene) (train \(lists[s][0].count), valid \(lists[s][1].count), test \(lists[s][2].count), cold test \(acc.coldTest)), users \(distinctUsers), items \(distinctItems), positive rate \(String(format: "%.3f", stats.positiveRate))")
            summaryLines.append("  history length: mean \(String(format: "%.1f", stats.meanHistoryLength)); " +
                                labels.enumerated().filter { histDict[$0.element] != nil }
                                    .map { "\($0.element): \(pct(acc.hist[$0.offset]))" }.joined(separator: ", "))
        }

        let tsMin = log.timestamp.min() ?? 0, tsMax = log.timestamp.max() ?? 0
        let manifest = DatasetManifest(
            format: DatasetManifest.currentFormat, lLong: L, chunkSize: options.chunkSize,
            hash: "KeyHash.idKey: FNV-1a 64 over the id's UTF-8 text, then the SplitMix64 finaliser; 0 -> 1",
            scenes: sceneManifests, hasTruth: options.truthPath != nil,
            split: .init(testFraction: options.testFraction, validFraction: options.validFraction,
                         testCut: testCut, validCut: validCut, minTimestamp: tsMin, maxTimestamp: tsMax,
                         trainShuffleSeed: options.shuffleSeed),
            rows: n, users: users, items: log.itemKeys.count,
            source: .init(log: options.logPath, items: options.itemsPath, truth: options.truthPath),
            skipped: bad.counts, catalogue: catalogue, badRows: bad.groups)
        try FileSystem.writeFile(options.outDirectory + "/" + DatasetManifest.fileName, Array(try manifest.jsonData()))

        let seconds = Date().timeIntervalSince(start)
        var head = ["prepared \(n) rows (\(log.dataRows) data rows read), \(users) users, \(log.itemKeys.count) items, \(sceneCount) scene(s) in \(String(format: "%.2f", seconds)) s (\(String(format: "%.0f", Double(log.dataRows) / max(seconds, 1e-9))) rows/s)",
                    "split: test ts >= \(testCut) (\(n - trainCount) rows), validation ts >= \(validCut.map { "\($0)" } ?? "- (none)"), l_long \(L), chunk size \(options.chunkSize)"]
        if trainCount == 0 {
            head.append("warning: no training rows: every timestamp is at or after the test cut \(testCut)")
        }
        if let catalogue, let ip = options.itemsPath { head += Catalogue.summaryLines(catalogue, path: ip) }
        head += bad.summaryLines
        if rowsWithoutTruth > 0 { head.append("\(rowsWithoutTruth) row(s) have no truth (their truth is NaN)") }
        return PreparationResult(manifest: manifest, badRows: bad, rowsWithoutTruth: rowsWithoutTruth,
                                 summary: (head + summaryLines).joined(separator: "\n"), seconds: seconds)
    }

    /// numpy.quantile(a, q) with the default linear method, over sorted values `a(0..<n)`.
    public static func quantile(n: Int, q: Double, _ a: (Int) -> Double) -> Double {
        precondition(n > 0)
        let virtual = Double(n - 1) * q
        let lo = virtual.rounded(.down)
        let gamma = virtual - lo
        let i = min(max(Int(lo), 0), n - 1)
        let j = min(i + 1, n - 1)
        let x = a(i), y = a(j)
        let diff = y - x
        return gamma >= 0.5 ? y - diff * (1 - gamma) : x + diff * gamma
    }

    /// numpy.quantile over an unsorted array.
    public static func quantile(_ values: [Int64], q: Double) -> Double {
        let s = values.sorted()
        return quantile(n: s.count, q: q) { Double(s[$0]) }
    }

    static func readTruth(path: String, dataRows: Int, bad: inout BadRowLog) throws -> [Float] {
        let file = try MappedFile(path: path)
        var out = [Float](repeating: .nan, count: dataRows)
        try file.withBytes { bytes in
            var csv = CSVScanner(bytes: bytes)
            guard csv.next() else { throw ScenePSError.data("\(path): empty file (expected a header row,p)") }
            // Columns by name, in any order; a column the reader does not use is ignored, with a note.
            let header = try CSVHeader(&csv, path: path, required: ["row", "p"])
            if let note = header.note(path: path) { bad.notes.append(note) }
            let (cr, cp) = (header.required[0], header.required[1])
            var any = false
            while csv.next() {
                any = true
                let line = csv.lineNumber
                guard csv.fields.count == header.width else {
                    try bad.report(.badTruthRow, file: path, line: line, "\(csv.fields.count) field(s), the header has \(header.width)")
                    continue
                }
                guard let r = csv.int64(cr), r >= 0, r < dataRows else {
                    try bad.report(.badTruthRow, file: path, line: line, "row \"\(csv.string(cr))\" is not a data row index in 0..<\(dataRows)")
                    continue
                }
                guard let p = csv.double(cp), p >= 0, p <= 1 else {
                    try bad.report(.badTruthRow, file: path, line: line, "p \"\(csv.string(cp))\" is not a probability in [0, 1]")
                    continue
                }
                guard out[Int(r)].isNaN else {
                    try bad.report(.duplicateTruthRow, file: path, line: line, "row \(r) already has a truth")
                    continue
                }
                out[Int(r)] = Float(p)
            }
            guard any else { throw ScenePSError.data("\(path): empty file (a header and no rows)") }
        }
        return out
    }
}
