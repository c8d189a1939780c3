import ArgumentParser
import Foundation
import ScenePSCore
import ScenePSData

/// `psctl gen-data`: the synthetic multi-scene data set (log.csv, truth.csv, items.csv).
struct GenData: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gen-data",
        abstract: "Generate a synthetic multi-scene behaviour log with known click probabilities.",
        discussion: "Writes DIR/log.csv, DIR/truth.csv (row,p) and DIR/items.csv (titles), deterministically from --seed.")

    @Option(name: .long, help: "Output directory.")
    var out: String

    @Option(name: .long, help: "Number of log rows.")
    var rows: Int = 480_000

    @Option(name: .long, help: "Number of users.")
    var users: Int = 10_000

    @Option(name: .long, help: "Number of items.")
    var items: Int = 20_000

    @Option(name: .long, help: "Number of topics.")
    var topics: Int = 25

    @Option(name: .long, help: "Random seed.")
    var seed: UInt64 = 42

    @Option(name: .long, help: "Scenes and traffic shares, e.g. home=0.4,search=0.25,video=0.25,shop=0.1.")
    var sceneShares: String = "home=0.4,search=0.25,video=0.25,shop=0.1"

    @Flag(name: .long, inversion: .prefixedNo, help: "Write items.csv with titles.")
    var titles: Bool = true

    @Option(name: .long, help: "Share of items held out of training (cold-start study): released at the start of the last tenth of the rows, so only test rows show them. 0 = the default data set.")
    var holdOutItems: Double = 0

    @Option(name: .long, help: "Share of items whose category is random rather than their topic's (the title still follows the topic). 0 = the default data set.")
    var categoryNoise: Double = 0

    func parsedShares() throws -> [(name: String, share: Double)] {
        try sceneShares.split(separator: ",").map { part in
            let kv = part.split(separator: "=", maxSplits: 1)
            guard kv.count == 2, let share = Double(kv[1].trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("--scene-shares: \"\(part)\" is not name=share")
            }
            return (String(kv[0]).trimmingCharacters(in: .whitespaces), share)
        }
    }

    func validate() throws {
        _ = try parsedShares()
    }

    func run() throws {
        try reportingErrors {
            var o = GeneratorOptions()
            o.rows = rows; o.users = users; o.items = items; o.topics = topics; o.seed = seed
            o.scenes = try parsedShares(); o.titles = titles
            o.holdOutItems = holdOutItems; o.categoryNoise = categoryNoise
            let g = try Generator(options: o)
            let stats = try g.run(outDirectory: out)
            let shares = zip(o.scenes, stats.sceneRows).map { "\($0.0.name) \($0.1)" }.joined(separator: ", ")
            print("wrote \(stats.rows) rows to \(out)/log.csv (+ truth.csv\(titles ? ", items.csv with \(stats.itemsWritten) items" : "")) in \(String(format: "%.2f", stats.seconds)) s (\(String(format: "%.0f", Double(stats.rows) / max(stats.seconds, 1e-9))) rows/s)")
            print("scenes: \(shares)")
            print("positive rate \(String(format: "%.3f", stats.positiveRate)), oracle AUC \(String(format: "%.4f", stats.oracleAUC)) (last tenth \(String(format: "%.4f", stats.oracleAUCLastTenth)))")
        }
    }
}
