import ScenePSWire
import ScenePSCore
#if canImport(Glibc)
import Glibc
#endif

/// Envelope ⇄ protobuf-c bytes.
///
/// Each message type converts itself (`WireMessage`, in Messages+Wire.swift
/// and CoordinatorMessages+Wire.swift); this file owns only the envelope, the
/// dispatch on its `body` oneof and the helpers several messages share.
///
/// Encoding builds protobuf-c structs whose `keys`/`values` point straight at
/// the Swift arrays (inside `withUnsafeBufferPointer`), so the floats are
/// copied once, by `pack`, into the output buffer. Decoding unpacks with
/// protobuf-c, copies each repeated field once into a Swift array, and frees
/// the unpacked message exactly once. Structs built here are never passed to
/// `free_unpacked` (docs/ARCHITECTURE.md §7).
///
/// Adding a message: its Swift struct (Messages.swift), a `WireMessage`
/// conformance beside the others, a `Body` case, and one line in each of
/// `Body.wireMessage` and `WireCodec.messageType(of:)`; then a sample in
/// Tests/ScenePSTestSupport/WireSamples.swift and its golden line.
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
        func pack<M: WireMessage>(_ message: M) -> R {
            message.withC(strings) { c in
                withUnsafeMutablePointer(to: &c) { p in
                    msg.body_case = M.bodyCase
                    M.place(p, in: &msg)
                    // `strings` must outlive the pack: keep it alive explicitly.
                    return withExtendedLifetime(strings) { withUnsafePointer(to: &msg) { body($0) } }
                }
            }
        }
        return pack(env.body.wireMessage)
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
        let sender = WireC.string(m.sender)
        guard m.version == WireProtocol.version else {
            throw WireDecodingError(status: .versionMismatch,
                                    message: "protocol version \(m.version) is not supported (this peer speaks \(WireProtocol.version))",
                                    requestID: m.request_id, sender: sender)
        }
        let context = WireDecoding(requestID: m.request_id, sender: sender)
        guard let type = messageType(of: m.body_case) else { throw context.bad("envelope has no body") }
        let body = try type.unpackBody(from: m, context)
        return Envelope(version: m.version, requestID: m.request_id, sender: sender, body: body)
    }

    public static func decode(_ bytes: [UInt8]) throws(WireDecodingError) -> Envelope {
        let result: Result<Envelope, WireDecodingError> = bytes.withUnsafeBytes { buf in
            Result { () throws(WireDecodingError) -> Envelope in try decode(buf) }
        }
        return try result.get()
    }

    /// The message type of each case of the envelope's `body` oneof.
    static func messageType(of bodyCase: Sceneps__Envelope__BodyCase) -> (any WireMessage.Type)? {
        switch bodyCase {
        case Hello.bodyCase: return Hello.self
        case HelloReply.bodyCase: return HelloReply.self
        case DeclareTables.bodyCase: return DeclareTables.self
        case PullRequestMessage.bodyCase: return PullRequestMessage.self
        case PullReplyMessage.bodyCase: return PullReplyMessage.self
        case PushRequestMessage.bodyCase: return PushRequestMessage.self
        case Ack.bodyCase: return Ack.self
        case ErrorReply.bodyCase: return ErrorReply.self
        case StatsRequestMessage.bodyCase: return StatsRequestMessage.self
        case StatsReply.bodyCase: return StatsReply.self
        case Heartbeat.bodyCase: return Heartbeat.self
        case ShutdownMessage.bodyCase: return ShutdownMessage.self
        case SnapshotRequest.bodyCase: return SnapshotRequest.self
        case CheckpointRequest.bodyCase: return CheckpointRequest.self
        case CheckpointReply.bodyCase: return CheckpointReply.self
        case Register.bodyCase: return Register.self
        case RegisterReply.bodyCase: return RegisterReply.self
        case LeaseRequest.bodyCase: return LeaseRequest.self
        case LeaseReply.bodyCase: return LeaseReply.self
        case MemberBeat.bodyCase: return MemberBeat.self
        case MemberBeatReply.bodyCase: return MemberBeatReply.self
        case ScaleRequest.bodyCase: return ScaleRequest.self
        case LeaveRequest.bodyCase: return LeaveRequest.self
        case StatusRequestMessage.bodyCase: return StatusRequestMessage.self
        case StatusReply.bodyCase: return StatusReply.self
        case CoordinatorCheckpointRequest.bodyCase: return CoordinatorCheckpointRequest.self
        case CoordinatorCheckpointReply.bodyCase: return CoordinatorCheckpointReply.self
        case RecoveryRequest.bodyCase: return RecoveryRequest.self
        case RecoveryReply.bodyCase: return RecoveryReply.self
        default: return nil
        }
    }
}

