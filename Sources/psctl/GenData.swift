import ArgumentParser
import Foundation
import ScenePSCore
import ScenePSData

/// `psctl gen-data`: the synthetic multi-scene data set (log.csv, truth.csv, items.csv).
struct GenData: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gen-data",
        abstract: "Generate a synthetic multi-scene behaviour log with known click probabilities.",
        discussion: """
            Writes DIR/log.csv, DIR/truth.csv (row,p) and DIR/items.csv (titles), deterministically from --seed.

            Profiles (--profile):
              default    the default data set: sessions whose intent crosses scenes, users active over the whole log,
                         a positive rate of about 0.25, events seconds apart (10% of rows share their user's
                         timestamp); 480,000 rows, 10,000 users, 20,000 items, 25 topics, scenes
                         home/search/video/shop. Byte-for-byte the same data as before profiles existed.
              movielens  the traits of a real ratings log (MovieLens-100K): users arrive over --span-days and give
                         most of their rows in a few sittings, where a rating shares the previous one's timestamp
                         with probability --same-timestamp (0.51: ~76% of rows share their user's timestamp with
                         another row); heavy-tailed rows per user (>= 20), so the last tenth comes from few users
                         with long histories; each user's interests drift (--drift); a topic is a genre and
                         belongs to one scene, so a row's scene is its item's; no user rates an item twice; about
                         half the rows positive ("rating > 3"). Sizes 100,000 rows, 943 users, 1,682 items,
                         18 topics, scenes action=0.42,comedy=0.29,drama=0.29 (by topic, so the row shares
                         follow the items' popularity). --rows, --users, --items, --topics and --scene-shares
                         override them. tools/log_traits.py LOG prints these traits of any log.
            """)

    @Option(name: .long, help: "Generative story: default | movielens (see below).")
    var profile: String = "default"

    @Option(name: .long, help: "Output directory.")
    var out: String

    @Option(name: .long, help: "Number of log rows (default 480000; movielens 100000).")
    var rows: Int?

    @Option(name: .long, help: "Number of users (default 10000; movielens 943).")
    var users: Int?

    @Option(name: .long, help: "Number of items (default 20000; movielens 1682).")
    var items: Int?

    @Option(name: .long, help: "Number of topics (default 25; movielens 18).")
    var topics: Int?

    @Option(name: .long, help: "Random seed.")
    var seed: UInt64 = 42

    @Option(name: .long, help: "Scenes and traffic shares, e.g. home=0.4,search=0.25,video=0.25,shop=0.1 (the default; movielens action=0.42,comedy=0.29,drama=0.29).")
    var sceneShares: String?

    @Flag(name: .long, inversion: .prefixedNo, help: "Write items.csv with titles.")
    var titles: Bool = true

    @Option(name: .long, help: "Share of items held out of training (cold-start study): released at the start of the last tenth of the rows, so only test rows show them. 0 = the default data set.")
    var holdOutItems: Double = 0

    @Option(name: .long, help: "Share of items whose category is random rather than their topic's (the title still follows the topic). 0 = the default data set.")
    var categoryNoise: Double = 0

    @Option(name: .long, help: "movielens: probability that a rating has the previous rating's timestamp, in [0, 1) (default 0.51).")
    var sameTimestamp: Double?

    @Option(name: .long, help: "movielens: weight of a user's late interests at their last row, in [0, 1] (default 0.7; 0 = no drift).")
    var drift: Double?

    @Option(name: .long, help: "movielens: days over which users arrive (default 215).")
    var spanDays: Double?

    func parsedShares(_ text: String) throws -> [(name: String, share: Double)] {
        try text.split(separator: ",").map { part in
            let kv = part.split(separator: "=", maxSplits: 1)
            guard kv.count == 2, let share = Double(kv[1].trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("--scene-shares: \"\(part)\" is not name=share")
            }
            return (String(kv[0]).trimmingCharacters(in: .whitespaces), share)
        }
    }

    func options() throws -> GeneratorOptions {
        guard let p = GeneratorOptions.Profile(rawValue: profile) else {
            throw ValidationError("--profile: \"\(profile)\" is not one of \(GeneratorOptions.Profile.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        var o = p == .movielens ? GeneratorOptions.movieLens() : GeneratorOptions()
        if p != .movielens && (sameTimestamp != nil || drift != nil || spanDays != nil) {
            throw ValidationError("--same-timestamp, --drift and --span-days belong to --profile movielens")
        }
        if let v = rows { o.rows = v }
        if let v = users { o.users = v }
        if let v = items { o.items = v }
        if let v = topics { o.topics = v }
        if let v = sceneShares { o.scenes = try parsedShares(v) }
        if let v = sameTimestamp { o.sittings.sameTimestamp = v }
        if let v = drift { o.sittings.drift = v }
        if let v = spanDays {
            guard v > 0 && v * 86_400 < 1e12 else { throw ValidationError("--span-days must be > 0, got \(v)") }
            o.sittings.spanSeconds = Int64(v * 86_400)
        }
        o.seed = seed
        o.titles = titles
        o.holdOutItems = holdOutItems; o.categoryNoise = categoryNoise
        return o
    }

    func validate() throws {
        _ = try options()
    }

    func run() throws {
        try reportingErrors {
            let o = try options()
            let g = try Generator(options: o)
            let stats = try g.run(outDirectory: out)
            let shares = zip(o.scenes, stats.sceneRows).map { "\($0.0.name) \($0.1)" }.joined(separator: ", ")
            print("wrote \(stats.rows) rows to \(out)/log.csv (+ truth.csv\(titles ? ", items.csv with \(stats.itemsWritten) items" : "")) in \(String(format: "%.2f", stats.seconds)) s (\(String(format: "%.0f", Double(stats.rows) / max(stats.seconds, 1e-9))) rows/s)")
            print("scenes: \(shares)")
            print("positive rate \(String(format: "%.3f", stats.positiveRate)), oracle AUC \(String(format: "%.4f", stats.oracleAUC)) (last tenth \(String(format: "%.4f", stats.oracleAUCLastTenth)))")
        }
    }
}
