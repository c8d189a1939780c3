import ScenePSProtocol
import ScenePSTransport

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
    /// Connect as this CURVE client (docs/SECURITY.md); nil: plain TCP.
    public var curve: CurveClientKeys?
    public init() {}
}

/// Rows of one sparse table to pull: distinct keys (a key listed twice is
/// refused, `PSClientError.duplicateKey`). The result has one row per key,
/// in the same order, of the table's declared width.
public struct SparsePull: Sendable, Equatable {
    public var tableID: UInt32
    public var keys: [UInt64]
    public init(tableID: UInt32, keys: [UInt64]) {
        self.tableID = tableID
        self.keys = keys
    }
}

/// Gradients of distinct rows of one sparse table:
/// `values.count == keys.count * dim`. Gradients of a row that occurs
/// several times in a batch are summed by the caller (the worker's batch
/// assembler does), so each row gets one optimiser step per push.
public struct SparseGradient: Sendable {
    public var tableID: UInt32
    public var keys: [UInt64]
    public var values: [Float]
    public init(tableID: UInt32, keys: [UInt64], values: [Float]) {
        self.tableID = tableID
        self.keys = keys
        self.values = values
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

/// What went wrong in a call of `PSClient`, with what a caller needs to
/// react (which server, which request, the server's status) and a message
/// a person can act on (`description`).
public enum PSClientError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A server did not answer within the timeout, after every retry.
    case timedOut(server: Int, endpoint: String, request: String, requestID: UInt64, attempts: Int, timeout: Duration)
    /// A server refused the request (its ErrorReply).
    case rejected(server: Int, endpoint: String, request: String, status: Status, message: String)
    /// A server's reply does not fit the request: undecodable, of another
    /// kind, or of another shape.
    case badReply(server: Int, endpoint: String, request: String, detail: String)
    /// A server reports another place in the cluster than the one it is listed at.
    case wrongShard(server: Int, endpoint: String, reportedIndex: UInt32, reportedCount: UInt32, listed: Int)
    /// A request larger than `PSClientOptions.maxMessageBytes`.
    case tooLarge(server: Int, endpoint: String, request: String, bytes: Int, limit: Int)
    /// A table neither declared by this client nor learned from `hello`.
    case unknownTable(UInt32)
    /// A sparse table used as dense or the other way round.
    case wrongKind(table: UInt32, name: String, kind: TableKind, expected: TableKind)
    /// A key listed twice in one table of one call.
    case duplicateKey(table: UInt32, name: String, key: UInt64)
    /// Gradient or initial values of the wrong length.
    case wrongSize(table: UInt32, name: String, values: Int, expected: Int, what: String)
    /// Anything else the caller got wrong (an empty endpoint list, bad options).
    case invalidArgument(String)

    /// The server it concerns, when there is one.
    public var server: Int? {
        switch self {
        case .timedOut(let s, _, _, _, _, _), .rejected(let s, _, _, _, _), .badReply(let s, _, _, _),
             .wrongShard(let s, _, _, _, _), .tooLarge(let s, _, _, _, _):
            return s
        default:
            return nil
        }
    }

    public var description: String {
        switch self {
        case .timedOut(let s, let e, let what, let id, let attempts, let timeout):
            return "server \(s) (\(e)) did not answer \(what) request \(id) within \(timeout) after \(attempts) attempts"
        case .rejected(let s, let e, let what, let status, let message):
            return "server \(s) (\(e)) rejected \(what): status=\(status): \(message)"
        case .badReply(let s, let e, let what, let detail):
            return "server \(s) (\(e)) answered \(what) wrongly: \(detail)"
        case .wrongShard(let s, let e, let index, let count, let listed):
            return "server at \(e) reports shard \(index) of \(count), but it is listed at position \(s) of \(listed) endpoints"
        case .tooLarge(let s, let e, let what, let bytes, let limit):
            return "\(what) for server \(s) (\(e)) is \(bytes) bytes, over the limit of \(limit); send fewer keys per call"
        case .unknownTable(let id):
            return "table \(id) is not known to this client: declare it or call hello first"
        case .wrongKind(let id, let name, let kind, let expected):
            return "table \(id) '\(name)' is \(kind), not \(expected)"
        case .duplicateKey(let id, let name, let key):
            return "key \(key) is listed twice for table \(id) '\(name)' in one call: keys of a table must be distinct (sum their gradients first)"
        case .wrongSize(let id, let name, let values, let expected, let what):
            return "\(what) of table \(id) '\(name)' has \(values) values, expected \(expected)"
        case .invalidArgument(let m):
            return m
        }
    }
}
