import ScenePSWire
import ScenePSCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Envelope ⇄ protobuf-c bytes.
///
/// Encoding builds protobuf-c structs whose `keys`/`values` point straight at
/// the Swift arrays (inside `withUnsafeBufferPointer`), so the floats are
/// copied once, by `pack`, into the output buffer. Decoding unpacks with
/// protobuf-c, copies each repeated field once into a Swift array, and frees
/// the unpacked message exactly once. Structs built here are never passed to
/// `free_unpacked` (docs/ARCHITECTURE.md §7).
public enum WireCodec {
    // MARK: encode

    /// Encodes into a fresh array.
    public static func encode(_ envelope: Envelope) -> [UInt8] {
        withPackedEnvelope(envelope) { msg in
            let size = sceneps__envelope__get_packed_size(msg)
            return [UInt8](unsafeUninitializedCapacity: size) { buf, count in
                let written = sceneps__envelope__pack(msg, buf.baseAddress!)
                assert(written == size)
                count = written
            }
        }
    }

    /// Encodes into an owned buffer from `malloc`, which a ZeroMQ send takes
    /// over without copying (`ZMQOutgoingFrame.owned`).
    public static func encodeBuffer(_ envelope: Envelope) -> MallocBuffer {
        withPackedEnvelope(envelope) { msg in
            let size = sceneps__envelope__get_packed_size(msg)
            let out = MallocBuffer(count: size)
            let written = sceneps__envelope__pack(msg, out.bytes.baseAddress!.assumingMemoryBound(to: UInt8.self))
            assert(written == size)
            return out
        }
    }

