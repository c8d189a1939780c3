import ScenePSWire

// The encoder/decoder pair of each server message (Messages.swift), in the
// order of that file. Each builds its protobuf-c struct pointing into Swift
// storage (`withC`) and copies an unpacked one out (`init(c:_:)`); the
// envelope and the shared helpers are in WireCodec.swift.

// MARK: Hello

extension Hello: WireMessage {
    static var bodyCase: Sceneps__Envelope__BodyCase { SCENEPS__ENVELOPE__BODY_HELLO }
    static func place(_ c: UnsafeMutablePointer<Sceneps__Hello>, in e: inout Sceneps__Envelope) { e.hello = c }
    static func field(of e: Sceneps__Envelope) -> UnsafeMutablePointer<Sceneps__Hello>? { e.hello }
    func withC<R>(_ strings: CStrings, _ body: (inout Sceneps__Hello) -> R) -> R {
        var c = Sceneps__Hello()
        sceneps__hello__init(&c)
        c.role = strings.dup(role)
        c.scene = strings.dup(scene)
        c.shard_count = shardCount
        c.shard_index = shardIndex
        return body(&c)
    }
    init(c: Sceneps__Hello, _ wire: WireDecoding) {
        self.init(role: WireC.string(c.role), scene: WireC.string(c.scene), shardCount: c.shard_count, shardIndex: c.shard_index)
    }
    var body: Body { .hello(self) }
}

// MARK: HelloReply

extension HelloReply: WireMessage {
    static var bodyCase: Sceneps__Envelope__BodyCase { SCENEPS__ENVELOPE__BODY_HELLO_REPLY }
    static func place(_ c: UnsafeMutablePointer<Sceneps__HelloReply>, in e: inout Sceneps__Envelope) { e.hello_reply = c }
    static func field(of e: Sceneps__Envelope) -> UnsafeMutablePointer<Sceneps__HelloReply>? { e.hello_reply }
    func withC<R>(_ strings: CStrings, _ body: (inout Sceneps__HelloReply) -> R) -> R {
        var c = Sceneps__HelloReply()
        sceneps__hello_reply__init(&c)
        c.shard_index = shardIndex
        c.shard_count = shardCount
        c.server_version = strings.dup(serverVersion)
        return WireC.withTableSpecs(tables, strings) { specs in
            c.n_tables = tables.count
            c.tables = specs
            return body(&c)
        }
    }
    init(c: Sceneps__HelloReply, _ wire: WireDecoding) throws(WireDecodingError) {
        self.init(shardIndex: c.shard_index, shardCount: c.shard_count, serverVersion: WireC.string(c.server_version),
                  tables: try WireC.tableSpecs(c.tables, c.n_tables, wire))
    }
    var body: Body { .helloReply(self) }
}

// MARK: DeclareTables

extension DeclareTables: WireMessage {
    static var bodyCase: Sceneps__Envelope__BodyCase { SCENEPS__ENVELOPE__BODY_DECLARE }
    static func place(_ c: UnsafeMutablePointer<Sceneps__DeclareTables>, in e: inout Sceneps__Envelope) { e.declare = c }
    static func field(of e: Sceneps__Envelope) -> UnsafeMutablePointer<Sceneps__DeclareTables>? { e.declare }
    func withC<R>(_ strings: CStrings, _ body: (inout Sceneps__DeclareTables) -> R) -> R {
        var c = Sceneps__DeclareTables()
        sceneps__declare_tables__init(&c)
        return WireC.withTableSpecs(tables, strings) { specs in
            WireC.withDenseBlocks(initial) { dense in
                c.n_tables = tables.count
                c.tables = specs
                c.n_initial = initial.count
                c.initial = dense
                return body(&c)
            }
        }
    }
    init(c: Sceneps__DeclareTables, _ wire: WireDecoding) throws(WireDecodingError) {
        self.init(tables: try WireC.tableSpecs(c.tables, c.n_tables, wire), initial: WireC.denseBlocks(c.initial, c.n_initial))
    }
    var body: Body { .declare(self) }
}

// MARK: Pull, pull reply and push (Blocks)

// PullRequest, PullReply and PushRequest carry the same `Blocks` but have
// distinct protobuf-c descriptors: one thin message type each.

