import ScenePSWire

// The encoder/decoder pair of each coordinator message
// (CoordinatorMessages.swift), in the order of that file; see
// Messages+Wire.swift for the pattern and WireCodec.swift for the envelope.

// MARK: Register

extension Register: WireMessage {
    static var bodyCase: Sceneps__Envelope__BodyCase { SCENEPS__ENVELOPE__BODY_REGISTER }
    static func place(_ c: UnsafeMutablePointer<Sceneps__Register>, in e: inout Sceneps__Envelope) { e.register_ = c }
    static func field(of e: Sceneps__Envelope) -> UnsafeMutablePointer<Sceneps__Register>? { e.register_ }
    func withC<R>(_ strings: CStrings, _ body: (inout Sceneps__Register) -> R) -> R {
        var c = Sceneps__Register()
        sceneps__register__init(&c)
        c.name = strings.dup(name)
        c.scene = strings.dup(scene)
        c.incarnation = strings.dup(incarnation)
        return body(&c)
    }
    init(c: Sceneps__Register, _ wire: WireDecoding) {
        self.init(name: WireC.string(c.name), scene: WireC.string(c.scene), incarnation: WireC.string(c.incarnation))
    }
    var body: Body { .register(self) }
}

// MARK: RegisterReply

extension RegisterReply: WireMessage {
    static var bodyCase: Sceneps__Envelope__BodyCase { SCENEPS__ENVELOPE__BODY_REGISTER_REPLY }
    static func place(_ c: UnsafeMutablePointer<Sceneps__RegisterReply>, in e: inout Sceneps__Envelope) { e.register_reply = c }
    static func field(of e: Sceneps__Envelope) -> UnsafeMutablePointer<Sceneps__RegisterReply>? { e.register_reply }
    func withC<R>(_ strings: CStrings, _ body: (inout Sceneps__RegisterReply) -> R) -> R {
        var c = Sceneps__RegisterReply()
        sceneps__register_reply__init(&c)
        c.member_id = memberID
        c.heartbeat_ms = heartbeatMs
        c.dead_after_ms = deadAfterMs
        let ptrs = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: max(servers.count, 1))
        defer { ptrs.deallocate() }
        for (i, e) in servers.enumerated() { ptrs[i] = strings.dup(e) }
        c.n_servers = servers.count
        c.servers = ptrs
        return body(&c)
    }
    init(c: Sceneps__RegisterReply, _ wire: WireDecoding) {
        var servers: [String] = []
        for i in 0..<c.n_servers { servers.append(WireC.string(c.servers[i])) }
        self.init(memberID: c.member_id, servers: servers, heartbeatMs: c.heartbeat_ms, deadAfterMs: c.dead_after_ms)
    }
    var body: Body { .registerReply(self) }
}

// MARK: LeaseRequest

extension LeaseRequest: WireMessage {
    static var bodyCase: Sceneps__Envelope__BodyCase { SCENEPS__ENVELOPE__BODY_LEASE_REQUEST }
    static func place(_ c: UnsafeMutablePointer<Sceneps__LeaseRequest>, in e: inout Sceneps__Envelope) { e.lease_request = c }
    static func field(of e: Sceneps__Envelope) -> UnsafeMutablePointer<Sceneps__LeaseRequest>? { e.lease_request }
    func withC<R>(_ strings: CStrings, _ body: (inout Sceneps__LeaseRequest) -> R) -> R {
        var c = Sceneps__LeaseRequest()
        sceneps__lease_request__init(&c)
        c.member_id = memberID
        c.done_lease = doneLease
        c.done_examples = doneExamples
        c.done_steps = doneSteps
        c.done_seconds = doneSeconds
        c.done_loss = doneLoss
        return body(&c)
    }
    init(c: Sceneps__LeaseRequest, _ wire: WireDecoding) {
        self.init(memberID: c.member_id, doneLease: c.done_lease, doneExamples: c.done_examples,
                  doneSteps: c.done_steps, doneSeconds: c.done_seconds, doneLoss: c.done_loss)
    }
    var body: Body { .leaseRequest(self) }
}

