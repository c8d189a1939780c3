/// Swift value types for every wire message (protos/scene_ps.proto).
///
/// Each converts itself to and from protobuf-c (Messages+Wire.swift,
/// CoordinatorMessages+Wire.swift; the envelope in WireCodec.swift); nothing else
/// in ScenePS touches the generated C structs.

/// Status of a reply; mirrors `sceneps.Status`.
public enum Status: Int32, Sendable, CaseIterable, CustomStringConvertible {
    case ok = 0
    case badRequest = 1
    case versionMismatch = 2
    case unknownTable = 3
    case wrongDimension = 4
    case nonFinite = 5
    case tooLarge = 6
    case conflict = 7
    case frozen = 8
    case internalError = 9
    case unauthenticated = 10
    case shuttingDown = 11
    case unknownMember = 12
    /// Coordinator: a checkpoint ticket it does not hold (it was restarted since, or never issued it).
    case unknownTicket = 13
    /// The peer's CURVE key (its role) may not send this request; nothing changed.
    case permissionDenied = 14
    /// A pull or push would create rows past the table's row cap; nothing created.
    case tableFull = 15

    public var description: String {
        switch self {
        case .ok: return "OK"
        case .badRequest: return "BAD_REQUEST"
        case .versionMismatch: return "VERSION_MISMATCH"
        case .unknownTable: return "UNKNOWN_TABLE"
        case .wrongDimension: return "WRONG_DIMENSION"
        case .nonFinite: return "NON_FINITE"
        case .tooLarge: return "TOO_LARGE"
        case .conflict: return "CONFLICT"
        case .frozen: return "FROZEN"
        case .internalError: return "INTERNAL"
        case .unauthenticated: return "UNAUTHENTICATED"
        case .shuttingDown: return "SHUTTING_DOWN"
        case .unknownMember: return "UNKNOWN_MEMBER"
        case .unknownTicket: return "UNKNOWN_TICKET"
        case .permissionDenied: return "PERMISSION_DENIED"
        case .tableFull: return "TABLE_FULL"
        }
    }
}

public enum TableKind: UInt32, Sendable, CustomStringConvertible {
    case sparse = 0
    case dense = 1
    public var description: String { self == .sparse ? "sparse" : "dense" }
}

public enum InitKind: UInt32, Sendable, CustomStringConvertible {
    case zeros = 0
    case uniform = 1   // U(-scale, scale)
    case normal = 2    // N(0, scale^2)
    public var description: String {
        switch self {
        case .zeros: return "zeros"
        case .uniform: return "uniform"
        case .normal: return "normal"
        }
    }
}

public struct AdamConfig: Sendable, Equatable {
    public var learningRate: Float
    public var beta1: Float
    public var beta2: Float
    public var epsilon: Float
    /// Added to the gradient as `l2 * w` for the rows a push touches.
    public var l2: Float

    public init(learningRate: Float = 0.001, beta1: Float = 0.9, beta2: Float = 0.999,
                epsilon: Float = 1e-8, l2: Float = 0) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.l2 = l2
    }
}

public struct TableSpec: Sendable, Equatable {
    public var id: UInt32
    public var name: String
    public var kind: TableKind
    /// Sparse: row width. Dense: 1.
    public var dim: UInt32
    /// Dense: total floats over all servers. Sparse: 0.
    public var denseSize: UInt64
    public var initKind: InitKind
    public var initScale: Float
    public var seed: UInt64
    public var frozen: Bool
    public var adam: AdamConfig
    /// Sparse: directory of `embeddings.npy` + `item_ids.txt` whose rows are
    /// the initial values of the ids' keys (a pretrained, usually frozen,
    /// table); empty = none.
    public var initFile: String

    public init(id: UInt32, name: String, kind: TableKind, dim: UInt32, denseSize: UInt64 = 0,
                initKind: InitKind = .zeros, initScale: Float = 0, seed: UInt64 = 0,
                frozen: Bool = false, adam: AdamConfig = AdamConfig(), initFile: String = "") {
        self.id = id
        self.name = name
        self.kind = kind
        self.dim = dim
        self.denseSize = denseSize
        self.initKind = initKind
        self.initScale = initScale
        self.seed = seed
        self.frozen = frozen
        self.adam = adam
        self.initFile = initFile
    }

