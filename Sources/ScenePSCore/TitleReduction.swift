import Foundation

/// The catalogue's title vectors reduced to their top K principal components
/// (`model.text_dim`), stored next to the 384-d vectors they come from:
///
///     DIR/embeddings.npy, DIR/item_ids.txt    psctl embed-titles (N × 384)
///     DIR/pca-K/embeddings.npy                N × K: row i = P · x_i
///     DIR/pca-K/item_ids.txt                  a copy of DIR/item_ids.txt
///     DIR/pca-K/components.npy                P (K × 384), orthonormal rows
///     DIR/pca-K/meta.json                     K, the hashes of the two source files and of the three above
///
/// P holds the top K eigenvectors of Xᵀ X (uncentred: a vector of zeros, an
/// item without a title, stays zeros), so `W_text · P · x` is a rank-K map of
/// the 384-d vector learned as a d × K `W_text`: the projection's cost per
/// title row (copy, forward, dW) and W_text's share of the dense vector
/// shrink 384/K-fold (BENCHMARKS.md, "Title features"). Written once per
/// catalogue by `psctl reduce-titles` (ScenePSText `TitleReducer`;
/// `cluster/local.sh --text-features` runs it); the worker checks it with
/// `verify` before declaring `item_text`, the servers load `pca-K/` as the
/// table's rows like any init directory.
public enum TitleReduction {
    public static let formatVersion = 1
    public static let embeddingsFile = "embeddings.npy"
    public static let idsFile = "item_ids.txt"
    public static let componentsFile = "components.npy"
    public static let metaFile = "meta.json"

    /// The directory the model's `item_text` rows are read from: `source`
    /// itself for K = 384 (no reduction), else `source/pca-K`.
    public static func directory(of source: String, k: Int) -> String {
        k >= FeatureTable.titleVectorDim ? source : (source as NSString).appendingPathComponent("pca-\(k)")
    }

    public struct Source: Codable, Equatable, Sendable {
        /// Where the 384-d vectors were when they were reduced (informational).
        public var directory: String
        public var count: Int
        public var dim: Int
        /// `hash(file:)` of the source's embeddings.npy and item_ids.txt.
        public var embeddingsHash: String
        public var idsHash: String
        public init(directory: String, count: Int, dim: Int, embeddingsHash: String, idsHash: String) {
            self.directory = directory; self.count = count; self.dim = dim
            self.embeddingsHash = embeddingsHash; self.idsHash = idsHash
        }
    }

    public struct Meta: Codable, Equatable, Sendable {
        public var format: Int
        public var k: Int
        public var source: Source
        /// Share of Σ‖x_i‖² the K components keep (Σ of their eigenvalues / trace).
        public var energyKept: Double
        public var embeddingsHash: String
        public var idsHash: String
        public var componentsHash: String
        public init(format: Int = TitleReduction.formatVersion, k: Int, source: Source, energyKept: Double,
                    embeddingsHash: String, idsHash: String, componentsHash: String) {
            self.format = format; self.k = k; self.source = source; self.energyKept = energyKept
            self.embeddingsHash = embeddingsHash; self.idsHash = idsHash; self.componentsHash = componentsHash
        }
    }

    /// The hash recorded for a file (XXH64 of its bytes).
    public static func hash(file path: String) throws -> String {
        let f = try MappedFile(path: path)
        return XXH64.format(f.withBytes { XXH64.hash($0) })
    }

    public static func hash(_ data: Data) -> String { XXH64.format(data.withUnsafeBytes { XXH64.hash($0) }) }

    /// What to run when the reduced vectors are missing or stale.
    public static func command(source: String, k: Int) -> String {
        "run psctl reduce-titles --embeddings \(source) --dim \(k) (cluster/local.sh --text-features runs it)"
    }

    /// Checks that `source/pca-K` holds the top-K reduction of the vectors
    /// `source` holds now (its meta.json's K and source hashes against the
    /// files) and that its files are the ones meta.json describes. Throws
    /// `ScenePSError(.data, …)` naming the file and what is wrong; a reduction
    /// of another catalogue's or model's vectors, or of another K, is refused.
    @discardableResult
    public static func verify(source: String, k: Int) throws -> Meta {
        let dir = directory(of: source, k: k)
        let again = command(source: source, k: k)
        let metaPath = (dir as NSString).appendingPathComponent(metaFile)
        guard FileManager.default.fileExists(atPath: metaPath) else {
            throw ScenePSError.data("\(metaPath): missing: no title vectors reduced to \(k) components next to \(source)/embeddings.npy (model.text_dim: \(k)); \(again)")
        }
        let meta: Meta
        do { meta = try JSONFile.read(Meta.self, from: metaPath) } catch {
            throw ScenePSError.data("\(metaPath): not a reduction written by psctl reduce-titles (\(error)); \(again)")
        }
        guard meta.format == formatVersion else {
            throw ScenePSError.data("\(metaPath): format \(meta.format), this build reads \(formatVersion); \(again)")
        }
        guard meta.k == k else {
            throw ScenePSError.data("\(metaPath): holds \(meta.k) components, model.text_dim is \(k); \(again)")
        }
        let srcNpy = (source as NSString).appendingPathComponent(embeddingsFile)
        let srcIds = (source as NSString).appendingPathComponent(idsFile)
        let (srcNpyHash, srcIdsHash) = (try hash(file: srcNpy), try hash(file: srcIds))
        guard srcNpyHash == meta.source.embeddingsHash && srcIdsHash == meta.source.idsHash else {
            throw ScenePSError.data("\(metaPath): reduced from other title vectors (\(meta.source.directory): embeddings \(meta.source.embeddingsHash), ids \(meta.source.idsHash)) than \(source) holds now (\(srcNpyHash), \(srcIdsHash)): another catalogue or model; \(again)")
        }
        let npyPath = (dir as NSString).appendingPathComponent(embeddingsFile)
        let idsPath = (dir as NSString).appendingPathComponent(idsFile)
        let compPath = (dir as NSString).appendingPathComponent(componentsFile)
        for p in [npyPath, idsPath, compPath] where !FileManager.default.fileExists(atPath: p) {
            throw ScenePSError.data("\(p): missing; \(again)")
        }
        let shape = try NPY.shape(path: npyPath)
        guard shape.rows == meta.source.count && shape.cols == k else {
            throw ScenePSError.data("\(npyPath): shape (\(shape.rows), \(shape.cols)), expected (\(meta.source.count), \(k)); \(again)")
        }
        let checks: [(String, String, String)] = [
            (npyPath, try hash(file: npyPath), meta.embeddingsHash),
            (idsPath, try hash(file: idsPath), meta.idsHash),
            (compPath, try hash(file: compPath), meta.componentsHash),
        ]
        for (path, now, recorded) in checks where now != recorded {
            throw ScenePSError.data("\(path): contents differ from what \(metaPath) recorded (\(now), expected \(recorded)); \(again)")
        }
        guard meta.idsHash == meta.source.idsHash else {
            throw ScenePSError.data("\(idsPath): not the ids of \(srcIds); \(again)")
        }
        return meta
    }
}