// MARK: LeaseReply

extension LeaseReply: WireMessage {
    static var bodyCase: Sceneps__Envelope__BodyCase { SCENEPS__ENVELOPE__BODY_LEASE_REPLY }
    static func place(_ c: UnsafeMutablePointer<Sceneps__LeaseReply>, in e: inout Sceneps__Envelope) { e.lease_reply = c }
    static func field(of e: Sceneps__Envelope) -> UnsafeMutablePointer<Sceneps__LeaseReply>? { e.lease_reply }
    func withC<R>(_ strings: CStrings, _ body: (inout Sceneps__LeaseReply) -> R) -> R {
        var c = Sceneps__LeaseReply()
        sceneps__lease_reply__init(&c)
        c.kind = Sceneps__LeaseKind(rawValue: kind.rawValue)
        c.lease_id = leaseID
        c.epoch = epoch
        c.scene = strings.dup(scene)
        c.chunk_file = strings.dup(chunkFile)
        c.chunk_index = chunkIndex
        c.chunk_examples = chunkExamples
        c.scene_examples_before = sceneExamplesBefore
        c.scene_epoch_examples = sceneEpochExamples
        c.lr_level = lrLevel
        c.wait_ms = waitMs
        c.reason = strings.dup(reason)
        c.done_accepted = doneAccepted ? 1 : 0
        return body(&c)
    }
    init(c: Sceneps__LeaseReply, _ wire: WireDecoding) throws(WireDecodingError) {
        guard let kind = LeaseKind(rawValue: c.kind.rawValue) else { throw wire.bad("lease kind \(c.kind.rawValue) is not known") }
        self.init(kind: kind)
        leaseID = c.lease_id
        epoch = c.epoch
        scene = WireC.string(c.scene)
        chunkFile = WireC.string(c.chunk_file)
        chunkIndex = c.chunk_index
        chunkExamples = c.chunk_examples
        sceneExamplesBefore = c.scene_examples_before
        sceneEpochExamples = c.scene_epoch_examples
        lrLevel = c.lr_level
        waitMs = c.wait_ms
        reason = WireC.string(c.reason)
        doneAccepted = c.done_accepted != 0
    }
    var body: Body { .leaseReply(self) }
}

// MARK: MemberBeat

extension MemberBeat: WireMessage {
    static var bodyCase: Sceneps__Envelope__BodyCase { SCENEPS__ENVELOPE__BODY_MEMBER_BEAT }
    static func place(_ c: UnsafeMutablePointer<Sceneps__MemberBeat>, in e: inout Sceneps__Envelope) { e.member_beat = c }
    static func field(of e: Sceneps__Envelope) -> UnsafeMutablePointer<Sceneps__MemberBeat>? { e.member_beat }
    func withC<R>(_ strings: CStrings, _ body: (inout Sceneps__MemberBeat) -> R) -> R {
        var c = Sceneps__MemberBeat()
        sceneps__member_beat__init(&c)
        c.member_id = memberID
        c.lease_id = leaseID
        c.lease_examples = leaseExamples
        return body(&c)
    }
    init(c: Sceneps__MemberBeat, _ wire: WireDecoding) {
        self.init(memberID: c.member_id, leaseID: c.lease_id, leaseExamples: c.lease_examples)
    }
    var body: Body { .memberBeat(self) }
}

// MARK: MemberBeatReply

extension MemberBeatReply: WireMessage {
    static var bodyCase: Sceneps__Envelope__BodyCase { SCENEPS__ENVELOPE__BODY_MEMBER_BEAT_REPLY }
    static func place(_ c: UnsafeMutablePointer<Sceneps__MemberBeatReply>, in e: inout Sceneps__Envelope) { e.member_beat_reply = c }
    static func field(of e: Sceneps__Envelope) -> UnsafeMutablePointer<Sceneps__MemberBeatReply>? { e.member_beat_reply }
    func withC<R>(_ strings: CStrings, _ body: (inout Sceneps__MemberBeatReply) -> R) -> R {
        var c = Sceneps__MemberBeatReply()
        sceneps__member_beat_reply__init(&c)
        c.scene_progress = sceneProgress
        c.min_progress = minProgress
        c.lease_valid = leaseValid ? 1 : 0
        return body(&c)
    }
    init(c: Sceneps__MemberBeatReply, _ wire: WireDecoding) {
        self.init(sceneProgress: c.scene_progress, minProgress: c.min_progress, leaseValid: c.lease_valid != 0)
    }
    var body: Body { .memberBeatReply(self) }
}