struct PullRequestMessage: WireMessage {
    var blocks: Blocks
    static var bodyCase: Sceneps__Envelope__BodyCase { SCENEPS__ENVELOPE__BODY_PULL }
    static func place(_ c: UnsafeMutablePointer<Sceneps__PullRequest>, in e: inout Sceneps__Envelope) { e.pull = c }
    static func field(of e: Sceneps__Envelope) -> UnsafeMutablePointer<Sceneps__PullRequest>? { e.pull }
    func withC<R>(_ strings: CStrings, _ body: (inout Sceneps__PullRequest) -> R) -> R {
        WireC.withSparseBlocks(blocks.sparse) { sparse in
            WireC.withDenseBlocks(blocks.dense) { dense in
                var c = Sceneps__PullRequest()
                sceneps__pull_request__init(&c)
                c.n_sparse = blocks.sparse.count; c.sparse = sparse
                c.n_dense = blocks.dense.count; c.dense = dense
                return body(&c)
            }
        }
    }
    init(blocks: Blocks) { self.blocks = blocks }
    init(c: Sceneps__PullRequest, _ wire: WireDecoding) {
        blocks = Blocks(sparse: WireC.sparseBlocks(c.sparse, c.n_sparse), dense: WireC.denseBlocks(c.dense, c.n_dense))
    }
    var body: Body { .pull(blocks) }
}

struct PullReplyMessage: WireMessage {
    var blocks: Blocks
    static var bodyCase: Sceneps__Envelope__BodyCase { SCENEPS__ENVELOPE__BODY_PULL_REPLY }
    static func place(_ c: UnsafeMutablePointer<Sceneps__PullReply>, in e: inout Sceneps__Envelope) { e.pull_reply = c }
    static func field(of e: Sceneps__Envelope) -> UnsafeMutablePointer<Sceneps__PullReply>? { e.pull_reply }
    func withC<R>(_ strings: CStrings, _ body: (inout Sceneps__PullReply) -> R) -> R {
        WireC.withSparseBlocks(blocks.sparse) { sparse in
            WireC.withDenseBlocks(blocks.dense) { dense in
                var c = Sceneps__PullReply()
                sceneps__pull_reply__init(&c)
                c.n_sparse = blocks.sparse.count; c.sparse = sparse
                c.n_dense = blocks.dense.count; c.dense = dense
                return body(&c)
            }
        }
    }
    init(blocks: Blocks) { self.blocks = blocks }
    init(c: Sceneps__PullReply, _ wire: WireDecoding) {
        blocks = Blocks(sparse: WireC.sparseBlocks(c.sparse, c.n_sparse), dense: WireC.denseBlocks(c.dense, c.n_dense))
    }
    var body: Body { .pullReply(blocks) }
}

struct PushRequestMessage: WireMessage {
    var blocks: Blocks
    static var bodyCase: Sceneps__Envelope__BodyCase { SCENEPS__ENVELOPE__BODY_PUSH }
    static func place(_ c: UnsafeMutablePointer<Sceneps__PushRequest>, in e: inout Sceneps__Envelope) { e.push = c }
    static func field(of e: Sceneps__Envelope) -> UnsafeMutablePointer<Sceneps__PushRequest>? { e.push }
    func withC<R>(_ strings: CStrings, _ body: (inout Sceneps__PushRequest) -> R) -> R {
        WireC.withSparseBlocks(blocks.sparse) { sparse in
            WireC.withDenseBlocks(blocks.dense) { dense in
                var c = Sceneps__PushRequest()
                sceneps__push_request__init(&c)
                c.n_sparse = blocks.sparse.count; c.sparse = sparse
                c.n_dense = blocks.dense.count; c.dense = dense
                c.lr_scale = blocks.lrScale == 1 ? 0 : blocks.lrScale   // 0 on the wire = unset = 1
                return body(&c)
            }
        }
    }
    init(blocks: Blocks) { self.blocks = blocks }
    init(c: Sceneps__PushRequest, _ wire: WireDecoding) {
        blocks = Blocks(sparse: WireC.sparseBlocks(c.sparse, c.n_sparse), dense: WireC.denseBlocks(c.dense, c.n_dense),
                        lrScale: c.lr_scale == 0 ? 1 : c.lr_scale)
    }
    var body: Body { .push(blocks) }
}

// MARK: Ack

