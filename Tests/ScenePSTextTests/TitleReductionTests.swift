import Foundation
import ScenePSCore
import XCTest
@testable import ScenePSText

/// `psctl reduce-titles` (TitleReducer) and its check (TitleReduction.verify):
/// the top-K principal components of the title vectors, in `DIR/pca-K/`,
/// refused when they belong to other vectors (another catalogue or model) or
/// another K.
final class TitleReductionTests: XCTestCase {
    static let n = FeatureTable.titleVectorDim

    /// `rows` unit vectors in a `rank`-dimensional subspace of R^384 (a
    /// random orthonormal basis), row 0 all zeros (an item without a title).
    static func vectors(rows: Int, rank: Int, seed: UInt64) -> [Float] {
        var rng = SplitMix64(seed: seed)
        func u() -> Double { Double(rng.next() >> 11) / Double(1 << 53) * 2 - 1 }
        var basis: [[Double]] = []
        while basis.count < rank {   // Gram-Schmidt on random vectors
            var v = (0..<n).map { _ in u() }
            for b in basis { let dot = zip(v, b).map(*).reduce(0, +); for i in 0..<n { v[i] -= dot * b[i] } }
            let norm = v.map { $0 * $0 }.reduce(0, +).squareRoot()
            basis.append(v.map { $0 / norm })
        }
        var x = [Float](repeating: 0, count: rows * n)
        for r in 1..<rows {
            var v = [Double](repeating: 0, count: n)
            // Decreasing weights: distinct eigenvalues.
            for (j, b) in basis.enumerated() { let c = u() / Double(j + 1); for i in 0..<n { v[i] += c * b[i] } }
            let norm = v.map { $0 * $0 }.reduce(0, +).squareRoot()
            for i in 0..<n { x[r * n + i] = Float(v[i] / norm) }
        }
        return x
    }

    func writeSource(_ dir: String, _ x: [Float], rows: Int) throws {
        try NPY.write(path: dir + "/embeddings.npy", rows: rows, cols: Self.n, x)
        try ((0..<rows).map { "item\($0)" }.joined(separator: "\n") + "\n").write(toFile: dir + "/item_ids.txt", atomically: true, encoding: .utf8)
    }

    func testReductionKeepsTheSubspaceAndIsReusedWhileCurrent() throws {
        let dir = try makeTempDirectory(self)
        let rows = 200, rank = 10, k = 16
        let x = Self.vectors(rows: rows, rank: rank, seed: 3)
        try writeSource(dir, x, rows: rows)
        let (meta, computed) = try TitleReducer.reduce(source: dir, k: k)
        XCTAssertTrue(computed)
        XCTAssertEqual(meta.k, k)
        XCTAssertEqual(meta.source.count, rows)
        // Rank-10 vectors rounded to Float: the rounding's energy outside the subspace is ~(6e-8)² per element,
        // and the decomposition runs in Double: 1e-6 is far above both and far below a lost component.
        XCTAssertEqual(meta.energyKept, 1, accuracy: 1e-6, "rank-\(rank) vectors: \(k) components keep everything")
        let red = dir + "/pca-\(k)"
        XCTAssertEqual(TitleReduction.directory(of: dir, k: k), red)
        XCTAssertEqual(TitleReduction.directory(of: dir, k: 384), dir, "384: the vectors as embedded")
        let y = try NPY.read(path: red + "/embeddings.npy"), p = try NPY.read(path: red + "/components.npy")
        XCTAssertEqual(y.rows, rows); XCTAssertEqual(y.cols, k)
        XCTAssertEqual(p.rows, k); XCTAssertEqual(p.cols, Self.n)
        // Orthonormal components, each with its largest entry positive.
        for a in 0..<k {
            let pa = p.values[(a * Self.n)..<((a + 1) * Self.n)]
            XCTAssertGreaterThan(pa.max()!, -pa.min()!)
            for b in 0..<k {
                let dot = zip(pa, p.values[(b * Self.n)..<((b + 1) * Self.n)]).map { Double($0) * Double($1) }.reduce(0, +)
                // Unit components computed in Double, stored as Float: each product is off by ≤ 2u relative, so
                // |pa·pb − δab| ≤ 2u·||pa||·||pb|| ≈ 2.4e-7 (Cauchy-Schwarz); 1e-5 leaves 40× for the decomposition.
                XCTAssertEqual(dot, a == b ? 1 : 0, accuracy: 1e-5)
            }
        }
        // Row i = P · x_i, and Pᵀ P x_i = x_i (the subspace is kept): dot products, hence W_text · P · x, are those of x.
        for r in [0, 1, 57, rows - 1] {
            let xr = x[(r * Self.n)..<((r + 1) * Self.n)]
            var yBound = [Double](repeating: 0, count: k), magnitude = yBound
            for a in 0..<k {
                let terms = zip(xr, p.values[(a * Self.n)..<((a + 1) * Self.n)]).map { Double($0) * Double($1) }
                let dot = terms.reduce(0, +)
                // y = X·Pᵀ is OpenBLAS's sgemm: the round-off bound of its n Float products, whatever the kernel.
                magnitude[a] = terms.map { abs($0) }.reduce(0, +)
                yBound[a] = floatRoundOff(terms: Self.n, magnitude: magnitude[a])
                assertWithin(Double(y.values[r * k + a]), dot, yBound[a], "y[\(r), \(a)]")
            }
            var back = [Double](repeating: 0, count: Self.n)
            for a in 0..<k { for i in 0..<Self.n { back[i] += Double(y.values[r * k + a]) * Double(p.values[a * Self.n + i]) } }
            for i in 0..<Self.n {
                // Pᵀ P x = x up to, first order in u: each y's bound and the Float rounding of the components
                // (≤ u relative, in P and in Pᵀ: 2u of each y's magnitude) carried through |p_ai|, plus x's own
                // rounding to Float, which leaves the rank-10 subspace (u·|x_i|, counted twice); doubled.
                let u = Double(Float.ulpOfOne) / 2
                let bound = 2 * ((0..<k).map { (yBound[$0] + 2 * u * magnitude[$0]) * abs(Double(p.values[$0 * Self.n + i])) }.reduce(0, +)
                                 + 2 * u * abs(Double(xr[xr.startIndex + i])) + 1e-12)
                assertWithin(back[i], Double(xr[xr.startIndex + i]), bound, "Pᵀ P x[\(r), \(i)]")
            }
        }
        XCTAssertEqual(Array(y.values[0..<k]), [Float](repeating: 0, count: k), "a zero vector (no title) stays zero")
        XCTAssertEqual(try String(contentsOfFile: red + "/item_ids.txt", encoding: .utf8),
                       try String(contentsOfFile: dir + "/item_ids.txt", encoding: .utf8))
        XCTAssertEqual(try TitleReduction.verify(source: dir, k: k), meta)
        XCTAssertFalse(try TitleReducer.reduce(source: dir, k: k).computed, "current: nothing computed")
        // Fewer components than the rank: the largest ones, energy < 1.
        let (m4, _) = try TitleReducer.reduce(source: dir, k: 4)
        XCTAssertLessThan(m4.energyKept, 1)
        XCTAssertGreaterThan(m4.energyKept, 0.5)
    }