// MARK: ScaleRequest

extension ScaleRequest: WireMessage {
    static var bodyCase: Sceneps__Envelope__BodyCase { SCENEPS__ENVELOPE__BODY_SCALE }
    static func place(_ c: UnsafeMutablePointer<Sceneps__Scale>, in e: inout Sceneps__Envelope) { e.scale = c }
    static func field(of e: Sceneps__Envelope) -> UnsafeMutablePointer<Sceneps__Scale>? { e.scale }
    func withC<R>(_ strings: CStrings, _ body: (inout Sceneps__Scale) -> R) -> R {
        var c = Sceneps__Scale()
        sceneps__scale__init(&c)
        c.scene = strings.dup(scene)
        c.workers = workers
        return body(&c)
    }
    init(c: Sceneps__Scale, _ wire: WireDecoding) {
        self.init(scene: WireC.string(c.scene), workers: c.workers)
    }
    var body: Body { .scale(self) }
}

// MARK: LeaveRequest

extension LeaveRequest: WireMessage {
    static var bodyCase: Sceneps__Envelope__BodyCase { SCENEPS__ENVELOPE__BODY_LEAVE }
    static func place(_ c: UnsafeMutablePointer<Sceneps__Leave>, in e: inout Sceneps__Envelope) { e.leave = c }
    static func field(of e: Sceneps__Envelope) -> UnsafeMutablePointer<Sceneps__Leave>? { e.leave }
    func withC<R>(_ strings: CStrings, _ body: (inout Sceneps__Leave) -> R) -> R {
        var c = Sceneps__Leave()
        sceneps__leave__init(&c)
        c.member_id = memberID
        c.reason = strings.dup(reason)
        return body(&c)
    }
    init(c: Sceneps__Leave, _ wire: WireDecoding) {
        self.init(memberID: c.member_id, reason: WireC.string(c.reason))
    }
    var body: Body { .leave(self) }
}

// MARK: Status request and reply

struct StatusRequestMessage: WireMessage {
    static var bodyCase: Sceneps__Envelope__BodyCase { SCENEPS__ENVELOPE__BODY_STATUS_REQUEST }
    static func place(_ c: UnsafeMutablePointer<Sceneps__StatusRequest>, in e: inout Sceneps__Envelope) { e.status_request = c }
    static func field(of e: Sceneps__Envelope) -> UnsafeMutablePointer<Sceneps__StatusRequest>? { e.status_request }
    func withC<R>(_ strings: CStrings, _ body: (inout Sceneps__StatusRequest) -> R) -> R {
        var c = Sceneps__StatusRequest()
        sceneps__status_request__init(&c)
        return body(&c)
    }
    init() {}
    init(c: Sceneps__StatusRequest, _ wire: WireDecoding) {}
    var body: Body { .status }
}