    /// A sparse table of rows of `dim` floats.
    public static func sparse(id: UInt32, name: String, dim: UInt32, initKind: InitKind = .normal,
                              initScale: Float = 0.01, seed: UInt64 = 0, frozen: Bool = false,
                              adam: AdamConfig = AdamConfig(), initFile: String = "") -> TableSpec {
        TableSpec(id: id, name: name, kind: .sparse, dim: dim, initKind: initKind, initScale: initScale,
                  seed: seed, frozen: frozen, adam: adam, initFile: initFile)
    }

    /// A dense vector of `size` floats split over the servers.
    public static func dense(id: UInt32, name: String, size: UInt64, initKind: InitKind = .zeros,
                             initScale: Float = 0, seed: UInt64 = 0, frozen: Bool = false,
                             adam: AdamConfig = AdamConfig()) -> TableSpec {
        TableSpec(id: id, name: name, kind: .dense, dim: 1, denseSize: size, initKind: initKind,
                  initScale: initScale, seed: seed, frozen: frozen, adam: adam)
    }
}

/// Keys of one sparse table and, in replies and pushes, their rows:
/// `values.count == keys.count * dim`, row-major in key order.
public struct SparseBlock: Sendable, Equatable {
    public var tableID: UInt32
    public var keys: [UInt64]
    public var values: [Float]
    public init(tableID: UInt32, keys: [UInt64], values: [Float] = []) {
        self.tableID = tableID
        self.keys = keys
        self.values = values
    }
}

/// A slice `[offset, offset + count)` of a dense table in global coordinates.
/// Pull requests carry no values; replies and pushes carry `count` values.
public struct DenseBlock: Sendable, Equatable {
    public var tableID: UInt32
    public var offset: UInt64
    public var count: UInt64
    public var values: [Float]
    public init(tableID: UInt32, offset: UInt64, count: UInt64, values: [Float] = []) {
        self.tableID = tableID
        self.offset = offset
        self.count = count
        self.values = values
    }
}

/// The sparse and dense blocks of a pull request, pull reply or push.
public struct Blocks: Sendable, Equatable {
    public var sparse: [SparseBlock]
    public var dense: [DenseBlock]
    /// Pushes only: multiplies every table's learning rate for this push (the
    /// worker's learning-rate schedule). 1 in pulls and replies.
    public var lrScale: Float
    public init(sparse: [SparseBlock] = [], dense: [DenseBlock] = [], lrScale: Float = 1) {
        self.sparse = sparse
        self.dense = dense
        self.lrScale = lrScale
    }
}

/// Liveness (see `Heartbeat` in scene_ps.proto). The fields are deprecated
/// and ignored; progress alignment is the coordinator's `MemberBeat`.
public struct Heartbeat: Sendable, Equatable {
    public var epoch: UInt32
    public var progress: Double
    public var peers: UInt32
    public var peersMinProgress: Double
    public init(epoch: UInt32 = 0, progress: Double = 0, peers: UInt32 = 0, peersMinProgress: Double = 0) {
        self.epoch = epoch
        self.progress = progress
        self.peers = peers
        self.peersMinProgress = peersMinProgress
    }
}

public struct Hello: Sendable, Equatable {
    public var role: String
    public var scene: String
    public var shardCount: UInt32
    public var shardIndex: UInt32
    public init(role: String, scene: String = "", shardCount: UInt32, shardIndex: UInt32) {
        self.role = role
        self.scene = scene
        self.shardCount = shardCount
        self.shardIndex = shardIndex
    }
}

public struct HelloReply: Sendable, Equatable {
    public var shardIndex: UInt32
    public var shardCount: UInt32
    public var serverVersion: String
    public var tables: [TableSpec]
    public init(shardIndex: UInt32, shardCount: UInt32, serverVersion: String, tables: [TableSpec]) {
        self.shardIndex = shardIndex
        self.shardCount = shardCount
        self.serverVersion = serverVersion
        self.tables = tables
    }
}

public struct DeclareTables: Sendable, Equatable {
    public var tables: [TableSpec]
    /// This server's slices of dense initial values (used only on creation).
    public var initial: [DenseBlock]
    public init(tables: [TableSpec], initial: [DenseBlock] = []) {
        self.tables = tables
        self.initial = initial
    }
}

