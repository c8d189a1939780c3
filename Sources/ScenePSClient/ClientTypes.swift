import ScenePSProtocol

public struct PSClientOptions: Sendable {
    /// How long to wait for every server's reply before retrying.
    public var timeout: Duration = .seconds(10)
    /// Extra attempts after the first (same request id each time).
    public var retries: Int = 3
    /// Largest request this client sends (and about the largest reply it
    /// accepts); must not exceed the servers' `--max-message-mb`.
    public var maxMessageBytes: Int = 64 << 20
    /// Messages queued per server socket (ZMQ_SNDHWM/RCVHWM).
    public var highWaterMark: Int32 = 1000
    public init() {}
}

/// Rows of one sparse table to pull. Keys may repeat; the result has one row
/// per key, in the same order. `keysAreUnique` promises they do not (the
/// client then skips its de-duplication).
public struct SparsePull: Sendable {
    public var tableID: UInt32
    public var keys: [UInt64]
    public var keysAreUnique: Bool
    public init(tableID: UInt32, keys: [UInt64], keysAreUnique: Bool = false) {
        self.tableID = tableID
        self.keys = keys
        self.keysAreUnique = keysAreUnique
    }
}

/// Gradients of one sparse table: `values.count == keys.count * dim`. Keys
/// may repeat; their gradients are summed before sending. `keysAreUnique`
/// promises they do not (the client then skips its de-duplication; a
/// repeated key would then reach the server twice in one block).
public struct SparseGradient: Sendable {
    public var tableID: UInt32
    public var keys: [UInt64]
    public var values: [Float]
    public var keysAreUnique: Bool
    public init(tableID: UInt32, keys: [UInt64], values: [Float], keysAreUnique: Bool = false) {
        self.tableID = tableID
        self.keys = keys
        self.values = values
        self.keysAreUnique = keysAreUnique
    }
}

/// The gradient of a whole dense table (`denseSize` floats); the client
/// splits it over the servers.
public struct DenseGradient: Sendable {
    public var tableID: UInt32
    public var values: [Float]
    public init(tableID: UInt32, values: [Float]) {
        self.tableID = tableID
        self.values = values
    }
}

public struct PullResult: Sendable {
    /// One entry per `SparsePull`, in request order: `keys.count * dim`
    /// floats, row `i` for `keys[i]`.
    public var sparse: [[Float]]
    /// The full vector of each requested dense table.
    public var dense: [UInt32: [Float]]
    public init(sparse: [[Float]], dense: [UInt32: [Float]]) {
        self.sparse = sparse
        self.dense = dense
    }
}

public typealias HelloReplyInfo = HelloReply
public typealias StatsReplyInfo = StatsReply