extension StatusReply: WireMessage {
    static var bodyCase: Sceneps__Envelope__BodyCase { SCENEPS__ENVELOPE__BODY_STATUS_REPLY }
    static func place(_ c: UnsafeMutablePointer<Sceneps__StatusReply>, in e: inout Sceneps__Envelope) { e.status_reply = c }
    static func field(of e: Sceneps__Envelope) -> UnsafeMutablePointer<Sceneps__StatusReply>? { e.status_reply }
    func withC<R>(_ strings: CStrings, _ body: (inout Sceneps__StatusReply) -> R) -> R {
        var c = Sceneps__StatusReply()
        sceneps__status_reply__init(&c)
        c.epoch = epoch
        c.phase = strings.dup(phase)
        c.message = strings.dup(message)
        return WireC.withRepeated(scenes.count, { i in
            let x = scenes[i]
            var t = Sceneps__SceneStatus()
            sceneps__scene_status__init(&t)
            t.name = strings.dup(x.name)
            t.target = x.target
            t.live_workers = x.liveWorkers
            t.chunks = x.chunks
            t.chunks_done = x.chunksDone
            t.chunks_leased = x.chunksLeased
            t.waiting = x.waiting ? 1 : 0
            return t
        }) { scenePtrs in
            WireC.withRepeated(members.count, { i in
                let x = members[i]
                var t = Sceneps__MemberStatus()
                sceneps__member_status__init(&t)
                t.member_id = x.memberID
                t.name = strings.dup(x.name)
                t.scene = strings.dup(x.scene)
                t.retiring = x.retiring ? 1 : 0
                t.silent_seconds = x.silentSeconds
                t.lease_id = x.leaseID
                return t
            }) { memberPtrs in
                c.n_scenes = scenes.count
                c.scenes = scenePtrs
                c.n_members = members.count
                c.members = memberPtrs
                return body(&c)
            }
        }
    }
    init(c: Sceneps__StatusReply, _ wire: WireDecoding) throws(WireDecodingError) {
        let scenes = try WireC.repeated(c.scenes, c.n_scenes, "scene status", wire) { t in
            SceneStatus(name: WireC.string(t.name), target: t.target, liveWorkers: t.live_workers, chunks: t.chunks,
                        chunksDone: t.chunks_done, chunksLeased: t.chunks_leased, waiting: t.waiting != 0)
        }
        let members = try WireC.repeated(c.members, c.n_members, "member status", wire) { t in
            MemberStatus(memberID: t.member_id, name: WireC.string(t.name), scene: WireC.string(t.scene),
                         retiring: t.retiring != 0, silentSeconds: t.silent_seconds, leaseID: t.lease_id)
        }
        self.init(epoch: c.epoch, phase: WireC.string(c.phase), scenes: scenes, members: members, message: WireC.string(c.message))
    }
    var body: Body { .statusReply(self) }
}

// MARK: CoordinatorCheckpointRequest

extension CoordinatorCheckpointRequest: WireMessage {
    static var bodyCase: Sceneps__Envelope__BodyCase { SCENEPS__ENVELOPE__BODY_COORDINATOR_CHECKPOINT }
    static func place(_ c: UnsafeMutablePointer<Sceneps__CoordinatorCheckpoint>, in e: inout Sceneps__Envelope) {
        e.coordinator_checkpoint = c
    }
    static func field(of e: Sceneps__Envelope) -> UnsafeMutablePointer<Sceneps__CoordinatorCheckpoint>? { e.coordinator_checkpoint }
    func withC<R>(_ strings: CStrings, _ body: (inout Sceneps__CoordinatorCheckpoint) -> R) -> R {
        var c = Sceneps__CoordinatorCheckpoint()
        sceneps__coordinator_checkpoint__init(&c)
        c.ticket = ticket
        c.tags = strings.dup(tags)
        return body(&c)
    }
    init(c: Sceneps__CoordinatorCheckpoint, _ wire: WireDecoding) {
        self.init(ticket: c.ticket, tags: WireC.string(c.tags))
    }
    var body: Body { .coordinatorCheckpoint(self) }
}

// MARK: CoordinatorCheckpointReply

