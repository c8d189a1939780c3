import Foundation
import ScenePSCore

/// The initial rows of a sparse table read from a directory, `TableSpec.initFile`:
/// `embeddings.npy` (float32, N × dim, C order) and `item_ids.txt` (N ids, one
/// a line, same order), as `psctl embed-titles` writes them. Row `i` is the
/// initial value of key `KeyHash.idKey(id_i)`; a key the file does not list
/// starts as the table's `init` says (zeros for `item_text`) and is counted
/// in `missing`; the worker counts and reports the all-zero rows it receives
/// (`FrozenRowCache.zeroKeys`).
///
/// Each server reads the whole file when the table is created (the table's
/// rows are then created lazily from it); the directory must be readable by
/// every server under the same path.
public final class InitialRows: @unchecked Sendable {
    // @unchecked: immutable after init except `missing`, guarded by `lock`.
    public let directory: String
    public let dim: Int
    public let count: Int
    private let values: [Float]
    private let rowOfKey: [UInt64: Int]
    private let lock = Lock()
    private var missingKeys: UInt64 = 0

    public static let embeddingsFile = "embeddings.npy"
    public static let idsFile = "item_ids.txt"

    /// Reads and checks the two files; throws naming the file and what is wrong.
    public init(directory: String, dim: Int) throws {
        self.directory = directory
        self.dim = dim
        let npyPath = directory + "/" + Self.embeddingsFile, idsPath = directory + "/" + Self.idsFile
        guard FileManager.default.fileExists(atPath: npyPath) else {
            throw ScenePSError.data("\(npyPath): missing (the table's init_file directory must hold embeddings.npy and item_ids.txt; run psctl embed-titles)")
        }
        let npy = try NPY.read(path: npyPath)
        guard npy.cols == dim else {
            throw ScenePSError.data("\(npyPath): rows are \(npy.cols) wide, the table's rows \(dim)")
        }
        let text: String
        do { text = try String(contentsOfFile: idsPath, encoding: .utf8) } catch {
            throw ScenePSError.data("\(idsPath): cannot read the ids of \(npyPath) (\(error.localizedDescription))")
        }
        var ids = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if ids.last == "" { ids.removeLast() }
        guard ids.count == npy.rows else {
            throw ScenePSError.data("\(idsPath): \(ids.count) ids, but \(npyPath) has \(npy.rows) rows; the two files are of different catalogues: run psctl embed-titles again")
        }
        var rowOfKey: [UInt64: Int] = [:]
        rowOfKey.reserveCapacity(ids.count)
        for (i, id) in ids.enumerated() {
            if let first = rowOfKey.updateValue(i, forKey: KeyHash.idKey(id)) {
                throw ScenePSError.data("\(idsPath):\(i + 1): id '\(id)' is listed again (first at line \(first + 1))")
            }
        }
        for v in npy.values where !v.isFinite {
            throw ScenePSError.data("\(npyPath): contains NaN or Inf")
        }
        self.values = npy.values
        self.rowOfKey = rowOfKey
        self.count = ids.count
    }

    /// Copies the row of `key` into `out` and returns true, or returns false
    /// (and counts the key) when the file does not list it.
    func fill(_ out: UnsafeMutablePointer<Float>, key: UInt64) -> Bool {
        guard let r = rowOfKey[key] else {
            lock.withLock { missingKeys += 1 }
            return false
        }
        values.withUnsafeBufferPointer { out.update(from: $0.baseAddress! + r * dim, count: dim) }
        return true
    }

    /// Rows created for keys the file does not list.
    public var missing: UInt64 { lock.withLock { missingKeys } }
}