    /// Builds the C envelope (pointing into Swift storage) and passes it to `body`.
    static func withPackedEnvelope<R>(_ env: Envelope, _ body: (UnsafePointer<Sceneps__Envelope>) -> R) -> R {
        let strings = CStrings()
        var msg = Sceneps__Envelope()
        sceneps__envelope__init(&msg)
        msg.version = env.version
        msg.request_id = env.requestID
        msg.sender = strings.dup(env.sender)

        /// Points the envelope's body (case `bodyCase`, field set by `set`) at
        /// `c` and packs the envelope.
        func attach<C>(_ c: inout C, _ bodyCase: Sceneps__Envelope__BodyCase,
                       _ set: (inout Sceneps__Envelope, UnsafeMutablePointer<C>) -> Void) -> R {
            withUnsafeMutablePointer(to: &c) { p in
                msg.body_case = bodyCase
                set(&msg, p)
                // `strings` must outlive the pack: keep it alive explicitly.
                return withExtendedLifetime(strings) { withUnsafePointer(to: &msg) { body($0) } }
            }
        }

        switch env.body {
        case .hello(let h):
            var c = Sceneps__Hello()
            sceneps__hello__init(&c)
            c.role = strings.dup(h.role)
            c.scene = strings.dup(h.scene)
            c.shard_count = h.shardCount
            c.shard_index = h.shardIndex
            return attach(&c, SCENEPS__ENVELOPE__BODY_HELLO) { $0.hello = $1 }
        case .helloReply(let h):
            var c = Sceneps__HelloReply()
            sceneps__hello_reply__init(&c)
            c.shard_index = h.shardIndex
            c.shard_count = h.shardCount
            c.server_version = strings.dup(h.serverVersion)
            return withTableSpecs(h.tables, strings) { specs in
                c.n_tables = h.tables.count
                c.tables = specs
                return attach(&c, SCENEPS__ENVELOPE__BODY_HELLO_REPLY) { $0.hello_reply = $1 }
            }
        case .declare(let d):
            var c = Sceneps__DeclareTables()
            sceneps__declare_tables__init(&c)
            return withTableSpecs(d.tables, strings) { specs in
                withDenseBlocks(d.initial) { dense in
                    c.n_tables = d.tables.count
                    c.tables = specs
                    c.n_initial = d.initial.count
                    c.initial = dense
                    return attach(&c, SCENEPS__ENVELOPE__BODY_DECLARE) { $0.declare = $1 }
                }
            }
        case .pull(let b), .pullReply(let b), .push(let b):
            return withSparseBlocks(b.sparse) { sparse in
                withDenseBlocks(b.dense) { dense in
                    // PullRequest, PullReply and PushRequest have the same layout
                    // but distinct descriptors; build the right one.
                    switch env.body {
                    case .pull:
                        var c = Sceneps__PullRequest()
                        sceneps__pull_request__init(&c)
                        c.n_sparse = b.sparse.count; c.sparse = sparse
                        c.n_dense = b.dense.count; c.dense = dense
                        return attach(&c, SCENEPS__ENVELOPE__BODY_PULL) { $0.pull = $1 }
                    case .pullReply:
                        var c = Sceneps__PullReply()
                        sceneps__pull_reply__init(&c)
                        c.n_sparse = b.sparse.count; c.sparse = sparse
                        c.n_dense = b.dense.count; c.dense = dense
                        return attach(&c, SCENEPS__ENVELOPE__BODY_PULL_REPLY) { $0.pull_reply = $1 }
                    default:
                        var c = Sceneps__PushRequest()
                        sceneps__push_request__init(&c)
                        c.n_sparse = b.sparse.count; c.sparse = sparse
                        c.n_dense = b.dense.count; c.dense = dense
                        c.lr_scale = b.lrScale == 1 ? 0 : b.lrScale   // 0 on the wire = unset = 1
                        return attach(&c, SCENEPS__ENVELOPE__BODY_PUSH) { $0.push = $1 }
                    }
                }
            }
        case .ack(let a):
            var c = Sceneps__Ack()
            sceneps__ack__init(&c)
            c.applied_rows = a.appliedRows
            c.duplicate = a.duplicate ? 1 : 0
            return attach(&c, SCENEPS__ENVELOPE__BODY_ACK) { $0.ack = $1 }
        case .error(let e):
            var c = Sceneps__ErrorReply()
            sceneps__error_reply__init(&c)
            c.status = Sceneps__Status(rawValue: UInt32(bitPattern: e.status.rawValue))
            c.message = strings.dup(e.message)
            return attach(&c, SCENEPS__ENVELOPE__BODY_ERROR) { $0.error = $1 }
        case .stats:
            var c = Sceneps__StatsRequest()
            sceneps__stats_request__init(&c)
            return attach(&c, SCENEPS__ENVELOPE__BODY_STATS) { $0.stats = $1 }
        case .statsReply(let s):
            var c = Sceneps__StatsReply()
            sceneps__stats_reply__init(&c)
            c.shard_index = s.shardIndex
            c.requests = s.requests
            c.errors = s.errors
            c.uptime_seconds = s.uptimeSeconds
            c.handle_seconds = s.handleSeconds
            c.push_apply_seconds = s.pushApplySeconds
            let n = s.tables.count
            let structs = UnsafeMutablePointer<Sceneps__TableStats>.allocate(capacity: max(n, 1))
            let ptrs = UnsafeMutablePointer<UnsafeMutablePointer<Sceneps__TableStats>?>.allocate(capacity: max(n, 1))
            defer { structs.deallocate(); ptrs.deallocate() }
            for (i, t) in s.tables.enumerated() {
                var ts = Sceneps__TableStats()
                sceneps__table_stats__init(&ts)
                ts.id = t.id
                ts.name = strings.dup(t.name)
                ts.rows = t.rows
                ts.bytes = t.bytes
                ts.pulls = t.pulls
                ts.pushes = t.pushes
                (structs + i).initialize(to: ts)
                ptrs[i] = structs + i
            }
            c.n_tables = n
            c.tables = ptrs
            return attach(&c, SCENEPS__ENVELOPE__BODY_STATS_REPLY) { $0.stats_reply = $1 }
        case .heartbeat(let h):
            var c = Sceneps__Heartbeat()
            sceneps__heartbeat__init(&c)
            c.epoch = h.epoch
            c.progress = h.progress
            c.peers = h.peers
            c.peers_min_progress = h.peersMinProgress
            return attach(&c, SCENEPS__ENVELOPE__BODY_HEARTBEAT) { $0.heartbeat = $1 }
        case .shutdown(let reason):
            var c = Sceneps__Shutdown()
            sceneps__shutdown__init(&c)
            c.reason = strings.dup(reason)
            return attach(&c, SCENEPS__ENVELOPE__BODY_SHUTDOWN) { $0.shutdown = $1 }
        case .snapshot(let r):
            var c = Sceneps__Snapshot()
            sceneps__snapshot__init(&c)
            c.action = Sceneps__SnapshotAction(rawValue: UInt32(bitPattern: r.action.rawValue))
            c.name = strings.dup(r.name)
            return attach(&c, SCENEPS__ENVELOPE__BODY_SNAPSHOT) { $0.snapshot = $1 }
        case .register(let r):
            var c = Sceneps__Register()
            sceneps__register__init(&c)
            c.name = strings.dup(r.name)
            c.scene = strings.dup(r.scene)
            c.incarnation = strings.dup(r.incarnation)
            return attach(&c, SCENEPS__ENVELOPE__BODY_REGISTER) { $0.register_ = $1 }
        case .registerReply(let r):
            var c = Sceneps__RegisterReply()
            sceneps__register_reply__init(&c)
            c.member_id = r.memberID
            c.heartbeat_ms = r.heartbeatMs
            c.dead_after_ms = r.deadAfterMs
            let ptrs = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: max(r.servers.count, 1))
            defer { ptrs.deallocate() }
            for (i, e) in r.servers.enumerated() { ptrs[i] = strings.dup(e) }
            c.n_servers = r.servers.count
            c.servers = ptrs
            return attach(&c, SCENEPS__ENVELOPE__BODY_REGISTER_REPLY) { $0.register_reply = $1 }
        case .leaseRequest(let r):
            var c = Sceneps__LeaseRequest()
            sceneps__lease_request__init(&c)
            c.member_id = r.memberID
            c.done_lease = r.doneLease
            c.done_examples = r.doneExamples
            c.done_steps = r.doneSteps
            c.done_seconds = r.doneSeconds
            c.done_loss = r.doneLoss
            let names = r.times.keys.sorted()
            let values = UnsafeMutablePointer<Sceneps__NamedValue>.allocate(capacity: max(names.count, 1))
            let ptrs = UnsafeMutablePointer<UnsafeMutablePointer<Sceneps__NamedValue>?>.allocate(capacity: max(names.count, 1))
            defer { values.deallocate(); ptrs.deallocate() }
            for (i, k) in names.enumerated() {
                sceneps__named_value__init(values + i)
                values[i].name = strings.dup(k)
                values[i].value = r.times[k]!
                ptrs[i] = values + i
            }
            c.n_times = names.count
            c.times = ptrs
            return attach(&c, SCENEPS__ENVELOPE__BODY_LEASE_REQUEST) { $0.lease_request = $1 }
        case .leaseReply(let r):
            var c = Sceneps__LeaseReply()
            sceneps__lease_reply__init(&c)
            c.kind = Sceneps__LeaseKind(rawValue: r.kind.rawValue)
            c.lease_id = r.leaseID
            c.epoch = r.epoch
            c.scene = strings.dup(r.scene)
            c.chunk_file = strings.dup(r.chunkFile)
            c.chunk_index = r.chunkIndex
            c.chunk_examples = r.chunkExamples
            c.scene_examples_before = r.sceneExamplesBefore
            c.scene_epoch_examples = r.sceneEpochExamples
            c.lr_level = r.lrLevel
            c.wait_ms = r.waitMs
            c.reason = strings.dup(r.reason)
            c.done_accepted = r.doneAccepted ? 1 : 0
            return attach(&c, SCENEPS__ENVELOPE__BODY_LEASE_REPLY) { $0.lease_reply = $1 }
        case .memberBeat(let b):
            var c = Sceneps__MemberBeat()
            sceneps__member_beat__init(&c)
            c.member_id = b.memberID
            c.lease_id = b.leaseID
            c.lease_examples = b.leaseExamples
            return attach(&c, SCENEPS__ENVELOPE__BODY_MEMBER_BEAT) { $0.member_beat = $1 }
        case .memberBeatReply(let b):
            var c = Sceneps__MemberBeatReply()
            sceneps__member_beat_reply__init(&c)
            c.scene_progress = b.sceneProgress
            c.min_progress = b.minProgress
            c.lease_valid = b.leaseValid ? 1 : 0
            return attach(&c, SCENEPS__ENVELOPE__BODY_MEMBER_BEAT_REPLY) { $0.member_beat_reply = $1 }
        case .scale(let r):
            var c = Sceneps__Scale()
            sceneps__scale__init(&c)
            c.scene = strings.dup(r.scene)
            c.workers = r.workers
            return attach(&c, SCENEPS__ENVELOPE__BODY_SCALE) { $0.scale = $1 }
        case .leave(let r):
            var c = Sceneps__Leave()
            sceneps__leave__init(&c)
            c.member_id = r.memberID
            c.reason = strings.dup(r.reason)
            return attach(&c, SCENEPS__ENVELOPE__BODY_LEAVE) { $0.leave = $1 }
        case .status:
            var c = Sceneps__StatusRequest()
            sceneps__status_request__init(&c)
            return attach(&c, SCENEPS__ENVELOPE__BODY_STATUS_REQUEST) { $0.status_request = $1 }
        case .statusReply(let r):
            var c = Sceneps__StatusReply()
            sceneps__status_reply__init(&c)
            c.epoch = r.epoch
            c.phase = strings.dup(r.phase)
            c.message = strings.dup(r.message)
            let ns = r.scenes.count, nm = r.members.count
            let scenes = UnsafeMutablePointer<Sceneps__SceneStatus>.allocate(capacity: max(ns, 1))
            let scenePtrs = UnsafeMutablePointer<UnsafeMutablePointer<Sceneps__SceneStatus>?>.allocate(capacity: max(ns, 1))
            let members = UnsafeMutablePointer<Sceneps__MemberStatus>.allocate(capacity: max(nm, 1))
            let memberPtrs = UnsafeMutablePointer<UnsafeMutablePointer<Sceneps__MemberStatus>?>.allocate(capacity: max(nm, 1))
            defer { scenes.deallocate(); scenePtrs.deallocate(); members.deallocate(); memberPtrs.deallocate() }
            for (i, x) in r.scenes.enumerated() {
                var t = Sceneps__SceneStatus()
                sceneps__scene_status__init(&t)
                t.name = strings.dup(x.name)
                t.target = x.target
                t.live_workers = x.liveWorkers
                t.chunks = x.chunks
                t.chunks_done = x.chunksDone
                t.chunks_leased = x.chunksLeased
                t.waiting = x.waiting ? 1 : 0
                (scenes + i).initialize(to: t)
                scenePtrs[i] = scenes + i
            }
            for (i, x) in r.members.enumerated() {
                var t = Sceneps__MemberStatus()
                sceneps__member_status__init(&t)
                t.member_id = x.memberID
                t.name = strings.dup(x.name)
                t.scene = strings.dup(x.scene)
                t.retiring = x.retiring ? 1 : 0
                t.silent_seconds = x.silentSeconds
                t.lease_id = x.leaseID
                (members + i).initialize(to: t)
                memberPtrs[i] = members + i
            }
            c.n_scenes = ns
            c.scenes = scenePtrs
            c.n_members = nm
            c.members = memberPtrs
            return attach(&c, SCENEPS__ENVELOPE__BODY_STATUS_REPLY) { $0.status_reply = $1 }
        case .coordinatorCheckpoint(let r):
            var c = Sceneps__CoordinatorCheckpoint()
            sceneps__coordinator_checkpoint__init(&c)
            c.ticket = r.ticket
            c.tags = strings.dup(r.tags)
            return attach(&c, SCENEPS__ENVELOPE__BODY_COORDINATOR_CHECKPOINT) { $0.coordinator_checkpoint = $1 }
        case .coordinatorCheckpointReply(let r):
            var c = Sceneps__CoordinatorCheckpointReply()
            sceneps__coordinator_checkpoint_reply__init(&c)
            c.state = Sceneps__CoordinatorCheckpointState(rawValue: r.state.rawValue)
            c.ticket = r.ticket
            c.name = strings.dup(r.name)
            c.path = strings.dup(r.path)
            c.epoch = r.epoch
            c.chunks_done = r.chunksDone
            c.push_stall_ms = r.pushStallMs
            c.bytes = r.bytes
            c.seconds = r.seconds
            c.message = strings.dup(r.message)
            return attach(&c, SCENEPS__ENVELOPE__BODY_COORDINATOR_CHECKPOINT_REPLY) { $0.coordinator_checkpoint_reply = $1 }
        case .recovery(let r):
            var c = Sceneps__Recovery()
            sceneps__recovery__init(&c)
            c.action = Sceneps__RecoveryAction(rawValue: r.action.rawValue)
            c.checkpoint = strings.dup(r.checkpoint)
            c.reason = strings.dup(r.reason)
            return attach(&c, SCENEPS__ENVELOPE__BODY_RECOVERY) { $0.recovery = $1 }
        case .recoveryReply(let r):
            var c = Sceneps__RecoveryReply()
            sceneps__recovery_reply__init(&c)
            c.checkpointing = r.checkpointing ? 1 : 0
            c.epoch_from = r.epochFrom
            c.epoch_to = r.epochTo
            c.chunks_undone = r.chunksUndone
            c.examples_undone = r.examplesUndone
            c.leases_released = r.leasesReleased
            c.message = strings.dup(r.message)
            return attach(&c, SCENEPS__ENVELOPE__BODY_RECOVERY_REPLY) { $0.recovery_reply = $1 }
        case .checkpoint(let r):
            var c = Sceneps__CheckpointRequest()
            sceneps__checkpoint_request__init(&c)
            c.action = Sceneps__CheckpointAction(rawValue: UInt32(bitPattern: r.action.rawValue))
            c.name = strings.dup(r.name)
            c.dir = strings.dup(r.dir)
            c.hold_timeout_ms = r.holdTimeoutMs
            return attach(&c, SCENEPS__ENVELOPE__BODY_CHECKPOINT) { $0.checkpoint = $1 }
        case .checkpointReply(let r):
            var c = Sceneps__CheckpointReply()
            sceneps__checkpoint_reply__init(&c)
            c.state = Sceneps__CheckpointState(rawValue: UInt32(bitPattern: r.state.rawValue))
            c.name = strings.dup(r.name)
            c.shard_index = r.shardIndex
            c.shard_count = r.shardCount
            c.applied_pushes = r.appliedPushes
            c.held_pushes = r.heldPushes
            c.hold_ms = r.holdMs
            c.push_stall_ms = r.pushStallMs
            c.file = strings.dup(r.file)
            c.bytes = r.bytes
            c.checksum = strings.dup(r.checksum)
            c.rows = r.rows
            c.write_seconds = r.writeSeconds
            c.message = strings.dup(r.message)
            c.preserved_rows = r.preservedRows
            let n = r.tableRows.count
            let structs = UnsafeMutablePointer<Sceneps__TableStats>.allocate(capacity: max(n, 1))
            let ptrs = UnsafeMutablePointer<UnsafeMutablePointer<Sceneps__TableStats>?>.allocate(capacity: max(n, 1))
            defer { structs.deallocate(); ptrs.deallocate() }
            for (i, t) in r.tableRows.enumerated() {
                var ts = Sceneps__TableStats()
                sceneps__table_stats__init(&ts)
                ts.id = t.id
                ts.name = strings.dup(t.name)
                ts.rows = t.rows
                ts.bytes = t.bytes
                ts.pulls = t.pulls
                ts.pushes = t.pushes
                (structs + i).initialize(to: ts)
                ptrs[i] = structs + i
            }
            c.n_table_rows = n
            c.table_rows = n > 0 ? ptrs : nil
            return withTableSpecs(r.tables, strings) { specs in
                c.n_tables = r.tables.count
                c.tables = specs
                return attach(&c, SCENEPS__ENVELOPE__BODY_CHECKPOINT_REPLY) { $0.checkpoint_reply = $1 }
            }
        }
    }

    /// C sparse blocks whose keys/values point at the Swift arrays. The
    /// recursion keeps every `withUnsafeBufferPointer` open while `body` runs.
    static func withSparseBlocks<R>(_ blocks: [SparseBlock],
                                    _ body: (UnsafeMutablePointer<UnsafeMutablePointer<Sceneps__SparseBlock>?>?) -> R) -> R {
        let n = blocks.count
        if n == 0 { return body(nil) }
        let structs = UnsafeMutablePointer<Sceneps__SparseBlock>.allocate(capacity: n)
        let ptrs = UnsafeMutablePointer<UnsafeMutablePointer<Sceneps__SparseBlock>?>.allocate(capacity: n)
        defer { structs.deallocate(); ptrs.deallocate() }
        func fill(_ i: Int) -> R {
            if i == n { return body(ptrs) }
            return blocks[i].keys.withUnsafeBufferPointer { k in
                blocks[i].values.withUnsafeBufferPointer { v in
                    var c = Sceneps__SparseBlock()
                    sceneps__sparse_block__init(&c)
                    c.table_id = blocks[i].tableID
                    c.n_keys = k.count
                    c.keys = UnsafeMutablePointer(mutating: k.baseAddress)
                    c.n_values = v.count
                    c.values = UnsafeMutablePointer(mutating: v.baseAddress)
                    (structs + i).initialize(to: c)
                    ptrs[i] = structs + i
                    return fill(i + 1)
                }
            }
        }
        return fill(0)
    }

    static func withDenseBlocks<R>(_ blocks: [DenseBlock],
                                   _ body: (UnsafeMutablePointer<UnsafeMutablePointer<Sceneps__DenseBlock>?>?) -> R) -> R {
        let n = blocks.count
        if n == 0 { return body(nil) }
        let structs = UnsafeMutablePointer<Sceneps__DenseBlock>.allocate(capacity: n)
        let ptrs = UnsafeMutablePointer<UnsafeMutablePointer<Sceneps__DenseBlock>?>.allocate(capacity: n)
        defer { structs.deallocate(); ptrs.deallocate() }
        func fill(_ i: Int) -> R {
            if i == n { return body(ptrs) }
            return blocks[i].values.withUnsafeBufferPointer { v in
                var c = Sceneps__DenseBlock()
                sceneps__dense_block__init(&c)
                c.table_id = blocks[i].tableID
                c.offset = blocks[i].offset
                c.count = blocks[i].count
                c.n_values = v.count
                c.values = UnsafeMutablePointer(mutating: v.baseAddress)
                (structs + i).initialize(to: c)
                ptrs[i] = structs + i
                return fill(i + 1)
            }
        }
        return fill(0)
    }

    static func withTableSpecs<R>(_ specs: [TableSpec], _ strings: CStrings,
                                  _ body: (UnsafeMutablePointer<UnsafeMutablePointer<Sceneps__TableSpec>?>?) -> R) -> R {
        let n = specs.count
        if n == 0 { return body(nil) }
        let structs = UnsafeMutablePointer<Sceneps__TableSpec>.allocate(capacity: n)
        let adams = UnsafeMutablePointer<Sceneps__AdamConfig>.allocate(capacity: n)
        let ptrs = UnsafeMutablePointer<UnsafeMutablePointer<Sceneps__TableSpec>?>.allocate(capacity: n)
        defer { structs.deallocate(); adams.deallocate(); ptrs.deallocate() }
        for (i, s) in specs.enumerated() {
            var a = Sceneps__AdamConfig()
            sceneps__adam_config__init(&a)
            a.learning_rate = s.adam.learningRate
            a.beta1 = s.adam.beta1
            a.beta2 = s.adam.beta2
            a.epsilon = s.adam.epsilon
            a.l2 = s.adam.l2
            (adams + i).initialize(to: a)
            var c = Sceneps__TableSpec()
            sceneps__table_spec__init(&c)
            c.id = s.id
            c.name = strings.dup(s.name)
            c.kind = Sceneps__TableKind(rawValue: s.kind.rawValue)
            c.dim = s.dim
            c.dense_size = s.denseSize
            c.`init` = Sceneps__InitKind(rawValue: s.initKind.rawValue)
            c.init_scale = s.initScale
            c.seed = s.seed
            c.frozen = s.frozen ? 1 : 0
            c.adam = adams + i
            c.init_file = strings.dup(s.initFile)
            (structs + i).initialize(to: c)
            ptrs[i] = structs + i
        }
        return body(ptrs)
    }

    // MARK: decode

    /// Decodes one frame. Throws `WireDecodingError` for garbage or truncated
    /// bytes, a missing body, a wrong protocol version or an enum value this
    /// version does not know.
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(WireDecodingError) -> Envelope {
        guard bytes.count > 0, let base = bytes.baseAddress else {
            throw WireDecodingError(status: .badRequest, message: "empty frame")
        }
        guard let msg = sceneps__envelope__unpack(nil, bytes.count, base.assumingMemoryBound(to: UInt8.self)) else {
            throw WireDecodingError(status: .badRequest,
                                    message: "frame of \(bytes.count) bytes is not a valid Envelope (garbage or truncated)")
        }
        defer { sceneps__envelope__free_unpacked(msg, nil) }
        let m = msg.pointee
        let sender = string(m.sender)
        guard m.version == WireProtocol.version else {
            throw WireDecodingError(status: .versionMismatch,
                                    message: "protocol version \(m.version) is not supported (this peer speaks \(WireProtocol.version))",
                                    requestID: m.request_id, sender: sender)
        }
        func bad(_ what: String) -> WireDecodingError {
            WireDecodingError(status: .badRequest, message: what, requestID: m.request_id, sender: sender)
        }
        let body: Body
        switch m.body_case {
        case SCENEPS__ENVELOPE__BODY_HELLO:
            let h = m.hello.pointee
            body = .hello(Hello(role: string(h.role), scene: string(h.scene), shardCount: h.shard_count, shardIndex: h.shard_index))
        case SCENEPS__ENVELOPE__BODY_HELLO_REPLY:
            let h = m.hello_reply.pointee
            body = .helloReply(HelloReply(shardIndex: h.shard_index, shardCount: h.shard_count,
                                          serverVersion: string(h.server_version),
                                          tables: try specs(h.tables, h.n_tables, bad)))
        case SCENEPS__ENVELOPE__BODY_DECLARE:
            let d = m.declare.pointee
            body = .declare(DeclareTables(tables: try specs(d.tables, d.n_tables, bad), initial: dense(d.initial, d.n_initial)))
        case SCENEPS__ENVELOPE__BODY_PULL:
            let p = m.pull.pointee
            body = .pull(Blocks(sparse: sparse(p.sparse, p.n_sparse), dense: dense(p.dense, p.n_dense)))
        case SCENEPS__ENVELOPE__BODY_PULL_REPLY:
            let p = m.pull_reply.pointee
            body = .pullReply(Blocks(sparse: sparse(p.sparse, p.n_sparse), dense: dense(p.dense, p.n_dense)))
        case SCENEPS__ENVELOPE__BODY_PUSH:
            let p = m.push.pointee
            body = .push(Blocks(sparse: sparse(p.sparse, p.n_sparse), dense: dense(p.dense, p.n_dense),
                                lrScale: p.lr_scale == 0 ? 1 : p.lr_scale))
        case SCENEPS__ENVELOPE__BODY_ACK:
            let a = m.ack.pointee
            body = .ack(Ack(appliedRows: a.applied_rows, duplicate: a.duplicate != 0))
        case SCENEPS__ENVELOPE__BODY_ERROR:
            let e = m.error.pointee
            // An unknown status from a newer peer is still an error: keep it as INTERNAL.
            let status = Status(rawValue: Int32(bitPattern: e.status.rawValue)) ?? .internalError
            body = .error(ErrorReply(status: status, message: string(e.message)))
        case SCENEPS__ENVELOPE__BODY_STATS:
            body = .stats
        case SCENEPS__ENVELOPE__BODY_STATS_REPLY:
            let s = m.stats_reply.pointee
            var tables: [TableStats] = []
            tables.reserveCapacity(s.n_tables)
            for i in 0..<s.n_tables {
                guard let t = s.tables[i]?.pointee else { throw bad("null table stats") }
                tables.append(TableStats(id: t.id, name: string(t.name), rows: t.rows, bytes: t.bytes,
                                         pulls: t.pulls, pushes: t.pushes))
            }
            body = .statsReply(StatsReply(shardIndex: s.shard_index, tables: tables, requests: s.requests,
                                          errors: s.errors, uptimeSeconds: s.uptime_seconds,
                                          handleSeconds: s.handle_seconds, pushApplySeconds: s.push_apply_seconds))
        case SCENEPS__ENVELOPE__BODY_HEARTBEAT:
            let h = m.heartbeat.pointee
            body = .heartbeat(Heartbeat(epoch: h.epoch, progress: h.progress, peers: h.peers,
                                        peersMinProgress: h.peers_min_progress))
        case SCENEPS__ENVELOPE__BODY_SHUTDOWN:
            body = .shutdown(reason: string(m.shutdown.pointee.reason))
        case SCENEPS__ENVELOPE__BODY_SNAPSHOT:
            let r = m.snapshot.pointee
            guard let action = SnapshotRequest.Action(rawValue: Int32(bitPattern: r.action.rawValue)) else {
                throw bad("snapshot action \(r.action.rawValue) is not save (0) or restore (1)")
            }
            body = .snapshot(SnapshotRequest(action: action, name: string(r.name)))
        case SCENEPS__ENVELOPE__BODY_REGISTER:
            let r = m.register_.pointee
            body = .register(Register(name: string(r.name), scene: string(r.scene), incarnation: string(r.incarnation)))
        case SCENEPS__ENVELOPE__BODY_REGISTER_REPLY:
            let r = m.register_reply.pointee
            var servers: [String] = []
            for i in 0..<r.n_servers { servers.append(string(r.servers[i])) }
            body = .registerReply(RegisterReply(memberID: r.member_id, servers: servers, heartbeatMs: r.heartbeat_ms,
                                                deadAfterMs: r.dead_after_ms))
        case SCENEPS__ENVELOPE__BODY_LEASE_REQUEST:
            let r = m.lease_request.pointee
            var times: [String: Double] = [:]
            for i in 0..<r.n_times {
                guard let t = r.times[i] else { throw bad("lease request time \(i) is missing") }
                let name = string(t.pointee.name)
                guard !name.isEmpty, t.pointee.value.isFinite, times[name] == nil else {
                    throw bad("lease request time '\(name)' is empty, repeated or not finite (\(t.pointee.value))")
                }
                times[name] = t.pointee.value
            }
            body = .leaseRequest(LeaseRequest(memberID: r.member_id, doneLease: r.done_lease, doneExamples: r.done_examples,
                                              doneSteps: r.done_steps, doneSeconds: r.done_seconds, doneLoss: r.done_loss,
                                              times: times))
        case SCENEPS__ENVELOPE__BODY_LEASE_REPLY:
            let r = m.lease_reply.pointee
            guard let kind = LeaseKind(rawValue: r.kind.rawValue) else { throw bad("lease kind \(r.kind.rawValue) is not known") }
            var l = LeaseReply(kind: kind)
            l.leaseID = r.lease_id
            l.epoch = r.epoch
            l.scene = string(r.scene)
            l.chunkFile = string(r.chunk_file)
            l.chunkIndex = r.chunk_index
            l.chunkExamples = r.chunk_examples
            l.sceneExamplesBefore = r.scene_examples_before
            l.sceneEpochExamples = r.scene_epoch_examples
            l.lrLevel = r.lr_level
            l.waitMs = r.wait_ms
            l.reason = string(r.reason)
            l.doneAccepted = r.done_accepted != 0
            body = .leaseReply(l)
        case SCENEPS__ENVELOPE__BODY_MEMBER_BEAT:
            let b = m.member_beat.pointee
            body = .memberBeat(MemberBeat(memberID: b.member_id, leaseID: b.lease_id, leaseExamples: b.lease_examples))
        case SCENEPS__ENVELOPE__BODY_MEMBER_BEAT_REPLY:
            let b = m.member_beat_reply.pointee
            body = .memberBeatReply(MemberBeatReply(sceneProgress: b.scene_progress, minProgress: b.min_progress,
                                                    leaseValid: b.lease_valid != 0))
        case SCENEPS__ENVELOPE__BODY_SCALE:
            let r = m.scale.pointee
            body = .scale(ScaleRequest(scene: string(r.scene), workers: r.workers))
        case SCENEPS__ENVELOPE__BODY_LEAVE:
            let r = m.leave.pointee
            body = .leave(LeaveRequest(memberID: r.member_id, reason: string(r.reason)))
        case SCENEPS__ENVELOPE__BODY_STATUS_REQUEST:
            body = .status
        case SCENEPS__ENVELOPE__BODY_STATUS_REPLY:
            let r = m.status_reply.pointee
            var scenes: [SceneStatus] = [], members: [MemberStatus] = []
            for i in 0..<r.n_scenes {
                guard let t = r.scenes[i]?.pointee else { throw bad("null scene status") }
                scenes.append(SceneStatus(name: string(t.name), target: t.target, liveWorkers: t.live_workers, chunks: t.chunks,
                                          chunksDone: t.chunks_done, chunksLeased: t.chunks_leased, waiting: t.waiting != 0))
            }
            for i in 0..<r.n_members {
                guard let t = r.members[i]?.pointee else { throw bad("null member status") }
                members.append(MemberStatus(memberID: t.member_id, name: string(t.name), scene: string(t.scene),
                                            retiring: t.retiring != 0, silentSeconds: t.silent_seconds, leaseID: t.lease_id))
            }
            body = .statusReply(StatusReply(epoch: r.epoch, phase: string(r.phase), scenes: scenes, members: members,
                                            message: string(r.message)))
        case SCENEPS__ENVELOPE__BODY_CHECKPOINT:
            let r = m.checkpoint.pointee
            guard let action = CheckpointRequest.Action(rawValue: Int32(bitPattern: r.action.rawValue)) else {
                throw bad("checkpoint action \(r.action.rawValue) is not prepare (0), commit (1), abort (2) or status (3)")
            }
            body = .checkpoint(CheckpointRequest(action: action, name: string(r.name), dir: string(r.dir),
                                                 holdTimeoutMs: r.hold_timeout_ms))
        case SCENEPS__ENVELOPE__BODY_CHECKPOINT_REPLY:
            let r = m.checkpoint_reply.pointee
            guard let state = CheckpointReply.State(rawValue: Int32(bitPattern: r.state.rawValue)) else {
                throw bad("checkpoint state \(r.state.rawValue) is unknown")
            }
            var c = CheckpointReply(state: state, name: string(r.name))
            c.shardIndex = r.shard_index
            c.shardCount = r.shard_count
            c.appliedPushes = r.applied_pushes
            c.heldPushes = r.held_pushes
            c.holdMs = r.hold_ms
            c.pushStallMs = r.push_stall_ms
            c.file = string(r.file)
            c.bytes = r.bytes
            c.checksum = string(r.checksum)
            c.rows = r.rows
            c.writeSeconds = r.write_seconds
            c.message = string(r.message)
            c.preservedRows = r.preserved_rows
            c.tables = try specs(r.tables, r.n_tables, bad)
            for i in 0..<r.n_table_rows {
                guard let t = r.table_rows[i]?.pointee else { throw bad("null table rows") }
                c.tableRows.append(TableStats(id: t.id, name: string(t.name), rows: t.rows, bytes: t.bytes,
                                              pulls: t.pulls, pushes: t.pushes))
            }
            body = .checkpointReply(c)
        case SCENEPS__ENVELOPE__BODY_COORDINATOR_CHECKPOINT:
            let r = m.coordinator_checkpoint.pointee
            body = .coordinatorCheckpoint(CoordinatorCheckpointRequest(ticket: r.ticket, tags: string(r.tags)))
        case SCENEPS__ENVELOPE__BODY_COORDINATOR_CHECKPOINT_REPLY:
            let r = m.coordinator_checkpoint_reply.pointee
            guard let state = CoordinatorCheckpointReply.State(rawValue: r.state.rawValue) else {
                throw bad("coordinator checkpoint state \(r.state.rawValue) is unknown")
            }
            var c = CoordinatorCheckpointReply(state: state, ticket: r.ticket)
            c.name = string(r.name)
            c.path = string(r.path)
            c.epoch = r.epoch
            c.chunksDone = r.chunks_done
            c.pushStallMs = r.push_stall_ms
            c.bytes = r.bytes
            c.seconds = r.seconds
            c.message = string(r.message)
            body = .coordinatorCheckpointReply(c)
        case SCENEPS__ENVELOPE__BODY_RECOVERY:
            let r = m.recovery.pointee
            guard let action = RecoveryRequest.Action(rawValue: r.action.rawValue) else {
                throw bad("recovery action \(r.action.rawValue) is not begin (0), rewind (1) or abort (2)")
            }
            body = .recovery(RecoveryRequest(action: action, checkpoint: string(r.checkpoint), reason: string(r.reason)))
        case SCENEPS__ENVELOPE__BODY_RECOVERY_REPLY:
            let r = m.recovery_reply.pointee
            var c = RecoveryReply()
            c.checkpointing = r.checkpointing != 0
            c.epochFrom = r.epoch_from
            c.epochTo = r.epoch_to
            c.chunksUndone = r.chunks_undone
            c.examplesUndone = r.examples_undone
            c.leasesReleased = r.leases_released
            c.message = string(r.message)
            body = .recoveryReply(c)
        default:
            throw bad("envelope has no body")
        }
        return Envelope(version: m.version, requestID: m.request_id, sender: sender, body: body)
    }

    public static func decode(_ bytes: [UInt8]) throws(WireDecodingError) -> Envelope {
        let result: Result<Envelope, WireDecodingError> = bytes.withUnsafeBytes { buf in
            Result { () throws(WireDecodingError) -> Envelope in try decode(buf) }
        }
        return try result.get()
    }

    private static func string(_ p: UnsafeMutablePointer<CChar>?) -> String {
        guard let p else { return "" }
        return String(cString: p)
    }

    private static func floats(_ p: UnsafeMutablePointer<Float>?, _ n: Int) -> [Float] {
        guard n > 0, let p else { return [] }
        return Array(UnsafeBufferPointer(start: p, count: n))
    }

    private static func sparse(_ p: UnsafeMutablePointer<UnsafeMutablePointer<Sceneps__SparseBlock>?>?, _ n: Int) -> [SparseBlock] {
        guard n > 0, let p else { return [] }
        var out: [SparseBlock] = []
        out.reserveCapacity(n)
        for i in 0..<n {
            guard let b = p[i]?.pointee else { continue }
            let keys: [UInt64] = (b.n_keys > 0 && b.keys != nil) ? Array(UnsafeBufferPointer(start: b.keys, count: b.n_keys)) : []
            out.append(SparseBlock(tableID: b.table_id, keys: keys, values: floats(b.values, b.n_values)))
        }
        return out
    }

    private static func dense(_ p: UnsafeMutablePointer<UnsafeMutablePointer<Sceneps__DenseBlock>?>?, _ n: Int) -> [DenseBlock] {
        guard n > 0, let p else { return [] }
        var out: [DenseBlock] = []
        out.reserveCapacity(n)
        for i in 0..<n {
            guard let b = p[i]?.pointee else { continue }
            out.append(DenseBlock(tableID: b.table_id, offset: b.offset, count: b.count, values: floats(b.values, b.n_values)))
        }
        return out
    }

    private static func specs(_ p: UnsafeMutablePointer<UnsafeMutablePointer<Sceneps__TableSpec>?>?, _ n: Int,
                              _ bad: (String) -> WireDecodingError) throws(WireDecodingError) -> [TableSpec] {
        guard n > 0, let p else { return [] }
        var out: [TableSpec] = []
        out.reserveCapacity(n)
        for i in 0..<n {
            guard let s = p[i]?.pointee else { throw bad("null table spec") }
            let name = string(s.name)
            guard let kind = TableKind(rawValue: s.kind.rawValue) else {
                throw bad("table \(s.id) '\(name)': unknown table kind \(s.kind.rawValue)")
            }
            guard let initKind = InitKind(rawValue: s.`init`.rawValue) else {
                throw bad("table \(s.id) '\(name)': unknown initialiser \(s.`init`.rawValue)")
            }
            var adam = AdamConfig(learningRate: 0, beta1: 0, beta2: 0, epsilon: 0, l2: 0)
            if let a = s.adam?.pointee {
                adam = AdamConfig(learningRate: a.learning_rate, beta1: a.beta1, beta2: a.beta2, epsilon: a.epsilon, l2: a.l2)
            }
            out.append(TableSpec(id: s.id, name: name, kind: kind, dim: s.dim, denseSize: s.dense_size,
                                 initKind: initKind, initScale: s.init_scale, seed: s.seed,
                                 frozen: s.frozen != 0, adam: adam, initFile: string(s.init_file)))
        }
        return out
    }
}

