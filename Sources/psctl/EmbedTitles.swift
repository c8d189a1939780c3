import ArgumentParser
import Foundation
import ScenePSCore
import ScenePSData
import ScenePSText

/// `psctl embed-titles`: item-title embeddings from all-MiniLM-L6-v2 (docs/ARCHITECTURE.md §3.6).
struct EmbedTitles: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embed-titles",
        abstract: "Embed item titles with the all-MiniLM-L6-v2 sentence-embedding model.",
        discussion: """
            Reads ITEMS.csv (header item_id,category_id,title) and writes DIR/embeddings.npy \
            (float32, one L2-normalised 384-d row per item, in catalogue order), DIR/item_ids.txt \
            (one id a line, same order) and DIR/meta.json (model and catalogue fingerprints). \
            The model is fetched once by \(ModelFiles.fetchCommand) into $SCENEPS_CACHE/\(ModelFiles.modelName) \
            (default ~/.cache/sceneps/\(ModelFiles.modelName)). --verify checks an existing DIR against \
            ITEMS.csv and the model instead of computing.
            """)

    @Option(name: .long, help: "Item catalogue CSV (item_id,category_id,title).")
    var items: String

    @Option(name: .long, help: "Output directory.")
    var out: String

    @Option(name: .long, help: "Model directory (default: $SCENEPS_CACHE/\(ModelFiles.modelName) or ~/.cache/sceneps/\(ModelFiles.modelName)).")
    var model: String?

    @Option(name: .long, help: "Threads.")
    var threads: Int = 1

    @Option(name: .long, help: "How threads are used: batches (each thread runs whole batches) or blas (OpenBLAS threads).")
    var parallelism: String = TitleEmbedder.Parallelism.batches.rawValue

    @Option(name: .long, help: "Padded tokens per batch.")
    var batchTokens: Int = 2048

    @Option(name: .long, help: "Titles per batch at most.")
    var maxBatch: Int = 256

    @Flag(name: .long, help: "Only check that DIR holds embeddings of ITEMS.csv by this model.")
    var verify = false

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        guard batchTokens >= 1 else { throw ValidationError("--batch-tokens must be at least 1") }
        guard maxBatch >= 1 else { throw ValidationError("--max-batch must be at least 1") }
        guard TitleEmbedder.Parallelism(rawValue: parallelism) != nil else {
            throw ValidationError("--parallelism must be one of \(TitleEmbedder.Parallelism.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func run() throws {
        try reportingErrors {
            let dir = model ?? ModelFiles.defaultDirectory(environment: ProcessInfo.processInfo.environment)
            if verify {
                // Only the model's files are fingerprinted; no tokenizer or encoder is built.
                let meta = try EmbeddingCache.verify(directory: out, cataloguePath: items, model: try .of(directory: dir))
                print("\(out): \(meta.count) embeddings of \(items) by \(meta.model.name) (\(meta.dim)-d), up to date")
                return
            }
            let start = Date()
            let m = try SentenceEmbeddingModel(directory: dir)
            let fingerprint = try m.fingerprint()
            let catalogue = try TitleCatalogue(path: items)
            let catInfo = try EmbeddingCache.CatalogueInfo.of(path: items)
            let embedder = TitleEmbedder(model: m, threads: threads, parallelism: TitleEmbedder.Parallelism(rawValue: parallelism)!,
                                         batchTokens: batchTokens, maxBatch: maxBatch)
            let total = catalogue.count
            let loaded = Date()
            printError("embed-titles: \(total) titles from \(items), model \(dir) (\(m.encoder.config.layers) layers, \(m.dimension)-d, max \(m.maxLength) tokens), \(threads) thread(s), \(parallelism)")
            let ids = embedder.tokenize(catalogue.titles)
            let progress = ProgressLine(total: total, start: loaded)
            let vectors = embedder.embed(tokenIDs: ids) { done in progress.update(done) }
            progress.finish()
            try EmbeddingCache.write(directory: out, itemIDs: catalogue.itemIDs, embeddings: vectors, dim: m.dimension,
                                     catalogue: catInfo, model: fingerprint)
            let seconds = Date().timeIntervalSince(loaded)
            let tokens = ids.reduce(0) { $0 + $1.count }
            print("wrote \(total) embeddings (\(m.dimension)-d) to \(out)/\(EmbeddingCache.embeddingsFile) + \(EmbeddingCache.idsFile) + \(EmbeddingCache.metaFile) in \(String(format: "%.2f", seconds)) s: \(String(format: "%.1f", Double(total) / max(seconds, 1e-9))) titles/s, \(String(format: "%.1f", Double(tokens) / Double(total))) tokens/title (model load \(String(format: "%.2f", loaded.timeIntervalSince(start))) s)")
        }
    }
}

/// "embed-titles: 5120/20000 titles, 312.4 titles/s" on stderr, at most once a second.
final class ProgressLine: @unchecked Sendable {
    private let total: Int
    private let start: Date
    private var last: Date
    private var done = 0

    init(total: Int, start: Date) {
        self.total = total
        self.start = start
        last = start
    }

    /// Called serialised by the embedder.
    func update(_ done: Int) {
        self.done = done
        let now = Date()
        if now.timeIntervalSince(last) >= 1 {
            last = now
            emit(now)
        }
    }

    func finish() { emit(Date()) }

    private func emit(_ now: Date) {
        let rate = Double(done) / max(now.timeIntervalSince(start), 1e-9)
        printError("embed-titles: \(done)/\(total) titles, \(String(format: "%.1f", rate)) titles/s")
    }
}