public struct Ack: Sendable, Equatable {
    public var appliedRows: UInt64
    public var duplicate: Bool
    public init(appliedRows: UInt64, duplicate: Bool = false) {
        self.appliedRows = appliedRows
        self.duplicate = duplicate
    }
}

public struct ErrorReply: Error, Sendable, Equatable {
    public var status: Status
    public var message: String
    public init(status: Status, message: String) {
        self.status = status
        self.message = message
    }
}

public struct TableStats: Sendable, Equatable {
    public var id: UInt32
    public var name: String
    public var rows: UInt64
    public var bytes: UInt64
    public var pulls: UInt64
    public var pushes: UInt64
    public init(id: UInt32, name: String, rows: UInt64, bytes: UInt64, pulls: UInt64, pushes: UInt64) {
        self.id = id
        self.name = name
        self.rows = rows
        self.bytes = bytes
        self.pulls = pulls
        self.pushes = pushes
    }
}

public struct StatsReply: Sendable, Equatable {
    public var shardIndex: UInt32
    public var tables: [TableStats]
    public var requests: UInt64
    public var errors: UInt64
    public var uptimeSeconds: Double
    /// Time spent handling requests (decode, validate, apply, encode).
    public var handleSeconds: Double
    /// Of which applying pushes (row lookup + optimiser).
    public var pushApplySeconds: Double
    /// Handling-time histogram over the server's life: `handleBucketCounts[i]` requests took at most
    /// `handleBucketBounds[i]` seconds (and more than the bound before); the last count is for the rest
    /// (one more count than bounds; not cumulative). Both empty from older servers.
    public var handleBucketBounds: [Double] = []
    public var handleBucketCounts: [UInt64] = []
    public init(shardIndex: UInt32, tables: [TableStats], requests: UInt64, errors: UInt64, uptimeSeconds: Double,
                handleSeconds: Double = 0, pushApplySeconds: Double = 0,
                handleBucketBounds: [Double] = [], handleBucketCounts: [UInt64] = []) {
        self.handleBucketBounds = handleBucketBounds
        self.handleBucketCounts = handleBucketCounts
        self.shardIndex = shardIndex
        self.tables = tables
        self.requests = requests
        self.errors = errors
        self.uptimeSeconds = uptimeSeconds
        self.handleSeconds = handleSeconds
        self.pushApplySeconds = pushApplySeconds
    }
}

/// Keep (`save`) or bring back (`restore`) a named in-memory copy of every
/// table of a server: weights, Adam moments and row steps together. Sent
/// between epochs (the launcher keeps the best epoch's model with it).
public struct SnapshotRequest: Sendable, Equatable {
    public enum Action: Int32, Sendable, CaseIterable {
        case save = 0
        case restore = 1
    }
    public var action: Action
    public var name: String
    public init(action: Action, name: String) {
        self.action = action
        self.name = name
    }
}

/// One step of a cluster-wide checkpoint cut (see `CheckpointRequest` in
/// scene_ps.proto and docs/CHECKPOINTS.md).
public struct CheckpointRequest: Sendable, Equatable {
    public enum Action: Int32, Sendable, CaseIterable, CustomStringConvertible {
        case prepare = 0
        case commit = 1
        case abort = 2
        case status = 3
        public var description: String { ["prepare", "commit", "abort", "status"][Int(rawValue)] }
    }
    public var action: Action
    public var name: String
    /// Empty: the server's own `--checkpoint-dir`.
    public var dir: String
    /// PREPARE: the server releases the hold by itself after this long (0 = 2000 ms).
    public var holdTimeoutMs: UInt32
    public init(action: Action, name: String, dir: String = "", holdTimeoutMs: UInt32 = 0) {
        self.action = action
        self.name = name
        self.dir = dir
        self.holdTimeoutMs = holdTimeoutMs
    }
}