extension CoordinatorCheckpointReply: WireMessage {
    static var bodyCase: Sceneps__Envelope__BodyCase { SCENEPS__ENVELOPE__BODY_COORDINATOR_CHECKPOINT_REPLY }
    static func place(_ c: UnsafeMutablePointer<Sceneps__CoordinatorCheckpointReply>, in e: inout Sceneps__Envelope) {
        e.coordinator_checkpoint_reply = c
    }
    static func field(of e: Sceneps__Envelope) -> UnsafeMutablePointer<Sceneps__CoordinatorCheckpointReply>? {
        e.coordinator_checkpoint_reply
    }
    func withC<R>(_ strings: CStrings, _ body: (inout Sceneps__CoordinatorCheckpointReply) -> R) -> R {
        var c = Sceneps__CoordinatorCheckpointReply()
        sceneps__coordinator_checkpoint_reply__init(&c)
        c.state = Sceneps__CoordinatorCheckpointState(rawValue: state.rawValue)
        c.ticket = ticket
        c.name = strings.dup(name)
        c.path = strings.dup(path)
        c.epoch = epoch
        c.chunks_done = chunksDone
        c.push_stall_ms = pushStallMs
        c.bytes = bytes
        c.seconds = seconds
        c.message = strings.dup(message)
        return body(&c)
    }
    init(c: Sceneps__CoordinatorCheckpointReply, _ wire: WireDecoding) throws(WireDecodingError) {
        guard let state = State(rawValue: c.state.rawValue) else {
            throw wire.bad("coordinator checkpoint state \(c.state.rawValue) is unknown")
        }
        self.init(state: state, ticket: c.ticket)
        name = WireC.string(c.name)
        path = WireC.string(c.path)
        epoch = c.epoch
        chunksDone = c.chunks_done
        pushStallMs = c.push_stall_ms
        bytes = c.bytes
        seconds = c.seconds
        message = WireC.string(c.message)
    }
    var body: Body { .coordinatorCheckpointReply(self) }
}

// MARK: RecoveryRequest

extension RecoveryRequest: WireMessage {
    static var bodyCase: Sceneps__Envelope__BodyCase { SCENEPS__ENVELOPE__BODY_RECOVERY }
    static func place(_ c: UnsafeMutablePointer<Sceneps__Recovery>, in e: inout Sceneps__Envelope) { e.recovery = c }
    static func field(of e: Sceneps__Envelope) -> UnsafeMutablePointer<Sceneps__Recovery>? { e.recovery }
    func withC<R>(_ strings: CStrings, _ body: (inout Sceneps__Recovery) -> R) -> R {
        var c = Sceneps__Recovery()
        sceneps__recovery__init(&c)
        c.action = Sceneps__RecoveryAction(rawValue: action.rawValue)
        c.checkpoint = strings.dup(checkpoint)
        c.reason = strings.dup(reason)
        return body(&c)
    }
    init(c: Sceneps__Recovery, _ wire: WireDecoding) throws(WireDecodingError) {
        guard let action = Action(rawValue: c.action.rawValue) else {
            throw wire.bad("recovery action \(c.action.rawValue) is not begin (0), rewind (1) or abort (2)")
        }
        self.init(action: action, checkpoint: WireC.string(c.checkpoint), reason: WireC.string(c.reason))
    }
    var body: Body { .recovery(self) }
}

// MARK: RecoveryReply

extension RecoveryReply: WireMessage {
    static var bodyCase: Sceneps__Envelope__BodyCase { SCENEPS__ENVELOPE__BODY_RECOVERY_REPLY }
    static func place(_ c: UnsafeMutablePointer<Sceneps__RecoveryReply>, in e: inout Sceneps__Envelope) { e.recovery_reply = c }
    static func field(of e: Sceneps__Envelope) -> UnsafeMutablePointer<Sceneps__RecoveryReply>? { e.recovery_reply }
    func withC<R>(_ strings: CStrings, _ body: (inout Sceneps__RecoveryReply) -> R) -> R {
        var c = Sceneps__RecoveryReply()
        sceneps__recovery_reply__init(&c)
        c.checkpointing = checkpointing ? 1 : 0
        c.epoch_from = epochFrom
        c.epoch_to = epochTo
        c.chunks_undone = chunksUndone
        c.examples_undone = examplesUndone
        c.leases_released = leasesReleased
        c.message = strings.dup(message)
        return body(&c)
    }
    init(c: Sceneps__RecoveryReply, _ wire: WireDecoding) {
        self.init()
        checkpointing = c.checkpointing != 0
        epochFrom = c.epoch_from
        epochTo = c.epoch_to
        chunksUndone = c.chunks_undone
        examplesUndone = c.examples_undone
        leasesReleased = c.leases_released
        message = WireC.string(c.message)
    }
    var body: Body { .recoveryReply(self) }
}
