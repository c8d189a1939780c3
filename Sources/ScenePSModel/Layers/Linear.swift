/// Fully connected layer `y = x Wᵀ + b` and the element-wise activations that
/// follow it. W is stored [out, in] row-major (the fixtures' convention).
enum Linear {
    /// x (M, IN), w (OUT, IN), b (OUT) or nil -> y (M, OUT)
    static func forward<T: BLASScalar>(_ x: UnsafePointer<T>, rows m: Int, in k: Int, out n: Int,
                                       w: UnsafePointer<T>, b: UnsafePointer<T>?, y: UnsafeMutablePointer<T>) {
        if let b {
            BLASKernels.broadcastRows(y, rows: m, cols: n, ld: n, b)
            T.gemm(.no, .yes, m: m, n: n, k: k, alpha: 1, a: x, lda: k, b: w, ldb: k, beta: 1, c: y, ldc: n)
        } else {
            T.gemm(.no, .yes, m: m, n: n, k: k, alpha: 1, a: x, lda: k, b: w, ldb: k, beta: 0, c: y, ldc: n)
        }
    }

    /// dy (M, OUT) -> dw (OUT, IN) +=, db (OUT) +=, dx (M, IN) written or added (`accumulate`).
    static func backward<T: BLASScalar>(_ dy: UnsafePointer<T>, x: UnsafePointer<T>, rows m: Int, in k: Int, out n: Int,
                                        w: UnsafePointer<T>, dw: UnsafeMutablePointer<T>, db: UnsafeMutablePointer<T>?,
                                        dx: UnsafeMutablePointer<T>?, accumulate: Bool) {
        // dW (OUT, IN) += dyᵀ (OUT, M) · x (M, IN)
        T.gemm(.yes, .no, m: n, n: k, k: m, alpha: 1, a: dy, lda: n, b: x, ldb: k, beta: 1, c: dw, ldc: k)
        if let db { BLASKernels.addColumnSums(dy, rows: m, cols: n, ld: n, into: db) }
        // dx (M, IN) (+)= dy (M, OUT) · W (OUT, IN)
        if let dx {
            T.gemm(.no, .no, m: m, n: k, k: n, alpha: 1, a: dy, lda: n, b: w, ldb: k,
                   beta: accumulate ? 1 : 0, c: dx, ldc: k)
        }
    }
}

enum ReLU {
    /// y (N) = max(y, 0) in place (NaN stays NaN).
    @inline(__always)
    static func forward<T: BLASScalar>(_ y: UnsafeMutablePointer<T>, count: Int) {
        BLASKernels.reluInPlace(y, where: y, count)
    }

    /// dy (N) *= [y > 0] in place, from the layer's output y.
    @inline(__always)
    static func backward<T: BLASScalar>(_ dy: UnsafeMutablePointer<T>, output y: UnsafePointer<T>, count: Int) {
        BLASKernels.reluInPlace(dy, where: y, count)
    }
}

enum Sigmoid {
    /// Numerically stable logistic function.
    @inline(__always)
    static func value<T: BLASScalar>(_ z: T) -> T {
        if z >= 0 {
            return 1 / (1 + T.exp(-z))
        } else {
            let e = T.exp(z)
            return e / (1 + e)
        }
    }
}
