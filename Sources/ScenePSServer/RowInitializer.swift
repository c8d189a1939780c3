#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ScenePSCore
import ScenePSProtocol

/// Deterministic initial values from (seed, table id, key): a re-run or a
/// restore onto any number of servers gives the same value. Dense tables use
/// the global float index as the key of each element.
public enum RowInitializer {
    /// The SplitMix64 seed of one row (part of the checkpoint contract).
    @inlinable
    public static func rowSeed(spec: TableSpec, key: UInt64) -> UInt64 {
        KeyHash.mix64(KeyHash.mix64(spec.seed ^ (UInt64(spec.id) << 40)) ^ key)
    }

    /// Fills `count` weights of the row `key`.
    public static func fill(_ out: UnsafeMutablePointer<Float>, count: Int, spec: TableSpec, key: UInt64) {
        switch spec.initKind {
        case .zeros:
            out.update(repeating: 0, count: count)
        case .uniform:
            var rng = SplitMix64(seed: rowSeed(spec: spec, key: key))
            let s = Double(spec.initScale)
            for i in 0..<count { out[i] = Float((2 * rng.nextUnit() - 1) * s) }
        case .normal:
            var rng = SplitMix64(seed: rowSeed(spec: spec, key: key))
            let s = Double(spec.initScale)
            var i = 0
            while i < count {
                // Box–Muller: two normals per pair of uniforms; 1 - u avoids log(0).
                let u1 = 1 - rng.nextUnit(), u2 = rng.nextUnit()
                let r = (-2 * log(u1)).squareRoot()
                out[i] = Float(r * cos(2 * Double.pi * u2) * s)
                if i + 1 < count { out[i + 1] = Float(r * sin(2 * Double.pi * u2) * s) }
                i += 2
            }
        }
    }

    /// The initial value of element `index` (global) of a dense table.
    public static func denseValue(spec: TableSpec, index: UInt64) -> Float {
        var x: Float = 0
        fill(&x, count: 1, spec: spec, key: index)
        return x
    }
}
