/// LayerNorm over the last dimension, biased variance, eps inside the root
/// (PyTorch `F.layer_norm`, eps = 1e-5 in the model).
enum LayerNorm {
    static let eps = 1e-5

    /// x (N, C), gamma (C), beta (C) -> y (N, C), mean (N), rstd (N)
    static func forward<T: BLASScalar>(_ x: UnsafePointer<T>, rows n: Int, width c: Int,
                                       gamma: UnsafePointer<T>, beta: UnsafePointer<T>,
                                       y: UnsafeMutablePointer<T>, mean: UnsafeMutablePointer<T>, rstd: UnsafeMutablePointer<T>) {
        let eps = T(Self.eps), invC = 1 / T(c)
        for i in 0..<n {
            let xi = x + i * c, yi = y + i * c
            let m = BLASKernels.sum(xi, c) * invC
            let v = BLASKernels.sumSquaredDeviations(xi, from: m, c) * invC
            let r = 1 / (v + eps).squareRoot()
            for j in 0..<c { yi[j] = (xi[j] - m) * r * gamma[j] + beta[j] }
            mean[i] = m
            rstd[i] = r
        }
    }

    /// dy (N, C) -> dx (N, C) +=, dgamma (C) +=, dbeta (C) +=
    static func backward<T: BLASScalar>(_ dy: UnsafePointer<T>, x: UnsafePointer<T>, rows n: Int, width c: Int,
                                        gamma: UnsafePointer<T>, mean: UnsafePointer<T>, rstd: UnsafePointer<T>,
                                        dx: UnsafeMutablePointer<T>, dgamma: UnsafeMutablePointer<T>, dbeta: UnsafeMutablePointer<T>) {
        let invC = 1 / T(c)
        for i in 0..<n {
            let xi = x + i * c, dyi = dy + i * c, dxi = dx + i * c
            let m = mean[i], r = rstd[i]
            // dxhat = dy ⊙ gamma; dx = r (dxhat − mean(dxhat) − xhat · mean(dxhat ⊙ xhat))
            var sumD: T = 0, sumDX: T = 0
            for j in 0..<c {
                dbeta[j] += dyi[j]
                dgamma[j] += dyi[j] * (xi[j] - m) * r
            }
            BLASKernels.layerNormSums(dy: dyi, gamma: gamma, x: xi, mean: m, rstd: r, c, sumD: &sumD, sumDX: &sumDX)
            sumD *= invC
            sumDX *= invC
            for j in 0..<c {
                let xhat = (xi[j] - m) * r
                dxi[j] += r * (dyi[j] * gamma[j] - sumD - xhat * sumDX)
            }
        }
    }
}
