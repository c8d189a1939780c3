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
        Writes OUT/manifest.json and OUT/scene-<k>/{train,valid,test}-<n>.chunk.
        """)

    @Option(name: .long, help: "Behaviour log CSV.")
    var log: String

    @Option(name: .long, help: "Item catalogue CSV (item_id,category_id,title).")
    var items: String?

    @Option(name: .long, help: "Truth CSV (row,p): true click probability per data row.")
    var truth: String?

    @Option(name: .long, help: "Output directory.")
    var out: String

    @Option(name: .long, help: "Samples per chunk.")
    var chunkSize: Int = 8192

    @Option(name: .long, help: "Fraction of the time range (by timestamp quantile) used as the test set.")
    var testFraction: Double = 0.1

    @Option(name: .long, help: "Fraction of the training rows (by timestamp quantile) used for validation; 0 for none.")
    var validFraction: Double = 0.1

    @Option(name: .long, help: "History length kept per sample (L_long).")
    var lLong: Int = 50

    @Option(name: .long, help: "Comma-separated scene names in index order; any other scene is bad input.")
    var scenes: String?

    @Option(name: .long, help: "Seed of the shuffle of training rows before chunking.")
    var shuffleSeed: UInt64 = 1

    @Flag(name: .long, help: "Skip bad rows, count them and print a summary, instead of stopping at the first.")
    var skipBadRows = false

    func options() -> PreparationOptions {
        var o = PreparationOptions(logPath: log, outDirectory: out)
        o.itemsPath = items; o.truthPath = truth; o.chunkSize = chunkSize
        o.testFraction = testFraction; o.validFraction = validFraction; o.lLong = lLong
        o.scenes = scenes.map { $0.split(separator: ",", omittingEmptySubsequences: false).map { String($0) } }
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
        let o = options()
        try reportingErrors {
            let result = try Preparation.run(o)
            print(result.summary)
        }
    }
}
