import Foundation
import ScenePSCore

/// Options of the synthetic multi-scene generator (docs/ARCHITECTURE.md §4).
public struct GeneratorOptions: Sendable {
    /// The generative story: `sessions` (the default data set, below) or
    /// `movielens` (a ratings log's traits: Generator+Sittings.swift).
    public enum Profile: String, CaseIterable, Sendable {
        case sessions = "default"
        case movielens
    }
    public var profile = Profile.sessions
    /// The `movielens` profile's knobs (unused by the default story).
    public var sittings = SittingOptions()
    public var rows = 480_000
    public var users = 10_000
    public var items = 20_000
    public var topics = 25
    public var categoriesPerTopic = 4
    public var seed: UInt64 = 42
    /// Scene names and traffic shares (normalised). Default: shop is sparse (~10%).
    public var scenes: [(name: String, share: Double)] = [("home", 0.40), ("search", 0.25), ("video", 0.25), ("shop", 0.10)]
    /// Write items.csv with titles.
    public var titles = true
    public var startTimestamp: Int64 = 1_700_000_000

    // The generative story's knobs.
    /// Zipf exponent of item popularity.
    public var zipf = 0.9
    /// Probability that an exposure is drawn by popularity alone (else by relevance).
    public var popularityExposure = 0.35
    /// Probability that a session's intent is a topic outside the user's long-term interests.
    public var novelIntent = 0.4
    /// Fraction of items released during the log (exposed only after their release).
    public var newItemFraction = 0.05
    /// Probability that an exposure promotes an item released recently (within the last 5% of rows).
    public var freshExposure = 0.03
    /// Share of items held out of the training periods (cold-start studies):
    /// each is released at the start of the last tenth of the rows (the
    /// default test period), so the test rows that show it are `cold`
    /// (target item never in training). 0 = the default data set.
    public var holdOutItems = 0.0
    /// Share of items whose category is drawn at random instead of from
    /// their topic's categories: the category then says nothing of what the
    /// item is, the title still does. 0 = the default data set.
    public var categoryNoise = 0.0

    public init() {}

    public func validate() throws {
        guard rows >= 1 else { throw ScenePSError.invalidArgument("rows must be >= 1, got \(rows)") }
        guard users >= 1 else { throw ScenePSError.invalidArgument("users must be >= 1, got \(users)") }
        guard topics >= 1 && topics <= TopicVocabulary.topics.count * 8 else {
            throw ScenePSError.invalidArgument("topics must be in 1...\(TopicVocabulary.topics.count * 8), got \(topics)")
        }
        guard items >= topics else { throw ScenePSError.invalidArgument("items (\(items)) must be >= topics (\(topics))") }
        guard categoriesPerTopic >= 1 else { throw ScenePSError.invalidArgument("categories per topic must be >= 1") }
        guard !scenes.isEmpty else { throw ScenePSError.invalidArgument("at least one scene is needed") }
        guard Set(scenes.map(\.name)).count == scenes.count else { throw ScenePSError.invalidArgument("scene names must differ") }
        for s in scenes {
            guard !s.name.isEmpty, s.name.utf8.count <= 200, !s.name.contains(","), !s.name.contains("\""),
                  !s.name.contains("\n"), !s.name.contains("\r") else {
                throw ScenePSError.invalidArgument("scene name \"\(s.name)\" must be 1-200 bytes without commas, quotes or newlines")
            }
            guard s.share > 0 && s.share.isFinite else { throw ScenePSError.invalidArgument("scene \(s.name): share must be > 0") }
        }
        guard (0...1).contains(popularityExposure), (0...1).contains(novelIntent), (0..<1).contains(newItemFraction) else {
            throw ScenePSError.invalidArgument("popularity exposure, novel intent in [0,1], new item fraction in [0,1)")
        }
        guard (0..<1).contains(holdOutItems) else { throw ScenePSError.invalidArgument("hold-out share must be in [0, 1), got \(holdOutItems)") }
        guard (0...1).contains(categoryNoise) else { throw ScenePSError.invalidArgument("category noise must be in [0, 1], got \(categoryNoise)") }
        if profile == .movielens {
            guard holdOutItems == 0 && categoryNoise == 0 else {
                throw ScenePSError.invalidArgument("the movielens profile has no hold-out items or category noise (they belong to the default story)")
            }
            try sittings.validate()
        }
    }
}

