import ArgumentParser
import ScenePSCore
import ScenePSData

/// `psctl prepare`: a behaviour log into per-scene binary chunks + manifest.json.
struct Prepare: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prepare",
        abstract: "Prepare a behaviour log (CSV) into per-scene, per-split binary chunks for the workers.",
        discussion: """
        Log columns: user_id,item_id,category_id,scene,timestamp,label (header required, extra columns ignored). \
        Scenes are those found in the log, indexed by sorted name, unless --scenes lists them (in index order). \
        Writes OUT/manifest.json and OUT/scene-<k>/{train,valid,test}-<n>.chunk. \
        With --config, the `data` section (chunk_size, test_fraction, valid_fraction), model.l_long and the \
        `scenes` list of the cluster config are the defaults; flags override them.
        """)

    @Option(name: .long, help: "Cluster config (YAML) whose data section, model.l_long and scenes give the defaults.")
    var config: String?

    @Option(name: .long, help: "Behaviour log CSV.")
    var log: String

    @Option(name: .long, help: ArgumentHelp("Item catalogue CSV (item_id,category_id,title).",
        discussion: "It may list items the log never mentions: they are kept in OUT/items.csv (in_log 0) and counted. Each log row keeps its own category; disagreements with the catalogue are counted."))
    var items: String?

    @Option(name: .long, help: "Truth CSV (row,p): true click probability per data row.")
    var truth: String?

    @Option(name: .long, help: "Output directory.")
    var out: String

    @Option(name: .long, help: "Samples per chunk (default 8192).")
    var chunkSize: Int?

    @Option(name: .long, help: "Fraction of the time range (by timestamp quantile) used as the test set (default 0.1).")
    var testFraction: Double?

    @Option(name: .long, help: "Fraction of the training rows (by timestamp quantile) used for validation; 0 for none (default 0.05).")
    var validFraction: Double?

    @Option(name: .long, help: "History length kept per sample (L_long, default 50).")
    var lLong: Int?

    @Option(name: .long, help: "Comma-separated scene names in index order; any other scene is bad input.")
    var scenes: String?

    @Option(name: .long, help: "Seed of the shuffle of training rows before chunking.")
    var shuffleSeed: UInt64 = 1

    @Flag(name: .long, help: "Skip bad rows, count them and print a summary, instead of stopping at the first.")
    var skipBadRows = false

    func options() throws -> PreparationOptions {
        let c = try config.map { try ClusterConfig.load(path: $0) } ?? ClusterConfig()
        var o = PreparationOptions(logPath: log, outDirectory: out)
        o.itemsPath = items; o.truthPath = truth
        o.chunkSize = chunkSize ?? c.data.chunkSize
        o.testFraction = testFraction ?? c.data.testFraction
        o.validFraction = validFraction ?? c.data.validFraction
        o.lLong = lLong ?? c.model.lLong
        if let scenes {
            o.scenes = scenes.split(separator: ",", omittingEmptySubsequences: false).map { String($0) }
        } else if !c.scenes.isEmpty {
            o.scenes = c.scenes.keys.sorted()   // the config lists the scenes: any other scene in the log is bad input
        }
        o.skipBadRows = skipBadRows; o.shuffleSeed = shuffleSeed
        return o
    }

    func validate() throws {
        do {
            try options().validate()
        } catch let e as ScenePSError {
            throw ValidationError(e.message)
        }
    }

    func run() throws {
        try reportingErrors {
            let o = try options()
            let result = try Preparation.run(o)
            print(result.summary)
        }
    }
}
