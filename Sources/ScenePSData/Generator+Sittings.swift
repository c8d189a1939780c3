import Foundation
import ScenePSCore

/// The `movielens` profile of the generator: a log with the traits of a real
/// ratings log (MovieLens-100K measured with tools/log_traits.py) that the
/// default sessions story lacks:
/// - **sittings**: a user rates many items in one sitting, and most ratings of
///   a sitting share their timestamp with the previous one (MovieLens-100K:
///   76% of rows share their user's timestamp with another row);
/// - **users arrive and leave**: each user arrives at a uniform time over the
///   log's span and gives most of their rows in the first sittings; later
///   sittings follow after hours or weeks. Rows per user are heavy-tailed
///   (at least `minRowsPerUser`), so the last tenth of the log comes from few
///   users, most of them new, with long histories (MovieLens: 166 of 943
///   users, a median of 89 earlier events per test row);
/// - **per-user drift**: a user's topic interests move from one sparse mixture
///   to another over the user's own rows (`drift` = the weight of the late
///   mixture at the user's last row);
/// - **genre scenes**: every topic belongs to one scene (topics are dealt to
///   scenes by the scene shares), so an item's scene is its genre group and a
///   row's scene is its item's; the category is the topic, like a first genre;
/// - no user rates the same item twice (while the catalogue allows it);
/// - labels like "rating > 3": about half of the rows are positive.
/// The click probability keeps the default story's form,
///   σ(β_s + 3.2·θ_u(τ)[k_i] + 1.6·[k_i = intent] + q_i + b_u),
/// with θ_u(τ) the drifting interests at the user's position τ in [0, 1],
/// the sitting's intent, and wider item quality and user propensity (q ~
/// N(0, 0.6²), b ~ N(0, 0.5²)): movies differ more than feed items, raters
/// differ in generosity.
public struct SittingOptions: Sendable, Equatable {
    /// Probability that the next rating of a sitting has the previous one's timestamp.
    /// 0.51 gives 1 − (1 − 0.51)² ≈ 76% of rows in a same-timestamp group.
    public var sameTimestamp = 0.51
    /// Weight of the user's late interests at their last row (0 = no drift, 1 = all moved).
    public var drift = 0.7
    /// The time the users' arrivals are spread over, in seconds (MovieLens-100K: 215 days).
    public var spanSeconds: Int64 = 215 * 86_400
    /// Rows of every user at least (MovieLens keeps users with >= 20 ratings), capped at rows / users.
    public var minRowsPerUser = 20
    /// Mean ratings per sitting (sizes are geometric).
    public var meanSittingRows = 30.0
    /// Probability that a user's next sitting is weeks later (else hours later).
    public var longGap = 0.1

    public init() {}

    func validate() throws {
        guard (0..<1).contains(sameTimestamp) else {
            throw ScenePSError.invalidArgument("same-timestamp probability must be in [0, 1), got \(sameTimestamp)")
        }
        guard (0...1).contains(drift) else { throw ScenePSError.invalidArgument("drift must be in [0, 1], got \(drift)") }
        guard spanSeconds >= 1 else { throw ScenePSError.invalidArgument("span must be >= 1 s, got \(spanSeconds)") }
        guard minRowsPerUser >= 1 else { throw ScenePSError.invalidArgument("min rows per user must be >= 1") }
        guard meanSittingRows >= 1 else { throw ScenePSError.invalidArgument("mean sitting rows must be >= 1") }
        guard (0...1).contains(longGap) else { throw ScenePSError.invalidArgument("long-gap probability must be in [0, 1]") }
    }
}

extension GeneratorOptions {
    /// The `movielens` profile's sizes: MovieLens-100K's rows, users and items,
    /// 18 topics (its genres) with one category each, three genre scenes.
    public static func movieLens() -> GeneratorOptions {
        var o = GeneratorOptions()
        o.profile = .movielens
        o.rows = 100_000
        o.users = 943
        o.items = 1_682
        o.topics = 18
        o.categoriesPerTopic = 1
        o.scenes = [("action", 0.42), ("comedy", 0.29), ("drama", 0.29)]
        o.startTimestamp = 874_724_710
        return o
    }
}

extension Generator {
    /// One generated rating before the rows are put in time order.
    struct Rating {
        var time: Int64
        var user: Int32
        var seq: Int32
        var item: Int32
        var label: UInt8
        var p: Double
    }