extension Ack: WireMessage {
    static var bodyCase: Sceneps__Envelope__BodyCase { SCENEPS__ENVELOPE__BODY_ACK }
    static func place(_ c: UnsafeMutablePointer<Sceneps__Ack>, in e: inout Sceneps__Envelope) { e.ack = c }
    static func field(of e: Sceneps__Envelope) -> UnsafeMutablePointer<Sceneps__Ack>? { e.ack }
    func withC<R>(_ strings: CStrings, _ body: (inout Sceneps__Ack) -> R) -> R {
        var c = Sceneps__Ack()
        sceneps__ack__init(&c)
        c.applied_rows = appliedRows
        c.duplicate = duplicate ? 1 : 0
        return body(&c)
    }
    init(c: Sceneps__Ack, _ wire: WireDecoding) {
        self.init(appliedRows: c.applied_rows, duplicate: c.duplicate != 0)
    }
    var body: Body { .ack(self) }
}

// MARK: ErrorReply

extension ErrorReply: WireMessage {
    static var bodyCase: Sceneps__Envelope__BodyCase { SCENEPS__ENVELOPE__BODY_ERROR }
    static func place(_ c: UnsafeMutablePointer<Sceneps__ErrorReply>, in e: inout Sceneps__Envelope) { e.error = c }
    static func field(of e: Sceneps__Envelope) -> UnsafeMutablePointer<Sceneps__ErrorReply>? { e.error }
    func withC<R>(_ strings: CStrings, _ body: (inout Sceneps__ErrorReply) -> R) -> R {
        var c = Sceneps__ErrorReply()
        sceneps__error_reply__init(&c)
        c.status = Sceneps__Status(rawValue: UInt32(bitPattern: status.rawValue))
        c.message = strings.dup(message)
        return body(&c)
    }
    init(c: Sceneps__ErrorReply, _ wire: WireDecoding) {
        // An unknown status from a newer peer is still an error: keep it as INTERNAL.
        let status = Status(rawValue: Int32(bitPattern: c.status.rawValue)) ?? .internalError
        self.init(status: status, message: WireC.string(c.message))
    }
    var body: Body { .error(self) }
}

// MARK: Stats request and reply

struct StatsRequestMessage: WireMessage {
    static var bodyCase: Sceneps__Envelope__BodyCase { SCENEPS__ENVELOPE__BODY_STATS }
    static func place(_ c: UnsafeMutablePointer<Sceneps__StatsRequest>, in e: inout Sceneps__Envelope) { e.stats = c }
    static func field(of e: Sceneps__Envelope) -> UnsafeMutablePointer<Sceneps__StatsRequest>? { e.stats }
    func withC<R>(_ strings: CStrings, _ body: (inout Sceneps__StatsRequest) -> R) -> R {
        var c = Sceneps__StatsRequest()
        sceneps__stats_request__init(&c)
        return body(&c)
    }
    init() {}
    init(c: Sceneps__StatsRequest, _ wire: WireDecoding) {}
    var body: Body { .stats }
}

extension StatsReply: WireMessage {
    static var bodyCase: Sceneps__Envelope__BodyCase { SCENEPS__ENVELOPE__BODY_STATS_REPLY }
    static func place(_ c: UnsafeMutablePointer<Sceneps__StatsReply>, in e: inout Sceneps__Envelope) { e.stats_reply = c }
    static func field(of e: Sceneps__Envelope) -> UnsafeMutablePointer<Sceneps__StatsReply>? { e.stats_reply }
    func withC<R>(_ strings: CStrings, _ body: (inout Sceneps__StatsReply) -> R) -> R {
        var c = Sceneps__StatsReply()
        sceneps__stats_reply__init(&c)
        c.shard_index = shardIndex
        c.requests = requests
        c.errors = errors
        c.uptime_seconds = uptimeSeconds
        c.handle_seconds = handleSeconds
        c.push_apply_seconds = pushApplySeconds
        return handleBucketBounds.withUnsafeBufferPointer { bounds in
            handleBucketCounts.withUnsafeBufferPointer { counts in
                c.n_handle_bucket_bounds = bounds.count
                c.handle_bucket_bounds = UnsafeMutablePointer(mutating: bounds.baseAddress)
                c.n_handle_bucket_counts = counts.count
                c.handle_bucket_counts = UnsafeMutablePointer(mutating: counts.baseAddress)
                return WireC.withTableStats(tables, strings) { stats in
                    c.n_tables = tables.count
                    c.tables = stats
                    return body(&c)
                }
            }
        }
    }
    init(c: Sceneps__StatsReply, _ wire: WireDecoding) throws(WireDecodingError) {
        let bounds: [Double] = c.n_handle_bucket_bounds > 0 && c.handle_bucket_bounds != nil
            ? Array(UnsafeBufferPointer(start: c.handle_bucket_bounds, count: c.n_handle_bucket_bounds)) : []
        let counts: [UInt64] = c.n_handle_bucket_counts > 0 && c.handle_bucket_counts != nil
            ? Array(UnsafeBufferPointer(start: c.handle_bucket_counts, count: c.n_handle_bucket_counts)) : []
        self.init(shardIndex: c.shard_index, tables: try WireC.tableStats(c.tables, c.n_tables, "table stats", wire),
                  requests: c.requests, errors: c.errors, uptimeSeconds: c.uptime_seconds,
                  handleSeconds: c.handle_seconds, pushApplySeconds: c.push_apply_seconds,
                  handleBucketBounds: bounds, handleBucketCounts: counts)
    }
    var body: Body { .statsReply(self) }
}