/// `strdup`ed C strings that live as long as this object (one encode call).
final class CStrings {
    private var owned: [UnsafeMutablePointer<CChar>] = []
    func dup(_ s: String) -> UnsafeMutablePointer<CChar> {
        guard let p = strdup(s) else { fatalError("out of memory") }
        owned.append(p)
        return p
    }
    deinit { for p in owned { free(p) } }
}

extension WireCodec {
    /// Reads `version` and `request_id` from the start of a frame without
    /// decoding it (protobuf-c writes fields in number order), so a reply to
    /// an oversized frame can still carry the request id. Zero when absent.
    public static func peekHeader(_ bytes: UnsafeRawBufferPointer) -> (version: UInt32, requestID: UInt64) {
        var i = 0
        func varint() -> UInt64? {
            var x: UInt64 = 0, shift: UInt64 = 0
            while i < bytes.count && shift < 64 {
                let b = bytes[i]; i += 1
                x |= UInt64(b & 0x7F) << shift
                if b & 0x80 == 0 { return x }
                shift += 7
            }
            return nil
        }
        var version: UInt32 = 0, id: UInt64 = 0
        for _ in 0..<2 {
            guard i < bytes.count else { break }
            let tag = bytes[i]
            if tag == 0x08 { i += 1; guard let v = varint() else { break }; version = UInt32(truncatingIfNeeded: v) }
            else if tag == 0x10 { i += 1; guard let v = varint() else { break }; id = v }
            else { break }
        }
        return (version, id)
    }
}