/// What a generation run produced.
public struct GeneratorStats: Sendable {
    public var rows: Int
    public var positives: Int
    public var sceneRows: [Int]
    /// AUC of the true probabilities against the drawn labels, all rows.
    public var oracleAUC: Double
    /// The same over the last 10% of rows (about the test period).
    public var oracleAUCLastTenth: Double
    public var itemsWritten: Int
    public var seconds: Double
    public var positiveRate: Double { rows > 0 ? Double(positives) / Double(rows) : 0 }
}

/// The synthetic multi-scene behaviour generator.
///
/// Story: user u has a few long-term topics θ_u (sparse Dirichlet), shifted
/// per scene by a scene-topic bias w_s (θ_{u,s} ∝ θ_u ⊙ w_s). Users arrive in
/// sessions; a session carries one intent topic — one of the user's topics,
/// or (with `novelIntent`) a new one — and its events fall in any scene by the
/// scene shares, so intent crosses scenes. An exposure is drawn either by
/// popularity (Zipf) or by relevance (intent or θ_{u,s}, then Zipf within the
/// topic). The click probability is
///   σ(β_s + 3.2·θ_{u,s}[k_i] + 1.6·[k_i = intent] + q_i + b_u)
/// with scene bias β_s, item quality q_i and user propensity b_u; the label is
/// a Bernoulli draw, so the oracle AUC is below 1.
///
/// Output: `log.csv` (user_id,item_id,category_id,scene,timestamp,label, time
/// order; user ids are integers, item ids `i<n>`, categories `c<n>`),
/// `truth.csv` (row,p) and `items.csv` (item_id,category_id,title) listing
/// every item, as a shop's catalogue does: also those the log never mentions
/// (the long tail of the Zipf popularity).
public struct Generator {
    public let options: GeneratorOptions

    public init(options: GeneratorOptions) throws {
        try options.validate()
        self.options = options
    }