/// One message of the envelope's `body` oneof: its protobuf-c struct, the
/// oneof case and field it travels in, and its encoder/decoder pair.
protocol WireMessage: Sendable {
    associatedtype C
    /// The envelope's `body_case` for this message.
    static var bodyCase: Sceneps__Envelope__BodyCase { get }
    /// Points the envelope's oneof field for this message at `c`.
    static func place(_ c: UnsafeMutablePointer<C>, in envelope: inout Sceneps__Envelope)
    /// The oneof field of an unpacked envelope whose `body_case` is `bodyCase`.
    static func field(of envelope: Sceneps__Envelope) -> UnsafeMutablePointer<C>?
    /// Builds the C struct, pointing into this value's arrays and into
    /// `strings`; it is valid only while `body` runs.
    func withC<R>(_ strings: CStrings, _ body: (inout C) -> R) -> R
    /// Copies an unpacked C struct out; throws for a value this version does
    /// not know (an enum) or a malformed repeated field.
    init(c: C, _ wire: WireDecoding) throws(WireDecodingError)
    /// This message as an envelope body.
    var body: Body { get }
}

extension WireMessage {
    static func unpackBody(from envelope: Sceneps__Envelope, _ wire: WireDecoding) throws(WireDecodingError) -> Body {
        guard let p = field(of: envelope) else { throw wire.bad("envelope body \(bodyCase.rawValue) is null") }
        return try Self(c: p.pointee, wire).body
    }
}

extension Body {
    /// The message this body carries, as the codec packs it.
    var wireMessage: any WireMessage {
        switch self {
        case .hello(let m): return m
        case .helloReply(let m): return m
        case .declare(let m): return m
        case .pull(let b): return PullRequestMessage(blocks: b)
        case .pullReply(let b): return PullReplyMessage(blocks: b)
        case .push(let b): return PushRequestMessage(blocks: b)
        case .ack(let m): return m
        case .error(let m): return m
        case .stats: return StatsRequestMessage()
        case .statsReply(let m): return m
        case .heartbeat(let m): return m
        case .shutdown(let reason): return ShutdownMessage(reason: reason)
        case .snapshot(let m): return m
        case .register(let m): return m
        case .registerReply(let m): return m
        case .leaseRequest(let m): return m
        case .leaseReply(let m): return m
        case .memberBeat(let m): return m
        case .memberBeatReply(let m): return m
        case .scale(let m): return m
        case .leave(let m): return m
        case .status: return StatusRequestMessage()
        case .statusReply(let m): return m
        case .checkpoint(let m): return m
        case .checkpointReply(let m): return m
        case .coordinatorCheckpoint(let m): return m
        case .coordinatorCheckpointReply(let m): return m
        case .recovery(let m): return m
        case .recoveryReply(let m): return m
        }
    }
}