// MARK: Heartbeat

extension Heartbeat: WireMessage {
    static var bodyCase: Sceneps__Envelope__BodyCase { SCENEPS__ENVELOPE__BODY_HEARTBEAT }
    static func place(_ c: UnsafeMutablePointer<Sceneps__Heartbeat>, in e: inout Sceneps__Envelope) { e.heartbeat = c }
    static func field(of e: Sceneps__Envelope) -> UnsafeMutablePointer<Sceneps__Heartbeat>? { e.heartbeat }
    func withC<R>(_ strings: CStrings, _ body: (inout Sceneps__Heartbeat) -> R) -> R {
        var c = Sceneps__Heartbeat()
        sceneps__heartbeat__init(&c)
        c.epoch = epoch
        c.progress = progress
        c.peers = peers
        c.peers_min_progress = peersMinProgress
        return body(&c)
    }
    init(c: Sceneps__Heartbeat, _ wire: WireDecoding) {
        self.init(epoch: c.epoch, progress: c.progress, peers: c.peers, peersMinProgress: c.peers_min_progress)
    }
    var body: Body { .heartbeat(self) }
}

// MARK: Shutdown

struct ShutdownMessage: WireMessage {
    var reason: String
    static var bodyCase: Sceneps__Envelope__BodyCase { SCENEPS__ENVELOPE__BODY_SHUTDOWN }
    static func place(_ c: UnsafeMutablePointer<Sceneps__Shutdown>, in e: inout Sceneps__Envelope) { e.shutdown = c }
    static func field(of e: Sceneps__Envelope) -> UnsafeMutablePointer<Sceneps__Shutdown>? { e.shutdown }
    func withC<R>(_ strings: CStrings, _ body: (inout Sceneps__Shutdown) -> R) -> R {
        var c = Sceneps__Shutdown()
        sceneps__shutdown__init(&c)
        c.reason = strings.dup(reason)
        return body(&c)
    }
    init(reason: String) { self.reason = reason }
    init(c: Sceneps__Shutdown, _ wire: WireDecoding) { reason = WireC.string(c.reason) }
    var body: Body { .shutdown(reason: reason) }
}

// MARK: SnapshotRequest

extension SnapshotRequest: WireMessage {
    static var bodyCase: Sceneps__Envelope__BodyCase { SCENEPS__ENVELOPE__BODY_SNAPSHOT }
    static func place(_ c: UnsafeMutablePointer<Sceneps__Snapshot>, in e: inout Sceneps__Envelope) { e.snapshot = c }
    static func field(of e: Sceneps__Envelope) -> UnsafeMutablePointer<Sceneps__Snapshot>? { e.snapshot }
    func withC<R>(_ strings: CStrings, _ body: (inout Sceneps__Snapshot) -> R) -> R {
        var c = Sceneps__Snapshot()
        sceneps__snapshot__init(&c)
        c.action = Sceneps__SnapshotAction(rawValue: UInt32(bitPattern: action.rawValue))
        c.name = strings.dup(name)
        return body(&c)
    }
    init(c: Sceneps__Snapshot, _ wire: WireDecoding) throws(WireDecodingError) {
        guard let action = Action(rawValue: Int32(bitPattern: c.action.rawValue)) else {
            throw wire.bad("snapshot action \(c.action.rawValue) is not save (0) or restore (1)")
        }
        self.init(action: action, name: WireC.string(c.name))
    }
    var body: Body { .snapshot(self) }
}