    /// The `movielens` profile (see `SittingOptions`).
    func runSittings(outDirectory: String) throws -> GeneratorStats {
        let o = options, so = o.sittings
        let start = Date()
        try FileSystem.makeDirectory(outDirectory)
        var rng = SplitMix64(seed: KeyHash.mix64(o.seed ^ 0x5177_494E_4753))   // "SITTINGS": its own stream
        let K = o.topics, S = o.scenes.count

        // Topics to scenes by the shares: topic k goes to the scene whose share interval holds (k + 0.5) / K.
        let shareCDF = Self.cumulative(o.scenes.map(\.share))
        let topicScene: [Int] = (0..<K).map { k in
            let x = (Double(k) + 0.5) / Double(K) * shareCDF[S - 1]
            return shareCDF.firstIndex { x < $0 } ?? S - 1
        }
        // Items: topic, category (one per topic and categoriesPerTopic), Zipf popularity, quality.
        var itemTopic = [Int32](repeating: 0, count: o.items)
        var itemCategory = [Int32](repeating: 0, count: o.items)
        var itemQuality = [Double](repeating: 0, count: o.items)
        var popRank = Array(0..<o.items)
        popRank.shuffle(using: &rng)
        var popWeight = [Double](repeating: 0, count: o.items)
        for i in 0..<o.items {
            itemTopic[i] = Int32(i % K)
            itemCategory[i] = Int32((i % K) * o.categoriesPerTopic + Int(rng.next() % UInt64(o.categoriesPerTopic)))
            itemQuality[i] = 0.6 * Self.normal(&rng)
            popWeight[i] = 1 / pow(Double(popRank[i] + 1), o.zipf)
        }
        let globalTable = AliasTable(popWeight)
        var topicItems = [[Int32]](repeating: [], count: K)
        for i in 0..<o.items { topicItems[Int(itemTopic[i])].append(Int32(i)) }
        let topicTables = topicItems.map { AliasTable($0.map { popWeight[Int($0)] }) }
        let sceneBias = (0..<S).map { _ in -0.65 + 0.2 * Self.normal(&rng) }

        // Users: rows (heavy-tailed, at least minRowsPerUser, summing to rows), arrival, early and late interests.
        let minRows = max(1, min(so.minRowsPerUser, o.rows / o.users))
        let activeUsers = min(o.users, o.rows / minRows)
        let weights = (0..<activeUsers).map { _ in exp(1.1 * Self.normal(&rng)) }
        let spare = o.rows - minRows * activeUsers
        let wTotal = weights.reduce(0, +)
        var userRows = weights.map { minRows + Int(Double(spare) * $0 / wTotal) }
        var left = o.rows - userRows.reduce(0, +)
        var u0 = 0
        while left > 0 { userRows[u0 % activeUsers] += 1; left -= 1; u0 += 1 }
        func mixture(_ rng: inout SplitMix64) -> (topics: [Int], weights: [Double]) {
            let m = min(K, 2 + Int(rng.next() % 3))
            var chosen: [Int] = []
            while chosen.count < m {
                let k = Int(rng.next() % UInt64(K))
                if !chosen.contains(k) { chosen.append(k) }
            }
            let w = chosen.map { _ in -log(max(rng.nextUnit(), 1e-300)) }   // Dirichlet(1)
            let total = w.reduce(0, +)
            return (chosen, w.map { 0.98 * $0 / total })   // 0.02: the floor for any other topic
        }

        var ratings: [Rating] = []
        ratings.reserveCapacity(o.rows)
        for u in 0..<activeUsers {
            let early = mixture(&rng), late = mixture(&rng)
            let bias = 0.5 * Self.normal(&rng)
            var t = Int64(rng.nextUnit() * Double(so.spanSeconds))
            var seen = Set<Int32>()
            let n = userRows[u]
            var intent = 0
            var newSitting = true
            for j in 0..<n {
                let tau = n > 1 ? Double(j) / Double(n - 1) : 0
                let lateWeight = so.drift * tau
                // θ_u(τ): the early and the late mixture, blended.
                func affinity(_ k: Int) -> Double {
                    var a = 0.0
                    for (m, topic) in early.topics.enumerated() where topic == k { a += (1 - lateWeight) * early.weights[m] }
                    for (m, topic) in late.topics.enumerated() where topic == k { a += lateWeight * late.weights[m] }
                    return a
                }
                func interest(_ rng: inout SplitMix64) -> Int {
                    let mix = rng.nextUnit() < lateWeight ? late : early
                    var x = rng.nextUnit()
                    for (m, topic) in mix.topics.enumerated() {
                        if x < mix.weights[m] { return topic }
                        x -= mix.weights[m]
                    }
                    return Int(rng.next() % UInt64(K))   // the floor mass: any topic
                }
                if newSitting {
                    intent = rng.nextUnit() < o.novelIntent ? Int(rng.next() % UInt64(K)) : interest(&rng)
                    newSitting = false
                } else if rng.nextUnit() >= so.sameTimestamp {
                    t += 1 + Int64(-log(max(rng.nextUnit(), 1e-300)) * 30)
                }
                // Exposure: by popularity or by relevance (the sitting's intent or the interests); no item twice.
                var item: Int32 = 0
                for _ in 0..<8 {
                    if rng.nextUnit() < o.popularityExposure {
                        item = Int32(globalTable.draw(&rng))
                    } else {
                        let topic = rng.nextUnit() < 0.5 ? intent : interest(&rng)
                        item = topicItems[topic][topicTables[topic].draw(&rng)]
                    }
                    if !seen.contains(item) { break }
                }
                if seen.contains(item) && seen.count < o.items {
                    // A heavy rater has used up what the draws reach: the next item from a random place not yet rated.
                    var i = Int(rng.next() % UInt64(o.items))
                    while seen.contains(Int32(i)) { i = (i + 1) % o.items }
                    item = Int32(i)
                }
                seen.insert(item)
                let k = Int(itemTopic[Int(item)])
                let z = sceneBias[topicScene[k]] + 3.2 * affinity(k) + (k == intent ? 1.6 : 0) + itemQuality[Int(item)] + bias
                let p = 1 / (1 + exp(-z))
                let y: UInt8 = rng.nextUnit() < p ? 1 : 0
                ratings.append(Rating(time: t, user: Int32(u), seq: Int32(j), item: item, label: y, p: p))
                // The sitting ends: the next one hours or weeks later.
                if rng.nextUnit() < 1 / so.meanSittingRows {
                    newSitting = true
                    let mean = rng.nextUnit() < so.longGap ? 10.0 * 86_400 : 2.0 * 3_600
                    t += 60 + Int64(-log(max(rng.nextUnit(), 1e-300)) * mean)
                }
            }
        }
        ratings.sort { a, b in a.time != b.time ? a.time < b.time : a.user != b.user ? a.user < b.user : a.seq < b.seq }

        // Output, in time order.
        let logOut = try OutputFile(path: outDirectory + "/log.csv", bufferBytes: 4 << 20)
        let truthOut = try OutputFile(path: outDirectory + "/truth.csv", bufferBytes: 2 << 20)
        var lb = ByteBuffer(), tb = ByteBuffer()
        lb.put(Array("user_id,item_id,category_id,scene,timestamp,label\n".utf8))
        tb.put(Array("row,p\n".utf8))
        let sceneBytes = o.scenes.map { Array($0.name.utf8) }
        var sceneRows = [Int](repeating: 0, count: S)
        var positives = 0
        var probs = [UInt32](repeating: 0, count: ratings.count)
        var labels = [UInt8](repeating: 0, count: ratings.count)
        for (row, r) in ratings.enumerated() {
            let item = Int(r.item)
            let s = topicScene[Int(itemTopic[item])]
            lb.putDecimal(UInt64(r.user + 1))
            lb.put(44)
            lb.put(UInt8(ascii: "i"))
            lb.putDecimal(UInt64(item))
            lb.put(44)
            lb.put(UInt8(ascii: "c"))
            lb.putDecimal(UInt64(itemCategory[item]))
            lb.put(44)
            lb.put(sceneBytes[s])
            lb.put(44)
            lb.putDecimal(o.startTimestamp + r.time)
            lb.put(44)
            lb.put(48 + r.label)
            lb.put(10)
            tb.putDecimal(UInt64(row))
            tb.put(44)
            tb.putProbability(r.p)
            tb.put(10)
            try lb.flushIfNeeded(to: logOut)
            try tb.flushIfNeeded(to: truthOut)
            sceneRows[s] += 1
            positives += Int(r.label)
            probs[row] = UInt32((min(max(r.p, 0), 1) * 1_000_000).rounded())
            labels[row] = r.label
        }
        try lb.flush(to: logOut)
        try tb.flush(to: truthOut)
        try logOut.finish()
        try truthOut.finish()
        let itemsWritten = o.titles ? try Self.writeTitles(to: outDirectory, itemTopic: itemTopic, itemCategory: itemCategory, seed: o.seed) : 0

        let n = ratings.count
        let tenth = max(0, n - max(1, n / 10))
        return GeneratorStats(rows: n, positives: positives, sceneRows: sceneRows,
                              oracleAUC: Self.binnedAUC(micro: probs, labels: labels, range: 0..<n),
                              oracleAUCLastTenth: Self.binnedAUC(micro: probs, labels: labels, range: tenth..<n),
                              itemsWritten: itemsWritten, seconds: Date().timeIntervalSince(start))
    }
}
