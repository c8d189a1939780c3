import Foundation
import ScenePSCore
import XCTest

@testable import ScenePSModel

/// Seeded random numbers for tests (SplitMix64 underneath).
struct TestRandom {
    var rng: SplitMix64
    init(seed: UInt64) { rng = SplitMix64(seed: seed) }
    /// Uniform in [lo, hi).
    mutating func uniform(_ lo: Double = -1, _ hi: Double = 1) -> Double { lo + (hi - lo) * rng.nextUnit() }
    mutating func vector(_ n: Int, _ lo: Double = -1, _ hi: Double = 1) -> [Double] { (0..<n).map { _ in uniform(lo, hi) } }
    mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &rng) }
}

/// ||a − b|| / max(||b||, tiny), after checking the lengths.
func relativeError<A: BinaryFloatingPoint, B: BinaryFloatingPoint>(_ a: [A], _ b: [B]) -> Double? {
    guard a.count == b.count else { return nil }
    var diff = 0.0, ref = 0.0
    for i in 0..<a.count {
        let x = Double(a[i]), y = Double(b[i])
        diff += (x - y) * (x - y)
        ref += y * y
    }
    return diff.squareRoot() / max(ref.squareRoot(), 1e-300)
}

/// ||a − b|| ≤ tol · ||b|| + atol, after checking the lengths (docs/TESTING.md, "Tolerance classes").
///
/// `tol` is the relative part; `atol` an absolute floor for a `b` whose norm can be far below the
/// magnitudes it was computed from (a sum that cancels: its round-off scales with the terms, not with
/// the result). Pass `atol` as a small multiple of that magnitude, never of ||b|| itself (a floor of the
/// form tol + |b| passes an all-zero output), and keep it far below ||b|| so a zero output still fails.
func assertClose<A: BinaryFloatingPoint, B: BinaryFloatingPoint>(_ a: [A], _ b: [B], tol: Double, atol: Double = 0,
                                                                 _ what: String,
                                                                 file: StaticString = #filePath, line: UInt = #line) {
    guard a.count == b.count else {
        XCTFail("\(what): length \(a.count) != expected \(b.count)", file: file, line: line)
        return
    }
    var diff = 0.0, ref = 0.0
    for i in 0..<a.count {
        let x = Double(a[i]), y = Double(b[i])
        diff += (x - y) * (x - y)
        ref += y * y
    }
    let bound = tol * ref.squareRoot() + atol
    XCTAssertFalse(diff.isNaN, "\(what): NaN", file: file, line: line)
    XCTAssertLessThanOrEqual(diff.squareRoot(), bound,
                             "\(what): error \(diff.squareRoot()) above \(tol) × \(ref.squareRoot()) + \(atol) "
                             + "(relative \(diff.squareRoot() / max(ref.squareRoot(), 1e-300)))", file: file, line: line)
    ToleranceReport.record(what, used: diff.squareRoot() / bound, file: file, line: line)
}

/// The worst fraction of its tolerance each comparison used, printed at the end of the test process
/// when SCENEPS_TOLERANCE_REPORT is set: how near the edge a tolerance sits under a given BLAS kernel
/// (run with OPENBLAS_CORETYPE=...; docs/TESTING.md).
enum ToleranceReport {
    nonisolated(unsafe) private static var worst: [String: (used: Double, what: String)] = [:]   // XCTest runs one test at a time
    private static let enabled = ProcessInfo.processInfo.environment["SCENEPS_TOLERANCE_REPORT"] != nil
    nonisolated(unsafe) private static var registered = false

    static func record(_ what: String, used: Double, file: StaticString, line: UInt) {
        guard enabled else { return }
        if !registered {
            registered = true
            atexit {
                for (site, w) in ToleranceReport.worst.sorted(by: { $0.value.used > $1.value.used }) {
                    print(String(format: "tolerance used %.4f at %@ (%@)", w.used, site, w.what))
                }
            }
        }
        let site = "\(URL(fileURLWithPath: "\(file)").lastPathComponent):\(line)"
        if used > (worst[site]?.used ?? -1) { worst[site] = (used, what) }
    }
}

