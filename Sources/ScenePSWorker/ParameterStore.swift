/// What training and evaluation need from the parameter servers: one pull
/// and one push per step, each carrying every table's rows (ps-lite's
/// Push/Pull). `PSClientStore` implements it over ZeroMQ.
public protocol ParameterStore: AnyObject {
    /// Rows of `keys` for each request (unique keys; `dim` floats per key,
    /// in key order), and the whole dense vector when `denseCount > 0`.
    func pull(_ requests: [(table: UInt32, keys: [UInt64], dim: Int)], denseTable: UInt32, denseCount: Int) throws
        -> (rows: [[Float]], dense: [Float])
    /// Summed gradients of unique rows, and of the dense vector; the servers
    /// scale every learning rate by `lrScale` (the schedule).
    func push(_ gradients: [(table: UInt32, keys: [UInt64], values: [Float])], denseTable: UInt32, dense: [Float],
              lrScale: Float) throws
}


/// Declaring the model's tables is part of joining the cluster: tables are
/// created by the first worker and verified for every later one.
public protocol ParameterStoreSetup: ParameterStore {
    func declare(_ tables: ModelTables, denseInitial: [Float]) throws
    /// Reports this worker's fraction of `epoch` done; returns the peers of
    /// that epoch and the smallest fraction among them (progress alignment).
    func reportProgress(epoch: Int, progress: Double) throws -> (peers: Int, minProgress: Double)
}