/// A server's answer to a `CheckpointRequest`.
public struct CheckpointReply: Sendable, Equatable {
    public enum State: Int32, Sendable, CaseIterable, CustomStringConvertible {
        case unknown = 0, held = 1, writing = 2, done = 3, failed = 4, aborted = 5
        public var description: String { ["unknown", "held", "writing", "done", "failed", "aborted"][Int(rawValue)] }
    }
    public var state: State
    public var name: String
    public var shardIndex: UInt32 = 0
    public var shardCount: UInt32 = 0
    public var appliedPushes: UInt64 = 0
    public var heldPushes: UInt64 = 0
    public var holdMs: Double = 0
    public var pushStallMs: Double = 0
    public var file: String = ""
    public var bytes: UInt64 = 0
    public var checksum: String = ""
    public var rows: UInt64 = 0
    public var writeSeconds: Double = 0
    public var message: String = ""
    public var tables: [TableSpec] = []
    public var tableRows: [TableStats] = []
    public var preservedRows: UInt64 = 0
    public init(state: State, name: String) {
        self.state = state
        self.name = name
    }
}

/// The body of an envelope: exactly one message.
public enum Body: Sendable, Equatable {
    case hello(Hello)
    case helloReply(HelloReply)
    case declare(DeclareTables)
    case pull(Blocks)
    case pullReply(Blocks)
    case push(Blocks)
    case ack(Ack)
    case error(ErrorReply)
    case stats
    case statsReply(StatsReply)
    case heartbeat(Heartbeat)
    case shutdown(reason: String)
    case snapshot(SnapshotRequest)
    // The coordinator (CoordinatorMessages.swift).
    case register(Register)
    case registerReply(RegisterReply)
    case leaseRequest(LeaseRequest)
    case leaseReply(LeaseReply)
    case memberBeat(MemberBeat)
    case memberBeatReply(MemberBeatReply)
    case scale(ScaleRequest)
    case leave(LeaveRequest)
    case status
    case statusReply(StatusReply)
    case checkpoint(CheckpointRequest)
    case checkpointReply(CheckpointReply)
    case coordinatorCheckpoint(CoordinatorCheckpointRequest)
    case coordinatorCheckpointReply(CoordinatorCheckpointReply)
    case recovery(RecoveryRequest)
    case recoveryReply(RecoveryReply)

    /// A short name for logs.
    public var kindName: String {
        switch self {
        case .hello: return "hello"
        case .helloReply: return "hello_reply"
        case .declare: return "declare"
        case .pull: return "pull"
        case .pullReply: return "pull_reply"
        case .push: return "push"
        case .ack: return "ack"
        case .error: return "error"
        case .stats: return "stats"
        case .statsReply: return "stats_reply"
        case .heartbeat: return "heartbeat"
        case .shutdown: return "shutdown"
        case .snapshot: return "snapshot"
        case .register: return "register"
        case .registerReply: return "register_reply"
        case .leaseRequest: return "lease_request"
        case .leaseReply: return "lease_reply"
        case .memberBeat: return "member_beat"
        case .memberBeatReply: return "member_beat_reply"
        case .scale: return "scale"
        case .leave: return "leave"
        case .status: return "status"
        case .statusReply: return "status_reply"
        case .checkpoint: return "checkpoint"
        case .checkpointReply: return "checkpoint_reply"
        case .coordinatorCheckpoint: return "coordinator_checkpoint"
        case .coordinatorCheckpointReply: return "coordinator_checkpoint_reply"
        case .recovery: return "recovery"
        case .recoveryReply: return "recovery_reply"
        }
    }
}

/// Every ZeroMQ message is one envelope.
public struct Envelope: Sendable, Equatable {
    public var version: UInt32
    public var requestID: UInt64
    public var sender: String
    public var body: Body
    public init(version: UInt32 = WireProtocol.version, requestID: UInt64, sender: String, body: Body) {
        self.version = version
        self.requestID = requestID
        self.sender = sender
        self.body = body
    }
}

/// A frame that could not be decoded into an envelope. `status` is what a
/// server answers with (BAD_REQUEST or VERSION_MISMATCH).
public struct WireDecodingError: Error, Sendable, CustomStringConvertible {
    public let status: Status
    public let message: String
    /// Request id and sender when the frame parsed but failed a later check.
    public let requestID: UInt64
    public let sender: String
    public init(status: Status, message: String, requestID: UInt64 = 0, sender: String = "") {
        self.status = status
        self.message = message
        self.requestID = requestID
        self.sender = sender
    }
    public var description: String { "\(status): \(message)" }
}
