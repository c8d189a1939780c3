import CBLAS
import Foundation
import ScenePSCore

/// Reduces a directory of title vectors (`psctl embed-titles` output, N × 384)
/// to their top K principal components, once, into `DIR/pca-K/`
/// (`TitleReduction` in ScenePSCore has the layout and the check).
///
/// P = the K eigenvectors of the largest eigenvalues of Xᵀ X (384 × 384,
/// accumulated in double, LAPACK dsyev), uncentred so that a zero vector
/// stays zero; each component's sign is fixed (its largest entry positive) so
/// the same vectors always give the same file. Reduced row i = P · x_i.
public enum TitleReducer {
    /// Writes `source/pca-K` (each file under a temporary name and renamed,
    /// meta.json last) unless `TitleReduction.verify` says it is current;
    /// returns its meta and whether it was (re)computed.
    @discardableResult
    public static func reduce(source: String, k: Int) throws -> (meta: TitleReduction.Meta, computed: Bool) {
        let n = FeatureTable.titleVectorDim
        guard k >= 1 && k < n else {
            throw ScenePSError.config("--dim \(k): the reduced width must be 1…\(n - 1) (384 reads the vectors as embedded)")
        }
        if let meta = try? TitleReduction.verify(source: source, k: k) { return (meta, false) }
        let srcNpy = (source as NSString).appendingPathComponent(TitleReduction.embeddingsFile)
        let srcIds = (source as NSString).appendingPathComponent(TitleReduction.idsFile)
        for p in [srcNpy, srcIds] where !FileManager.default.fileExists(atPath: p) {
            throw ScenePSError.data("\(p): missing (the directory of psctl embed-titles output: embeddings.npy, item_ids.txt)")
        }
        let x = try NPY.read(path: srcNpy)
        guard x.cols == n else { throw ScenePSError.data("\(srcNpy): rows are \(x.cols) wide, title vectors are \(n)") }
        guard x.rows > 0 else { throw ScenePSError.data("\(srcNpy): no rows") }
        guard x.values.allSatisfy(\.isFinite) else { throw ScenePSError.data("\(srcNpy): contains NaN or Inf") }
        let idsData: Data
        do { idsData = try Data(contentsOf: URL(fileURLWithPath: srcIds)) } catch {
            throw ScenePSError.data("\(srcIds): cannot read (\(error.localizedDescription))")
        }
        let (components, energy) = try principalComponents(x.values, rows: x.rows, cols: n, k: k, file: srcNpy)
        // Reduced rows: Y (N × K) = X · Pᵀ.
        var y = [Float](repeating: 0, count: x.rows * k)
        x.values.withUnsafeBufferPointer { xp in
            components.withUnsafeBufferPointer { pp in
                y.withUnsafeMutableBufferPointer { yp in
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(x.rows), Int32(k), Int32(n),
                                1, xp.baseAddress, Int32(n), pp.baseAddress, Int32(n), 0, yp.baseAddress, Int32(k))
                }
            }
        }
        let dir = TitleReduction.directory(of: source, k: k)
        do { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) } catch {
            throw ScenePSError.io("\(dir): cannot create (\(error.localizedDescription))")
        }
        let npy = NPY.encode(rows: x.rows, cols: k, y)
        let comp = NPY.encode(rows: k, cols: n, components)
        let meta = TitleReduction.Meta(
            k: k,
            source: .init(directory: source, count: x.rows, dim: n,
                          embeddingsHash: try TitleReduction.hash(file: srcNpy), idsHash: TitleReduction.hash(idsData)),
            energyKept: energy, embeddingsHash: TitleReduction.hash(npy), idsHash: TitleReduction.hash(idsData),
            componentsHash: TitleReduction.hash(comp))
        func path(_ f: String) -> String { (dir as NSString).appendingPathComponent(f) }
        try? FileManager.default.removeItem(atPath: path(TitleReduction.metaFile))   // stale meta first: a crash below leaves no valid-looking directory
        try JSONFile.writeAtomically(npy, to: path(TitleReduction.embeddingsFile))
        try JSONFile.writeAtomically(idsData, to: path(TitleReduction.idsFile))
        try JSONFile.writeAtomically(comp, to: path(TitleReduction.componentsFile))
        try JSONFile.write(meta, to: path(TitleReduction.metaFile))
        return (meta, true)
    }

    /// The top `k` eigenvectors of Xᵀ X as rows of a k × cols matrix (largest
    /// eigenvalue first) and the share of the trace they keep.
    static func principalComponents(_ x: [Float], rows: Int, cols n: Int, k: Int, file: String) throws -> ([Float], Double) {
        precondition(x.count == rows * n && k >= 1 && k <= n)
        let xd = x.map(Double.init)
        var c = [Double](repeating: 0, count: n * n)   // Xᵀ X, upper triangle (row-major) = lower (column-major)
        xd.withUnsafeBufferPointer { xp in
            c.withUnsafeMutableBufferPointer { cp in
                cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, Int32(n), Int32(rows), 1, xp.baseAddress, Int32(n),
                            0, cp.baseAddress, Int32(n))
            }
        }
        var trace = 0.0
        for i in 0..<n { trace += c[i * n + i] }
        // Column-major LAPACK sees the row-major upper triangle as the lower one.
        var w = [Double](repeating: 0, count: n)
        var info: Int32 = 0
        var nn = Int32(n), lda = Int32(n)
        var lwork: Int32 = -1
        var query = 0.0
        let jobz: CChar = 86 /* V */, uplo: CChar = 76 /* L */
        withUnsafePointer(to: jobz) { jz in withUnsafePointer(to: uplo) { ul in
            dsyev_(jz, ul, &nn, &c, &lda, &w, &query, &lwork, &info)
        } }
        lwork = Int32(query)
        var work = [Double](repeating: 0, count: max(1, Int(lwork)))
        withUnsafePointer(to: jobz) { jz in withUnsafePointer(to: uplo) { ul in
            dsyev_(jz, ul, &nn, &c, &lda, &w, &work, &lwork, &info)
        } }
        guard info == 0 else { throw ScenePSError(.internalError, "\(file): eigendecomposition of the title vectors' Gram matrix failed (dsyev info \(info))") }
        // Eigenvalues ascending; eigenvector j is column j (column-major): c[j*n ..< (j+1)*n].
        var p = [Float](repeating: 0, count: k * n)
        var kept = 0.0
        for r in 0..<k {
            let j = n - 1 - r
            kept += w[j]
            let v = c[(j * n)..<((j + 1) * n)]
            let big = v.max(by: { abs($0) < abs($1) })!
            let sign: Double = big < 0 ? -1 : 1
            for (i, e) in v.enumerated() { p[r * n + i] = Float(sign * e) }
        }
        return (p, trace > 0 ? kept / trace : 1)
    }
}
