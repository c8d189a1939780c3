import ArgumentParser
import Foundation
import ScenePSCore
import ScenePSText

/// `psctl reduce-titles`: the catalogue's title vectors reduced once to their
/// top K principal components, into DIR/pca-K/ (`TitleReduction`), for
/// `model.text_dim: K` (BENCHMARKS.md, "Title features").
struct ReduceTitles: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reduce-titles",
        abstract: "Reduce title embeddings to their top K principal components (model.text_dim).",
        discussion: """
            Reads DIR/embeddings.npy and DIR/item_ids.txt (psctl embed-titles output, 384-d) and writes \
            DIR/pca-K/: embeddings.npy (N × K, row i = P·x_i), item_ids.txt, components.npy (P, K × 384) and \
            meta.json (K and the hashes of the source files). Nothing is computed when DIR/pca-K is current. \
            --config takes DIR and K from a config's model.text_embeddings and model.text_dim (K = 384: nothing to do). \
            --verify only checks.
            """)

    @Option(name: .long, help: "Directory of psctl embed-titles output.")
    var embeddings: String?

    @Option(name: .long, help: "Components to keep (1…383).")
    var dim: Int?

    @Option(name: .long, help: "A config: DIR and K from model.text_embeddings and model.text_dim.")
    var config: String?

    @Flag(name: .long, help: "Only check that DIR/pca-K is the current reduction of DIR.")
    var verify = false

    func validate() throws {
        guard (config == nil) != (embeddings == nil && dim == nil) else {
            throw ValidationError("give either --embeddings DIR --dim K or --config FILE")
        }
        if config == nil && (embeddings == nil || dim == nil) { throw ValidationError("--embeddings and --dim go together") }
    }

    func run() throws {
        try reportingErrors {
            var source = embeddings ?? "", k = dim ?? 0
            if let config {
                let c = try ClusterConfig.load(path: config)
                guard c.model.textFeatures else { print("\(config): model.text_features is off: nothing to reduce"); return }
                source = c.model.textEmbeddings
                k = c.model.textDim
                if k >= FeatureTable.titleVectorDim { print("\(source): model.text_dim \(k): the vectors are read as embedded"); return }
            }
            source = URL(fileURLWithPath: source).standardizedFileURL.path
            if verify {
                let meta = try TitleReduction.verify(source: source, k: k)
                print("\(TitleReduction.directory(of: source, k: k)): \(meta.source.count) title vectors reduced to \(k) components, up to date")
                return
            }
            let t0 = Date()
            let (meta, computed) = try TitleReducer.reduce(source: source, k: k)
            let dir = TitleReduction.directory(of: source, k: k)
            if computed {
                print("\(dir): \(meta.source.count) title vectors reduced to \(k) components (\(String(format: "%.1f", 100 * meta.energyKept))% of the energy kept) in \(String(format: "%.1f", Date().timeIntervalSince(t0))) s")
            } else {
                print("\(dir): up to date (\(k) components, \(String(format: "%.1f", 100 * meta.energyKept))% of the energy)")
            }
        }
    }
}
