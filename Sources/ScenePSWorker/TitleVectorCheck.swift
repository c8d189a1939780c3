import Foundation
import ScenePSCore
import ScenePSData

/// Checks, before a worker declares `item_text`, that `model.text_embeddings`
/// holds title vectors of this data set's catalogue: both files present, as
/// many ids as rows, 384 wide, and (when the data set was prepared with a
/// catalogue) exactly the catalogue's items. Embeddings of another catalogue
/// would otherwise train on zero vectors for every item they miss. With
/// `model.text_dim` < 384 also that `pca-K/` holds the reduction of exactly
/// these vectors to K components (`TitleReduction.verify`).
public enum TitleVectorCheck {
    /// The check for a model's settings: `model.text_embeddings` (384 wide)
    /// and, when `model.text_dim` < 384, its reduction.
    public static func check(model: ClusterConfig.Model, dataDir: String, manifest: DatasetManifest) throws {
        let source = URL(fileURLWithPath: model.textEmbeddings).standardizedFileURL.path
        try check(directory: source, width: FeatureTable.titleVectorDim, dataDir: dataDir, manifest: manifest)
        if model.textDim < FeatureTable.titleVectorDim { try TitleReduction.verify(source: source, k: model.textDim) }
    }

    /// Throws `ScenePSError(.data, …)` naming the file, what is wrong and what to run.
    public static func check(directory: String, width: Int, dataDir: String, manifest: DatasetManifest) throws {
        try check(directory: directory, width: width,
                  catalogue: manifest.catalogue.map { ((dataDir as NSString).appendingPathComponent($0.file), $0.items) })
    }

    /// `catalogue`: the prepared catalogue's path and item count, if the data set has one.
    static func check(directory: String, width: Int, catalogue: (path: String, items: Int)?) throws {
        let again = "run psctl embed-titles --items ITEMS.csv --out \(directory) (or cluster/local.sh --text-features, which embeds the catalogue)"
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDir), isDir.boolValue else {
            throw ScenePSError.data("\(directory): model.text_embeddings is not a directory; \(again)")
        }
        let npyPath = directory + "/embeddings.npy", idsPath = directory + "/item_ids.txt"
        for p in [npyPath, idsPath] where !FileManager.default.fileExists(atPath: p) {
            throw ScenePSError.data("\(p): missing; \(again)")
        }
        let shape = try NPY.shape(path: npyPath)
        guard shape.cols == width else {
            throw ScenePSError.data("\(npyPath): rows are \(shape.cols) wide, title features need \(width); \(again)")
        }
        let text: String
        do { text = try String(contentsOfFile: idsPath, encoding: .utf8) } catch {
            throw ScenePSError.data("\(idsPath): cannot read (\(error.localizedDescription))")
        }
        var ids = text.split(separator: "\n", omittingEmptySubsequences: false)
        if ids.last == "" { ids.removeLast() }
        guard ids.count == shape.rows else {
            throw ScenePSError.data("\(idsPath): \(ids.count) ids, \(npyPath) has \(shape.rows) rows; the files do not belong together: \(again)")
        }
        guard let catalogue else { return }   // no catalogue: items without a vector are counted while training
        let catPath = catalogue.path
        guard catalogue.items == shape.rows else {
            throw ScenePSError.data("\(npyPath): \(shape.rows) title vectors, the data set's catalogue \(catPath) has \(catalogue.items) items: embeddings of another catalogue; \(again)")
        }
        // Same count: every catalogue item must be listed. (A title with a
        // line break spans lines; then the key list is not trusted and this
        // check is left to the zero-vector count while training.)
        guard let keys = try? catalogueKeys(catPath), keys.count == catalogue.items else { return }
        let embedded = Set(ids.map { KeyHash.idKey(String($0)) })
        if let (line, _) = keys.enumerated().first(where: { !embedded.contains($0.element) }) {
            throw ScenePSError.data("\(idsPath): does not list item of line \(line + 2) of the data set's catalogue \(catPath): embeddings of another catalogue; \(again)")
        }
    }

    /// The item keys (first column) of a prepared catalogue, in order.
    static func catalogueKeys(_ path: String) throws -> [UInt64] {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw ScenePSError.data("\(path): cannot read the prepared catalogue (\(error.localizedDescription))")
        }
        var keys: [UInt64] = []
        for (n, line) in text.split(separator: "\n").enumerated() where n > 0 {
            guard let comma = line.firstIndex(of: ","), let k = UInt64(line[..<comma]) else {
                throw ScenePSError.data("\(path):\(n + 1): not a prepared catalogue row (item_key,item_id,…)")
            }
            keys.append(k)
        }
        return keys
    }
}
