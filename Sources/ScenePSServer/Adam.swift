#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ScenePSCore
import ScenePSProtocol

/// Adam (Kingma & Ba) with bias correction by the caller's step and L2
/// added to the gradient (`g + l2 * w`).
///
///     m = b1 m + (1 - b1) g
///     v = b2 v + (1 - b2) g²
///     w -= lr · s · (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
///
/// where `s` is the push's learning-rate scale (the worker's schedule).
public struct Adam: Optimizer {
    public let config: AdamConfig
    public var name: String { CheckpointManifest.Optimiser.adamName }
    public var stateWidth: Int { 2 }
    /// The first and second moments, each one float per weight.
    public var stateNames: [String] { ["m", "v"] }
    public var manifestEntry: CheckpointManifest.Optimiser { CheckpointManifest.Optimiser(adam: config) }

    /// A second moment is a running mean of squares: never negative.
    /// The sign bits of eight lanes at a time, the exact comparison only when
    /// one is set (-0 is not negative), a whole batch per call: a restore
    /// checks every row, and a call and a plain loop per row made the check
    /// 5-6% of a restore's instructions (callgrind).
    public func checkRestored(state: UnsafePointer<Float>, count n: Int, rows: Int, stride: Int) -> (row: Int, problem: String, check: String)? {
        guard n > 0 else { return nil }
        for r in 0..<rows {
            let v = state + r * stride + n
            let raw = UnsafeRawPointer(v)
            var bits = SIMD8<UInt32>(repeating: 0)
            var i = 0
            while i + 8 <= n {
                bits |= raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<UInt32>.self)
                i += 8
            }
            var signs = (bits & 0x8000_0000) != SIMD8<UInt32>(repeating: 0)
            while i < n { signs = signs || v[i].sign == .minus; i += 1 }
            guard signs else { continue }
            for j in 0..<n where v[j] < 0 { return (r, "negative second moment", "moments") }
        }
        return nil
    }

    /// `1 - b1^t` and `1 - b2^t` for t = 1...biasTableSize: two `powf` per
    /// row would cost as much as the row's arithmetic (measured).
    private let bias1: [Float], bias2: [Float]
    static let biasTableSize = 4096

    public init(_ config: AdamConfig) {
        self.config = config
        bias1 = (1...Adam.biasTableSize).map { 1 - powf(config.beta1, Float($0)) }
        bias2 = (1...Adam.biasTableSize).map { 1 - powf(config.beta2, Float($0)) }
    }

    /// Square root of non-negative lanes, vectorised. `SIMD8.squareRoot()`
    /// compiles here to eight scalar `sqrtss` with a libm fallback each (errno
    /// semantics), which made it the cost of a push; this is rsqrt by the bit
    /// trick plus three Newton steps (relative error ≤ 2e-7 over 1e-30...1e30,
    /// exact 0 for 0), times x.
    @inline(__always)
    static func squareRoot(_ x: SIMD8<Float>) -> SIMD8<Float> {
        let bits = SIMD8<UInt32>(repeating: 0x5F37_59DF) &- (unsafeBitCast(x, to: SIMD8<UInt32>.self) &>> 1)
        var y = unsafeBitCast(bits, to: SIMD8<Float>.self)
        let hx = 0.5 * x
        y = y * (1.5 - hx * y * y)
        y = y * (1.5 - hx * y * y)
        y = y * (1.5 - hx * y * y)
        return x * y
    }

    public func update(weights w: UnsafeMutablePointer<Float>, state: UnsafeMutablePointer<Float>,
                       gradient g: UnsafePointer<Float>, count n: Int, step: UInt32, lrScale: Float = 1) {
        assert(step >= 1)
        let b1 = config.beta1, b2 = config.beta2, eps = config.epsilon, l2 = config.l2
        let t = Float(step)
        let small = Int(step) <= Adam.biasTableSize
        let c1 = small ? bias1[Int(step) - 1] : 1 - powf(b1, t)
        let c2 = small ? bias2[Int(step) - 1] : 1 - powf(b2, t)
        // Fold the bias corrections: w -= lr/c1 · m / (sqrt(v)/sqrt(c2) + eps).
        let stepSize = config.learningRate * lrScale / c1
        let invSqrtC2 = 1 / c2.squareRoot()
        let m = state, v = state + n
        let ob1 = 1 - b1, ob2 = 1 - b2
        // Eight lanes at a time (the pointers may alias as far as the compiler
        // knows, so it would not vectorise the scalar loop by itself).
        var i = 0
        if n >= 8 {
            let vb1 = SIMD8<Float>(repeating: b1), vb2 = SIMD8<Float>(repeating: b2)
            let vob1 = SIMD8<Float>(repeating: ob1), vob2 = SIMD8<Float>(repeating: ob2)
            let vl2 = SIMD8<Float>(repeating: l2), vstep = SIMD8<Float>(repeating: stepSize)
            let vinv = SIMD8<Float>(repeating: invSqrtC2), veps = SIMD8<Float>(repeating: eps)
            let rw = UnsafeMutableRawPointer(w), rm = UnsafeMutableRawPointer(m), rv = UnsafeMutableRawPointer(v)
            let rg = UnsafeRawPointer(g)
            while i + 8 <= n {
                let off = i * 4
                let wi = rw.loadUnaligned(fromByteOffset: off, as: SIMD8<Float>.self)
                let gi = rg.loadUnaligned(fromByteOffset: off, as: SIMD8<Float>.self) + vl2 * wi
                let mi = vb1 * rm.loadUnaligned(fromByteOffset: off, as: SIMD8<Float>.self) + vob1 * gi
                let vi = vb2 * rv.loadUnaligned(fromByteOffset: off, as: SIMD8<Float>.self) + vob2 * gi * gi
                rm.storeBytes(of: mi, toByteOffset: off, as: SIMD8<Float>.self)
                rv.storeBytes(of: vi, toByteOffset: off, as: SIMD8<Float>.self)
                rw.storeBytes(of: wi - vstep * mi / (Adam.squareRoot(vi) * vinv + veps), toByteOffset: off, as: SIMD8<Float>.self)
                i += 8
            }
        }
        while i < n {
            let gi = g[i] + l2 * w[i]
            let mi = b1 * m[i] + ob1 * gi
            let vi = b2 * v[i] + ob2 * gi * gi
            m[i] = mi
            v[i] = vi
            w[i] -= stepSize * mi / (vi.squareRoot() * invSqrtC2 + eps)
            i += 1
        }
    }
}