/// What a decoder needs to name a bad frame: the request id and sender.
struct WireDecoding {
    let requestID: UInt64
    let sender: String
    func bad(_ what: String) -> WireDecodingError {
        WireDecodingError(status: .badRequest, message: what, requestID: requestID, sender: sender)
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

/// The parts several messages share: strings, the float-block fast path,
/// table specs and table stats, each as an encoder beside its decoder.
enum WireC {
    static func string(_ p: UnsafeMutablePointer<CChar>?) -> String {
        guard let p else { return "" }
        return String(cString: p)
    }

    static func floats(_ p: UnsafeMutablePointer<Float>?, _ n: Int) -> [Float] {
        guard n > 0, let p else { return [] }
        return Array(UnsafeBufferPointer(start: p, count: n))
    }

    /// A C array of `n` structs built by `make`, and the array of pointers
    /// to them protobuf-c wants for a repeated message field; nil when empty.
    static func withRepeated<T, R>(_ n: Int, _ make: (Int) -> T,
                                   _ body: (UnsafeMutablePointer<UnsafeMutablePointer<T>?>?) -> R) -> R {
        if n == 0 { return body(nil) }
        let structs = UnsafeMutablePointer<T>.allocate(capacity: n)
        let ptrs = UnsafeMutablePointer<UnsafeMutablePointer<T>?>.allocate(capacity: n)
        defer { structs.deinitialize(count: n); structs.deallocate(); ptrs.deallocate() }
        for i in 0..<n {
            (structs + i).initialize(to: make(i))
            ptrs[i] = structs + i
        }
        return body(ptrs)
    }

    /// Decodes a repeated message field; a null element is a bad frame.
    static func repeated<T, U>(_ p: UnsafeMutablePointer<UnsafeMutablePointer<T>?>?, _ n: Int, _ what: String,
                               _ wire: WireDecoding, _ make: (T) throws(WireDecodingError) -> U) throws(WireDecodingError) -> [U] {
        guard n > 0, let p else { return [] }
        var out: [U] = []
        out.reserveCapacity(n)
        for i in 0..<n {
            guard let t = p[i]?.pointee else { throw wire.bad("null \(what)") }
            out.append(try make(t))
        }
        return out
    }

    // MARK: sparse and dense blocks (the float fast path)

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

    /// Sparse blocks of an unpacked message; a null element is skipped.
    static func sparseBlocks(_ p: UnsafeMutablePointer<UnsafeMutablePointer<Sceneps__SparseBlock>?>?, _ n: Int) -> [SparseBlock] {
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

    /// Dense blocks of an unpacked message; a null element is skipped.
    static func denseBlocks(_ p: UnsafeMutablePointer<UnsafeMutablePointer<Sceneps__DenseBlock>?>?, _ n: Int) -> [DenseBlock] {
        guard n > 0, let p else { return [] }
        var out: [DenseBlock] = []
        out.reserveCapacity(n)
        for i in 0..<n {
            guard let b = p[i]?.pointee else { continue }
            out.append(DenseBlock(tableID: b.table_id, offset: b.offset, count: b.count, values: floats(b.values, b.n_values)))
        }
        return out
    }

    // MARK: table specs

    static func withTableSpecs<R>(_ specs: [TableSpec], _ strings: CStrings,
                                  _ body: (UnsafeMutablePointer<UnsafeMutablePointer<Sceneps__TableSpec>?>?) -> R) -> R {
        let n = specs.count
        if n == 0 { return body(nil) }
        let adams = UnsafeMutablePointer<Sceneps__AdamConfig>.allocate(capacity: n)
        defer { adams.deallocate() }
        return withRepeated(n, { i in
            let s = specs[i]
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
            return c
        }, body)
    }

    static func tableSpecs(_ p: UnsafeMutablePointer<UnsafeMutablePointer<Sceneps__TableSpec>?>?, _ n: Int,
                           _ wire: WireDecoding) throws(WireDecodingError) -> [TableSpec] {
        try repeated(p, n, "table spec", wire) { (s: Sceneps__TableSpec) throws(WireDecodingError) -> TableSpec in
            let name = string(s.name)
            guard let kind = TableKind(rawValue: s.kind.rawValue) else {
                throw wire.bad("table \(s.id) '\(name)': unknown table kind \(s.kind.rawValue)")
            }
            guard let initKind = InitKind(rawValue: s.`init`.rawValue) else {
                throw wire.bad("table \(s.id) '\(name)': unknown initialiser \(s.`init`.rawValue)")
            }
            var adam = AdamConfig(learningRate: 0, beta1: 0, beta2: 0, epsilon: 0, l2: 0)
            if let a = s.adam?.pointee {
                adam = AdamConfig(learningRate: a.learning_rate, beta1: a.beta1, beta2: a.beta2, epsilon: a.epsilon, l2: a.l2)
            }
            return TableSpec(id: s.id, name: name, kind: kind, dim: s.dim, denseSize: s.dense_size,
                             initKind: initKind, initScale: s.init_scale, seed: s.seed,
                             frozen: s.frozen != 0, adam: adam, initFile: string(s.init_file))
        }
    }

    // MARK: table stats

    static func withTableStats<R>(_ tables: [TableStats], _ strings: CStrings,
                                  _ body: (UnsafeMutablePointer<UnsafeMutablePointer<Sceneps__TableStats>?>?) -> R) -> R {
        withRepeated(tables.count, { i in
            let t = tables[i]
            var ts = Sceneps__TableStats()
            sceneps__table_stats__init(&ts)
            ts.id = t.id
            ts.name = strings.dup(t.name)
            ts.rows = t.rows
            ts.bytes = t.bytes
            ts.pulls = t.pulls
            ts.pushes = t.pushes
            return ts
        }, body)
    }

    static func tableStats(_ p: UnsafeMutablePointer<UnsafeMutablePointer<Sceneps__TableStats>?>?, _ n: Int,
                           _ what: String, _ wire: WireDecoding) throws(WireDecodingError) -> [TableStats] {
        try repeated(p, n, what, wire) { t in
            TableStats(id: t.id, name: string(t.name), rows: t.rows, bytes: t.bytes, pulls: t.pulls, pushes: t.pushes)
        }
    }
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
