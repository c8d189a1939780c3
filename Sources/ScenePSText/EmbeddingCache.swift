import Foundation
import ScenePSCore

/// The directory `psctl embed-titles` writes, and the check a consumer runs
/// before trusting it:
///
/// - `embeddings.npy`: float32 (count × dim), one row per catalogue item in
///   catalogue order;
/// - `item_ids.txt`: the item ids, one a line, same order;
/// - `meta.json`: which model and which catalogue (by content hash) made
///   them, and the hashes of the two files above.
///
/// Each file is written under a temporary name and renamed into place,
/// meta.json last, so a cache interrupted half way fails `verify`.
public enum EmbeddingCache {
    public static let embeddingsFile = "embeddings.npy"
    public static let idsFile = "item_ids.txt"
    public static let metaFile = "meta.json"
    public static let formatVersion = 1

    public struct ModelInfo: Codable, Equatable, Sendable {
        public var name: String
        public var directory: String
        public var weightsBytes: Int
        public var weightsHash: String
        public var tokenizerHash: String
        public var configHash: String
        public var maxLength: Int
        public var dimension: Int

        public init(name: String, directory: String, weightsBytes: Int, weightsHash: String, tokenizerHash: String,
                    configHash: String, maxLength: Int, dimension: Int) {
            self.name = name; self.directory = directory; self.weightsBytes = weightsBytes; self.weightsHash = weightsHash
            self.tokenizerHash = tokenizerHash; self.configHash = configHash; self.maxLength = maxLength; self.dimension = dimension
        }
    }

    public struct CatalogueInfo: Codable, Equatable, Sendable {
        public var path: String
        public var bytes: Int
        public var hash: String

        public static func of(path: String) throws -> CatalogueInfo {
            let f = try MappedFile(path: path)
            return CatalogueInfo(path: path, bytes: f.size, hash: ContentHash.hex(f.withBytes { ContentHash.of(bytes: $0) }))
        }
    }

    public struct Meta: Codable, Equatable, Sendable {
        public var format: Int
        public var model: ModelInfo
        public var catalogue: CatalogueInfo
        public var count: Int
        public var dim: Int
        public var dtype: String
        public var embeddingsHash: String
        public var idsHash: String
    }

    /// Writes the three files into `directory` (created if missing).
    @discardableResult
    public static func write(directory: String, itemIDs: [String], embeddings: [Float], dim: Int,
                             catalogue: CatalogueInfo, model: ModelInfo) throws -> Meta {
        precondition(embeddings.count == itemIDs.count * dim)
        // Never a silent zero or NaN row: every row must be a unit vector.
        for (r, id) in itemIDs.enumerated() {
            var norm: Double = 0
            for v in embeddings[(r * dim)..<((r + 1) * dim)] { norm += Double(v) * Double(v) }
            guard norm.isFinite && abs(norm - 1) < 1e-3 else {
                throw ScenePSError.init(.internalError, "\(directory): the embedding of item \"\(id)\" (row \(r)) has squared norm \(norm), not 1; nothing was written")
            }
        }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw ScenePSError.io("\(directory): cannot create output directory (\(error.localizedDescription))")
        }
        let npy = NPY.encode(rows: itemIDs.count, cols: dim, embeddings)
        let ids = Data((itemIDs.joined(separator: "\n") + (itemIDs.isEmpty ? "" : "\n")).utf8)
        let meta = Meta(format: formatVersion, model: model, catalogue: catalogue, count: itemIDs.count, dim: dim,
                        dtype: "<f4", embeddingsHash: hash(npy), idsHash: hash(ids))
        try JSONFile.writeAtomically(npy, to: directory + "/" + embeddingsFile)
        try JSONFile.writeAtomically(ids, to: directory + "/" + idsFile)
        try JSONFile.write(meta, to: directory + "/" + metaFile)
        return meta
    }

    /// Checks that `directory` holds embeddings of the catalogue at
    /// `cataloguePath` (same bytes, wherever it lies) made by `model` (same
    /// weights, tokenizer, config and length limit, wherever it lies), and
    /// that the files are the ones meta.json describes. Throws naming what differs.
    @discardableResult
    public static func verify(directory: String, cataloguePath: String, model: ModelInfo) throws -> Meta {
        let metaPath = directory + "/" + metaFile
        guard FileManager.default.fileExists(atPath: metaPath) else {
            throw ScenePSError.data("\(directory): no \(metaFile), not an embedding cache written by psctl embed-titles")
        }
        let meta = try JSONFile.read(Meta.self, from: metaPath)
        guard meta.format == formatVersion else {
            throw ScenePSError.data("\(metaPath): format \(meta.format), this build reads \(formatVersion)")
        }
        let m = meta.model
        let diffs: [(String, String, String)] = [
            ("model name", m.name, model.name),
            ("weights size", String(m.weightsBytes), String(model.weightsBytes)),
            ("weights hash", m.weightsHash, model.weightsHash),
            ("tokenizer.json hash", m.tokenizerHash, model.tokenizerHash),
            ("config.json hash", m.configHash, model.configHash),
            ("max sequence length", String(m.maxLength), String(model.maxLength)),
            ("dimension", String(m.dimension), String(model.dimension)),
        ].filter { $0.1 != $0.2 }
        if let (what, cached, current) = diffs.first {
            throw ScenePSError.data("\(metaPath): embeddings were computed with another model (\(what) \(cached), the model in \(model.directory) has \(current)); run psctl embed-titles again")
        }
        let cat = try CatalogueInfo.of(path: cataloguePath)
        guard cat.bytes == meta.catalogue.bytes && cat.hash == meta.catalogue.hash else {
            throw ScenePSError.data("\(metaPath): embeddings were computed for another catalogue (\(meta.catalogue.path), \(meta.catalogue.bytes) bytes, hash \(meta.catalogue.hash)), not \(cataloguePath) (\(cat.bytes) bytes, hash \(cat.hash)); run psctl embed-titles again")
        }
        let npyPath = directory + "/" + embeddingsFile
        let shape = try NPY.shape(path: npyPath)
        guard shape.rows == meta.count && shape.cols == meta.dim else {
            throw ScenePSError.data("\(npyPath): shape (\(shape.rows), \(shape.cols)), \(metaFile) says (\(meta.count), \(meta.dim))")
        }
        let npyHash = ContentHash.hex(try ContentHash.of(file: npyPath))
        guard npyHash == meta.embeddingsHash else {
            throw ScenePSError.data("\(npyPath): contents differ from what \(metaFile) recorded (hash \(npyHash), expected \(meta.embeddingsHash))")
        }
        let idsPath = directory + "/" + idsFile
        guard FileManager.default.fileExists(atPath: idsPath) else { throw ScenePSError.data("\(idsPath): missing") }
        let idsHash = ContentHash.hex(try ContentHash.of(file: idsPath))
        guard idsHash == meta.idsHash else {
            throw ScenePSError.data("\(idsPath): contents differ from what \(metaFile) recorded (hash \(idsHash), expected \(meta.idsHash))")
        }
        return meta
    }

    static func hash(_ data: Data) -> String {
        ContentHash.hex(data.withUnsafeBytes { ContentHash.of(bytes: $0) })
    }
}
