/// What training and evaluation need from the parameter servers: one pull
/// and one push per step, each carrying every table's rows (ps-lite's
/// Push/Pull). `PSClientStore` implements it over ZeroMQ.
public protocol ParameterStore: AnyObject {
    /// Sends a pull of the rows of `keys` for each request (unique keys) and,
    /// when `denseCount > 0`, of the whole dense vector; returns at once.
    /// `PendingPull.finish()` waits for the answer (`dim` floats per key, in
    /// key order). Other calls may run in between (the worker pushes batch
    /// k while the pull of batch k+1 is under way).
    func beginPull(_ requests: [(table: UInt32, keys: [UInt64], dim: Int)], denseTable: UInt32, denseCount: Int) throws
        -> PendingPull
    /// Summed gradients of unique rows, and of the dense vector; the servers
    /// scale every learning rate by `lrScale` (the schedule).
    func push(_ gradients: [(table: UInt32, keys: [UInt64], values: [Float])], denseTable: UInt32, dense: [Float],
              lrScale: Float) throws
}


/// Declaring the model's tables is part of joining the cluster: tables are
/// created by the first worker and verified for every later one.
public protocol ParameterStoreSetup: ParameterStore {
    func declare(_ tables: ModelTables, denseInitial: [Float]) throws
}

/// A pull under way; `finish` waits for it (bounded by the client's timeout
/// and retries) and may be called once.
public struct PendingPull {
    public let finish: () throws -> (rows: [[Float]], dense: [Float])
    public init(finish: @escaping () throws -> (rows: [[Float]], dense: [Float])) { self.finish = finish }
}

extension ParameterStore {
    /// Pull and wait.
    public func pull(_ requests: [(table: UInt32, keys: [UInt64], dim: Int)], denseTable: UInt32, denseCount: Int) throws
        -> (rows: [[Float]], dense: [Float]) {
        try beginPull(requests, denseTable: denseTable, denseCount: denseCount).finish()
    }
}
