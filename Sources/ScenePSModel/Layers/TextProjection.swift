/// The learned projection of the frozen title vectors (docs/ARCHITECTURE.md §3.6):
/// `y += x · W_textᵀ`, x (M, K) title vectors, `W_text` (d, K) stored
/// [out, in] like every matrix, y (M, d) the item vectors they are added to
/// (the target's `t` and each behaviour token's `b_j`, steps 1 and 2).
///
/// Backward gives only `dW_text += dyᵀ · x`: the title vectors are a frozen
/// table, so their gradient is never computed.
enum TextProjection {
    static func forward<T: BLASScalar>(_ x: UnsafePointer<T>, rows m: Int, textDim k: Int, d: Int,
                                       w: UnsafePointer<T>, addTo y: UnsafeMutablePointer<T>) {
        guard m > 0 else { return }
        T.gemm(.no, .yes, m: m, n: d, k: k, alpha: 1, a: x, lda: k, b: w, ldb: k, beta: 1, c: y, ldc: d)
    }

    static func backward<T: BLASScalar>(_ dy: UnsafePointer<T>, x: UnsafePointer<T>, rows m: Int, textDim k: Int, d: Int,
                                        dw: UnsafeMutablePointer<T>) {
        guard m > 0 else { return }
        T.gemm(.yes, .no, m: d, n: k, k: m, alpha: 1, a: dy, lda: d, b: x, ldb: k, beta: 1, c: dw, ldc: k)
    }
}