/// Round-off bound for a dot product or sum of `n` terms, computed in any order and with or without
/// fused multiply-adds (any BLAS kernel, any instruction set): |computed − exact| ≤ γ_n · Σ|terms|,
/// γ_n = n·u / (1 − n·u), u the unit round-off of T (Higham, "Accuracy and Stability of Numerical
/// Algorithms", §3.1). Two such computations differ by at most twice that.
func roundOffBound<T: BinaryFloatingPoint>(_: T.Type, terms n: Int, magnitude: Double) -> Double {
    let nu = Double(n) * Double(T.ulpOfOne) / 2
    precondition(nu < 0.1, "too many terms for the bound")
    return 2 * nu / (1 - nu) * magnitude
}

/// Element by element |a[i] − b[i]| ≤ bound[i], after checking the lengths: for comparisons whose
/// error is bounded per element (`roundOffBound` of each element's own terms).
func assertWithin<A: BinaryFloatingPoint, B: BinaryFloatingPoint>(_ a: [A], _ b: [B], bounds: [Double], _ what: String,
                                                                  file: StaticString = #filePath, line: UInt = #line) {
    guard a.count == b.count, b.count == bounds.count else {
        XCTFail("\(what): lengths \(a.count), \(b.count), \(bounds.count) differ", file: file, line: line)
        return
    }
    var worst = 0.0
    for i in 0..<a.count {
        let err = abs(Double(a[i]) - Double(b[i]))
        guard err <= bounds[i] else {
            XCTFail("\(what)[\(i)]: \(a[i]) vs \(b[i]), error \(err) above the round-off bound \(bounds[i])", file: file, line: line)
            return
        }
        if bounds[i] > 0 { worst = max(worst, err / bounds[i]) }
    }
    ToleranceReport.record(what, used: worst, file: file, line: line)
}

/// A named slice of the flat vector a gradient check perturbs.
struct Block {
    let name: String
    let range: Range<Int>
}

/// Central finite differences along random directions, one set per block (so
/// that every part of the gradient is exercised): for unit u inside a block,
/// (f(x + εu) − f(x − εu)) / 2ε must match ∇f·u to a relative `tol`, plus the
/// difference quotient's round-off floor (`roundOffFloor`): a directional
/// derivative near 1e-5 is checked to ~1e-3 relative, one near 1 to `tol`.
/// A block whose gradient is zero analytically (`zeroBlocks`) must have a
/// negligible analytic gradient and a numerically zero directional derivative.
func gradientCheck(_ what: String, at x0: [Double], blocks: [Block], eps: Double = 1e-6, tol: Double = 1e-5,
                   directions: Int = 2, seed: UInt64 = 7, zeroBlocks: Set<String> = [],
                   loss: ([Double]) -> Double, gradient: ([Double]) -> [Double],
                   file: StaticString = #filePath, line: UInt = #line) {
    let g = gradient(x0)
    guard g.count == x0.count else {
        XCTFail("\(what): gradient length \(g.count) != \(x0.count)", file: file, line: line)
        return
    }
    var rnd = TestRandom(seed: seed)
    for block in blocks {
        let blockGrad = block.range.map { g[$0] }
        if zeroBlocks.contains(block.name) {
            // Zero analytically; round-off is allowed, relative to the whole gradient.
            let norm = blockGrad.reduce(0) { $0 + $1 * $1 }.squareRoot()
            let whole = g.reduce(0) { $0 + $1 * $1 }.squareRoot()
            XCTAssertLessThanOrEqual(norm, 1e-12 * whole, "\(what).\(block.name): expected a zero gradient",
                                     file: file, line: line)
        } else {
            XCTAssertTrue(blockGrad.contains { $0 != 0 }, "\(what).\(block.name): gradient is all zero, check is vacuous",
                          file: file, line: line)
        }
        for _ in 0..<directions {
            var u = [Double](repeating: 0, count: x0.count)
            var norm = 0.0
            for i in block.range {
                u[i] = rnd.uniform()
                norm += u[i] * u[i]
            }
            norm = norm.squareRoot()
            var plus = x0, minus = x0
            var analytic = 0.0
            for i in block.range {
                u[i] /= norm
                plus[i] += eps * u[i]
                minus[i] -= eps * u[i]
                analytic += g[i] * u[i]
            }
            let lossPlus = loss(plus), lossMinus = loss(minus)
            let numeric = (lossPlus - lossMinus) / (2 * eps)
            if zeroBlocks.contains(block.name) {
                // Only round-off may remain where nothing depends on the block.
                XCTAssertLessThanOrEqual(abs(numeric), roundOffFloor(lossPlus, lossMinus, eps: eps),
                                         "\(what).\(block.name): numeric derivative \(numeric) for a zero gradient",
                                         file: file, line: line)
                continue
            }
            let scale = max(abs(numeric), abs(analytic))
            XCTAssertGreaterThan(scale, 0, "\(what).\(block.name): zero directional derivative", file: file, line: line)
            let allowed = tol * scale + roundOffFloor(lossPlus, lossMinus, eps: eps)
            let err = abs(numeric - analytic)
            XCTAssertLessThanOrEqual(err, allowed,
                                     "\(what).\(block.name): analytic \(analytic) numeric \(numeric) (abs \(err), rel \(err / scale), allowed \(allowed))",
                                     file: file, line: line)
        }
    }
}