    static func normal(_ rng: inout SplitMix64) -> Double {
        let u1 = max(rng.nextUnit(), 1e-300), u2 = rng.nextUnit()
        return (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
    }

    /// Index k with cdf[k-1] <= x < cdf[k] (cdf ascending, last = total).
    @inline(__always)
    static func pick(_ cdf: UnsafeBufferPointer<Double>, _ x: Double) -> Int {
        var lo = 0, hi = cdf.count - 1
        while lo < hi {
            let mid = (lo + hi) >> 1
            if cdf[mid] > x { hi = mid } else { lo = mid + 1 }
        }
        return lo
    }

    /// Walker's alias table: O(1) draws from a discrete distribution.
    struct AliasTable {
        var probability: [Double]
        var alias: [Int32]

        init(_ weights: [Double]) {
            let n = weights.count
            precondition(n > 0)
            let total = weights.reduce(0, +)
            var scaled = weights.map { $0 * Double(n) / total }
            probability = [Double](repeating: 1, count: n)
            alias = [Int32](repeating: 0, count: n)
            var small: [Int] = [], large: [Int] = []
            for k in 0..<n { if scaled[k] < 1 { small.append(k) } else { large.append(k) } }
            while let l = small.popLast() {
                guard let g = large.last else { break }
                probability[l] = scaled[l]
                alias[l] = Int32(g)
                scaled[g] -= 1 - scaled[l]
                if scaled[g] < 1 { large.removeLast(); small.append(g) }
            }
            for k in 0..<n { alias[k] = probability[k] >= 1 ? Int32(k) : alias[k] }
        }

        @inline(__always)
        func draw(_ rng: inout SplitMix64) -> Int {
            let x = rng.nextUnit() * Double(probability.count)
            let k = min(Int(x), probability.count - 1)
            return (x - Double(k)) < probability[k] ? k : Int(alias[k])
        }
    }

    static func cumulative(_ w: [Double]) -> [Double] {
        var c = [Double](repeating: 0, count: w.count)
        var s = 0.0
        for k in 0..<w.count { s += w[k]; c[k] = s }
        return c
    }

    /// AUC of probabilities given in millionths (ties averaged), O(n + 10⁶):
    /// exactly `Evaluation.auc` over the values written to truth.csv.
    static func binnedAUC(micro: [UInt32], labels: [UInt8], range: Range<Int>) -> Double {
        var pos = [Int](repeating: 0, count: 1_000_001), neg = pos
        for k in range {
            if labels[k] == 1 { pos[Int(micro[k])] += 1 } else { neg[Int(micro[k])] += 1 }
        }
        var negBelow = 0.0, wins = 0.0, positives = 0.0
        for b in 0...1_000_000 {
            let p = Double(pos[b]), n = Double(neg[b])
            wins += p * negBelow + 0.5 * p * n
            negBelow += n
            positives += p
        }
        guard positives > 0 && negBelow > 0 else { return .nan }
        return wins / (positives * negBelow)
    }

    /// items.csv: every item once, its category and a title of 3-5 words from its topic's vocabulary
    /// (drawn from a stream of its own per item, so titles do not depend on the log's draws).
    static func writeTitles(to outDirectory: String, itemTopic: [Int32], itemCategory: [Int32], seed: UInt64) throws -> Int {
        var itemsWritten = 0
        let itemsOut = try OutputFile(path: outDirectory + "/items.csv")
        itemsOut.buffer.appendString("item_id,category_id,title\n")
        let vocab = TopicVocabulary.topics
        for i in 0..<itemTopic.count {
            var irng = SplitMix64(seed: KeyHash.mix64(seed ^ 0x7171_7171) ^ UInt64(i))
            let topic = Int(itemTopic[i])
            let words = vocab[topic % vocab.count].words
            let extra = topic / vocab.count   // topics beyond the vocabulary reuse it with a suffix word
            let n = 3 + Int(irng.next() % 3)
            var title: [String] = []
            for _ in 0..<n {
                if irng.nextUnit() < 0.2 {
                    title.append(TopicVocabulary.general[Int(irng.next() % UInt64(TopicVocabulary.general.count))])
                } else {
                    title.append(words[Int(irng.next() % UInt64(words.count))])
                }
            }
            if extra > 0 { title.append(TopicVocabulary.general[extra % TopicVocabulary.general.count]) }
            itemsOut.buffer.append(UInt8(ascii: "i"))
            itemsOut.buffer.appendDecimal(UInt64(i))
            itemsOut.buffer.append(44)
            itemsOut.buffer.append(UInt8(ascii: "c"))
            itemsOut.buffer.appendDecimal(UInt64(itemCategory[i]))
            itemsOut.buffer.append(44)
            itemsOut.buffer.appendString(title.joined(separator: " "))
            itemsOut.buffer.append(10)
            try itemsOut.flushIfNeeded()
            itemsWritten += 1
        }
        try itemsOut.finish()
        return itemsWritten
    }

    @discardableResult
    public func run(outDirectory: String) throws -> GeneratorStats {
        if options.profile == .movielens { return try runSittings(outDirectory: outDirectory) }
        let o = options
        let start = Date()
        try FileSystem.makeDirectory(outDirectory)
        var rng = SplitMix64(seed: KeyHash.mix64(o.seed))
        let K = o.topics
        let S = o.scenes.count

        // Items: topic, category, popularity, quality, release row.
        var itemTopic = [Int32](repeating: 0, count: o.items)
        var itemCategory = [Int32](repeating: 0, count: o.items)
        var itemQuality = [Double](repeating: 0, count: o.items)
        var itemRelease = [Int](repeating: 0, count: o.items)
        var popRank = Array(0..<o.items)
        popRank.shuffle(using: &rng)
        var popWeight = [Double](repeating: 0, count: o.items)
        for i in 0..<o.items {
            itemTopic[i] = Int32(i % K)
            itemCategory[i] = Int32((i % K) * o.categoriesPerTopic + Int(rng.next() % UInt64(o.categoriesPerTopic)))
            itemQuality[i] = 0.3 * Self.normal(&rng)
            popWeight[i] = 1 / pow(Double(popRank[i] + 1), o.zipf)
            if rng.nextUnit() < o.newItemFraction { itemRelease[i] = Int(rng.next() % UInt64(o.rows)) }
        }
        let globalTable = AliasTable(popWeight)
        for i in 0..<o.items where popRank[i] == 0 { itemRelease[i] = 0 }   // always available
        // Cold-start knobs, from a stream of their own: at 0 the data set is the default one, draw for draw.
        var crng = SplitMix64(seed: KeyHash.mix64(o.seed ^ 0x484F_4C44_4F55_5400))
        if o.categoryNoise > 0 {
            for i in 0..<o.items where crng.nextUnit() < o.categoryNoise {
                itemCategory[i] = Int32(crng.next() % UInt64(K * o.categoriesPerTopic))
            }
        }
        if o.holdOutItems > 0 {
            let testStart = o.rows - o.rows / 10
            for i in 0..<o.items where popRank[i] != 0 && crng.nextUnit() < o.holdOutItems {
                itemRelease[i] = max(itemRelease[i], testStart)
            }
        }
        let mostPopular = popRank.firstIndex(of: 0)!
        // Items released during the log, by release row, for fresh-item promotion.
        let released = (0..<o.items).filter { itemRelease[$0] > 0 }.sorted { itemRelease[$0] < itemRelease[$1] }
        let releasedRows = released.map { itemRelease[$0] }
        let freshWindow = max(1, o.rows / 20)
        var topicItems = [[Int32]](repeating: [], count: K)
        for i in 0..<o.items { topicItems[Int(itemTopic[i])].append(Int32(i)) }
        let topicTables = topicItems.map { AliasTable($0.map { popWeight[Int($0)] }) }

        // Scenes: shares, bias, topic reweighting.
        let shareCDF = Self.cumulative(o.scenes.map(\.share))
        let defaultBias = [-3.3, -2.9, -3.15, -3.5]
        let sceneBias = (0..<S).map { $0 < defaultBias.count ? defaultBias[$0] : -3.2 + 0.3 * Self.normal(&rng) }
        var sceneTopic = [[Double]](repeating: [], count: S)
        for s in 0..<S { sceneTopic[s] = (0..<K).map { _ in exp(0.8 * Self.normal(&rng)) } }

        // Users: sparse long-term topics, activity, propensity.
        var userTopics = [[Int32]](repeating: [], count: o.users)
        var userWeights = [[Double]](repeating: [], count: o.users)
        var userActivity = [Double](repeating: 0, count: o.users)
        var userBias = [Double](repeating: 0, count: o.users)
        for u in 0..<o.users {
            let m = min(K, 2 + Int(rng.next() % 3))
            var chosen: [Int32] = []
            while chosen.count < m {
                let k = Int32(rng.next() % UInt64(K))
                if !chosen.contains(k) { chosen.append(k) }
            }
            var w = chosen.map { _ in -log(max(rng.nextUnit(), 1e-300)) }   // Dirichlet(1)
            let total = w.reduce(0, +)
            w = w.map { $0 / total }
            userTopics[u] = chosen
            userWeights[u] = w
            userActivity[u] = exp(0.8 * Self.normal(&rng))
            userBias[u] = 0.25 * Self.normal(&rng)
        }
        let userTable = AliasTable(userActivity)
        // θ_{u,s}: per (user, scene) weights over the user's topics, plus a floor for other topics.
        let floor = 0.02
        var userSceneWeights = [[Double]](repeating: [], count: o.users * S)
        for u in 0..<o.users {
            for s in 0..<S {
                var w = zip(userTopics[u], userWeights[u]).map { $0.1 * sceneTopic[s][Int($0.0)] }
                let total = w.reduce(0, +)
                w = w.map { (1 - floor) * $0 / total }
                userSceneWeights[u * S + s] = w
            }
        }

        // Output.
        let logOut = try OutputFile(path: outDirectory + "/log.csv", bufferBytes: 4 << 20)
        let truthOut = try OutputFile(path: outDirectory + "/truth.csv", bufferBytes: 2 << 20)
        var lb = ByteBuffer(), tb = ByteBuffer()
        lb.put(Array("user_id,item_id,category_id,scene,timestamp,label\n".utf8))
        tb.put(Array("row,p\n".utf8))
        let sceneBytes = o.scenes.map { Array($0.name.utf8) }
        var used = [Bool](repeating: false, count: o.items)
        var sceneRows = [Int](repeating: 0, count: S)
        var positives = 0
        var probs = [UInt32](repeating: 0, count: o.rows)   // p in millionths, as written to truth.csv
        var labels = [UInt8](repeating: 0, count: o.rows)
        var t = o.startTimestamp
        var row = 0

        try shareCDF.withUnsafeBufferPointer { scdf in
            let sTotal = scdf[scdf.count - 1]
            while row < o.rows {
                // A session.
                let u = userTable.draw(&rng)
                let ut = userTopics[u]
                var intent: Int
                if rng.nextUnit() < o.novelIntent {
                    intent = Int(rng.next() % UInt64(K))
                } else {
                    var x = rng.nextUnit(), k = 0
                    while k < ut.count - 1 && x >= userWeights[u][k] { x -= userWeights[u][k]; k += 1 }
                    intent = Int(ut[k])
                }
                let length = 1 + Int(-log(max(rng.nextUnit(), 1e-300)) * 9)
                t += 1 + Int64(rng.next() % 30)   // sessions of all users follow each other closely
                for _ in 0..<length where row < o.rows {
                    let s = Self.pick(scdf, rng.nextUnit() * sTotal)
                    let usw = userSceneWeights[u * S + s]
                    // Exposure.
                    var item = -1
                    if !released.isEmpty && rng.nextUnit() < o.freshExposure {
                        // Items released in (row - window, row]: binary search the sorted release rows.
                        var lo = 0, hi = releasedRows.count
                        while lo < hi { let m = (lo + hi) >> 1; if releasedRows[m] <= row - freshWindow { lo = m + 1 } else { hi = m } }
                        var end = lo
                        hi = releasedRows.count
                        while end < hi { let m = (end + hi) >> 1; if releasedRows[m] <= row { end = m + 1 } else { hi = m } }
                        if end > lo { item = released[lo + Int(rng.next() % UInt64(end - lo))] }
                    }
                    for _ in 0..<8 where item < 0 || itemRelease[item] > row {
                        if rng.nextUnit() < o.popularityExposure {
                            item = globalTable.draw(&rng)
                        } else {
                            var topic: Int
                            if rng.nextUnit() < 0.5 {
                                topic = intent
                            } else {
                                var x = rng.nextUnit()
                                var k = 0
                                topic = Int(rng.next() % UInt64(K))   // the floor mass: any topic
                                while k < ut.count {
                                    if x < usw[k] { topic = Int(ut[k]); break }
                                    x -= usw[k]
                                    k += 1
                                }
                            }
                            item = Int(topicItems[topic][topicTables[topic].draw(&rng)])
                        }
                        if itemRelease[item] <= row { break }
                    }
                    if itemRelease[item] > row { item = mostPopular }
                    // Click probability.
                    let k = Int(itemTopic[item])
                    var affinity = 0.0
                    for (m, topic) in ut.enumerated() where Int(topic) == k { affinity = usw[m] }
                    let z = sceneBias[s] + 3.2 * affinity + (k == intent ? 1.6 : 0) + itemQuality[item] + userBias[u]
                    let p = 1 / (1 + exp(-z))
                    let y = rng.nextUnit() < p ? 1 : 0
                    // Write.
                    lb.putDecimal(UInt64(u + 1))
                    lb.put(44)
                    lb.put(UInt8(ascii: "i"))
                    lb.putDecimal(UInt64(item))
                    lb.put(44)
                    lb.put(UInt8(ascii: "c"))
                    lb.putDecimal(UInt64(itemCategory[item]))
                    lb.put(44)
                    lb.put(sceneBytes[s])
                    lb.put(44)
                    lb.putDecimal(t)
                    lb.put(44)
                    lb.put(UInt8(48 + y))
                    lb.put(10)
                    tb.putDecimal(UInt64(row))
                    tb.put(44)
                    tb.putProbability(p)
                    tb.put(10)
                    try lb.flushIfNeeded(to: logOut)
                    try tb.flushIfNeeded(to: truthOut)
                    used[item] = true
                    sceneRows[s] += 1
                    positives += y
                    probs[row] = UInt32((min(max(p, 0), 1) * 1_000_000).rounded())
                    labels[row] = UInt8(y)
                    row += 1
                    // Next event: usually a few seconds later, sometimes the same second.
                    let gap = rng.next() % 100
                    t += gap < 6 ? 0 : Int64(1 + gap % 40)
                }
            }
        }
        try lb.flush(to: logOut)
        try tb.flush(to: truthOut)
        try logOut.finish()
        try truthOut.finish()

        let itemsWritten = o.titles ? try Self.writeTitles(to: outDirectory, itemTopic: itemTopic, itemCategory: itemCategory, seed: o.seed) : 0

        let tenth = max(0, o.rows - max(1, o.rows / 10))
        let oracle = Self.binnedAUC(micro: probs, labels: labels, range: 0..<o.rows)
        let oracleTail = Self.binnedAUC(micro: probs, labels: labels, range: tenth..<o.rows)
        return GeneratorStats(rows: o.rows, positives: positives, sceneRows: sceneRows, oracleAUC: oracle,
                              oracleAUCLastTenth: oracleTail, itemsWritten: itemsWritten,
                              seconds: Date().timeIntervalSince(start))
    }
}