    func testStaleOrForeignReductionsAreErrorsNamingTheFile() throws {
        let dir = try makeTempDirectory(self)
        let rows = 50
        try writeSource(dir, Self.vectors(rows: rows, rank: 6, seed: 4), rows: rows)
        let red = dir + "/pca-8"
        assertThrows([red + "/meta.json", "missing", "psctl reduce-titles --embeddings \(dir) --dim 8"]) {
            try TitleReduction.verify(source: dir, k: 8)
        }
        try TitleReducer.reduce(source: dir, k: 8)
        XCTAssertNoThrow(try TitleReduction.verify(source: dir, k: 8))
        // Another K: pca-8's files put where pca-12 is expected.
        try FileManager.default.copyItem(atPath: red, toPath: dir + "/pca-12")
        assertThrows([dir + "/pca-12/meta.json", "holds 8 components", "text_dim is 12", "psctl reduce-titles"]) {
            try TitleReduction.verify(source: dir, k: 12)
        }
        // The reduced vectors edited after the fact.
        var y = try NPY.read(path: red + "/embeddings.npy")
        y.values[3] += 1
        try NPY.write(path: red + "/embeddings.npy", rows: y.rows, cols: y.cols, y.values)
        assertThrows([red + "/embeddings.npy", "contents differ", red + "/meta.json"]) { try TitleReduction.verify(source: dir, k: 8) }
        XCTAssertTrue(try TitleReducer.reduce(source: dir, k: 8).computed, "not current: computed again")
        // The source embedded again for another catalogue (or by another model): the reduction is stale.
        try writeSource(dir, Self.vectors(rows: rows, rank: 6, seed: 5), rows: rows)
        assertThrows([red + "/meta.json", "reduced from other title vectors", "another catalogue or model"]) {
            try TitleReduction.verify(source: dir, k: 8)
        }
        XCTAssertTrue(try TitleReducer.reduce(source: dir, k: 8).computed)
        XCTAssertNoThrow(try TitleReduction.verify(source: dir, k: 8))
        // Bad sources and widths.
        try NPY.write(path: dir + "/embeddings.npy", rows: 2, cols: 5, [Float](repeating: 0.1, count: 10))
        assertThrows([dir + "/embeddings.npy", "5 wide"]) { try TitleReducer.reduce(source: dir, k: 3) }
        assertThrows(["--dim 384", "1…383"]) { try TitleReducer.reduce(source: dir, k: 384) }
        assertThrows([dir + "/nowhere/embeddings.npy", "missing"]) { try TitleReducer.reduce(source: dir + "/nowhere", k: 3) }
    }
}
