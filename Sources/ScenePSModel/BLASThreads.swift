import CBLAS

public enum BLASThreads {
    /// OpenBLAS starts one thread per core unless told; a worker that also
    /// runs ZeroMQ threads sets it explicitly (docs/ARCHITECTURE.md §7).
    public static func set(_ n: Int) { openblas_set_num_threads(Int32(n)) }
}