// MARK: CheckpointRequest

extension CheckpointRequest: WireMessage {
    static var bodyCase: Sceneps__Envelope__BodyCase { SCENEPS__ENVELOPE__BODY_CHECKPOINT }
    static func place(_ c: UnsafeMutablePointer<Sceneps__CheckpointRequest>, in e: inout Sceneps__Envelope) { e.checkpoint = c }
    static func field(of e: Sceneps__Envelope) -> UnsafeMutablePointer<Sceneps__CheckpointRequest>? { e.checkpoint }
    func withC<R>(_ strings: CStrings, _ body: (inout Sceneps__CheckpointRequest) -> R) -> R {
        var c = Sceneps__CheckpointRequest()
        sceneps__checkpoint_request__init(&c)
        c.action = Sceneps__CheckpointAction(rawValue: UInt32(bitPattern: action.rawValue))
        c.name = strings.dup(name)
        c.dir = strings.dup(dir)
        c.hold_timeout_ms = holdTimeoutMs
        return body(&c)
    }
    init(c: Sceneps__CheckpointRequest, _ wire: WireDecoding) throws(WireDecodingError) {
        guard let action = Action(rawValue: Int32(bitPattern: c.action.rawValue)) else {
            throw wire.bad("checkpoint action \(c.action.rawValue) is not prepare (0), commit (1), abort (2) or status (3)")
        }
        self.init(action: action, name: WireC.string(c.name), dir: WireC.string(c.dir), holdTimeoutMs: c.hold_timeout_ms)
    }
    var body: Body { .checkpoint(self) }
}

// MARK: CheckpointReply

extension CheckpointReply: WireMessage {
    static var bodyCase: Sceneps__Envelope__BodyCase { SCENEPS__ENVELOPE__BODY_CHECKPOINT_REPLY }
    static func place(_ c: UnsafeMutablePointer<Sceneps__CheckpointReply>, in e: inout Sceneps__Envelope) { e.checkpoint_reply = c }
    static func field(of e: Sceneps__Envelope) -> UnsafeMutablePointer<Sceneps__CheckpointReply>? { e.checkpoint_reply }
    func withC<R>(_ strings: CStrings, _ body: (inout Sceneps__CheckpointReply) -> R) -> R {
        var c = Sceneps__CheckpointReply()
        sceneps__checkpoint_reply__init(&c)
        c.state = Sceneps__CheckpointState(rawValue: UInt32(bitPattern: state.rawValue))
        c.name = strings.dup(name)
        c.shard_index = shardIndex
        c.shard_count = shardCount
        c.applied_pushes = appliedPushes
        c.held_pushes = heldPushes
        c.hold_ms = holdMs
        c.push_stall_ms = pushStallMs
        c.file = strings.dup(file)
        c.bytes = bytes
        c.checksum = strings.dup(checksum)
        c.rows = rows
        c.write_seconds = writeSeconds
        c.message = strings.dup(message)
        c.preserved_rows = preservedRows
        return WireC.withTableStats(tableRows, strings) { stats in
            WireC.withTableSpecs(tables, strings) { specs in
                c.n_table_rows = tableRows.count
                c.table_rows = stats
                c.n_tables = tables.count
                c.tables = specs
                return body(&c)
            }
        }
    }
    init(c: Sceneps__CheckpointReply, _ wire: WireDecoding) throws(WireDecodingError) {
        guard let state = State(rawValue: Int32(bitPattern: c.state.rawValue)) else {
            throw wire.bad("checkpoint state \(c.state.rawValue) is unknown")
        }
        self.init(state: state, name: WireC.string(c.name))
        shardIndex = c.shard_index
        shardCount = c.shard_count
        appliedPushes = c.applied_pushes
        heldPushes = c.held_pushes
        holdMs = c.hold_ms
        pushStallMs = c.push_stall_ms
        file = WireC.string(c.file)
        bytes = c.bytes
        checksum = WireC.string(c.checksum)
        rows = c.rows
        writeSeconds = c.write_seconds
        message = WireC.string(c.message)
        preservedRows = c.preserved_rows
        tables = try WireC.tableSpecs(c.tables, c.n_tables, wire)
        tableRows = try WireC.tableStats(c.table_rows, c.n_table_rows, "table rows", wire)
    }
    var body: Body { .checkpointReply(self) }
}