/// The absolute error a central difference quotient carries from round-off
/// alone. Each loss is a sum whose order the BLAS kernel picks at run time
/// (it differs between Haswell, SkylakeX, Zen, Sandybridge, Nehalem... and so
/// between CPUs): measured, the same loss moves by up to ~4 ulps between
/// kernels, and (L+ − L−)/2ε turns that into ~4·ulp(L)/ε of the quotient
/// (2.2e-10 at L ≈ 0.7, ε = 1e-6: a relative 3e-5 on a derivative of 8e-6).
/// 64 ulps gives that a 16-fold margin and stays far below any real gradient
/// error (an error in a backward pass is of the size of the derivative).
func roundOffFloor(_ lossPlus: Double, _ lossMinus: Double, eps: Double) -> Double {
    64 * max(abs(lossPlus), abs(lossMinus), 1e-300).ulp / eps
}

/// Lays out named pieces back to back in one flat vector.
struct FlatBuilder {
    var values: [Double] = []
    var blocks: [Block] = []
    @discardableResult
    mutating func add(_ name: String, _ v: [Double]) -> Range<Int> {
        let r = values.count..<(values.count + v.count)
        values += v
        blocks.append(Block(name: name, range: r))
        return r
    }
}

/// Calls body with a mutable pointer to a copy of `a` (for the layers' pointer API).
func withMutable<T, R>(_ a: [T], _ body: (UnsafeMutablePointer<T>) -> R) -> R {
    precondition(!a.isEmpty)
    var c = a
    return c.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
}

/// The reference fixtures checked in beside these tests (Fixtures/README.md
/// says where they come from), found from this file's path so that a fresh
/// clone runs them: Tests/ScenePSModelTests/X.swift → Tests/ScenePSModelTests/Fixtures.
enum Fixtures {
    static var directory: URL {
        URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent()   // ScenePSModelTests
            .appendingPathComponent("Fixtures")
    }

    static func load(_ name: String) throws -> [String: Any] {
        let url = directory.appendingPathComponent("\(name).json")
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw ScenePSError.io("fixture \(url.path) not found (Tests/ScenePSModelTests/Fixtures is part of the repository)")
        }
        let data = try Data(contentsOf: url)
        guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ScenePSError.data("\(url.path): top level is not an object")
        }
        return object
    }
}
