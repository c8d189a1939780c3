import ScenePSCore
import ScenePSProtocol

/// A table held by this server.
public enum ServerTable: @unchecked Sendable {
    // @unchecked: both payloads are thread-safe classes.
    case sparse(SparseTable)
    case dense(DenseTable)

    public var spec: TableSpec {
        switch self {
        case .sparse(let t): return t.spec
        case .dense(let t): return t.spec
        }
    }
}

/// The tables of one server. Tables are only ever added.
public final class TableRegistry: @unchecked Sendable {
    // @unchecked: guarded by `lock`.
    private let lock = Lock()
    private var tables: [UInt32: ServerTable] = [:]
    public let shardIndex: Int
    public let shardCount: Int
    /// Stripes per sparse table (log2).
    public let stripeBits: Int

    /// Row caps (set before serving; `RowLimits`).
    public var limits: RowLimits {
        get { lock.withLock { _limits } }
        set { lock.withLock { _limits = newValue; caps = [:] } }
    }
    private var _limits = RowLimits.unlimited
    /// Per table id, its cap on this server (nil inside: none), computed on first use.
    private var caps: [UInt32: UInt64?] = [:]

    public init(shardIndex: Int, shardCount: Int, stripeBits: Int = 4) {
        self.shardIndex = shardIndex
        self.shardCount = shardCount
        self.stripeBits = stripeBits
    }

    /// The most rows sparse table `t` may hold on this server; nil: no cap.
    /// Fixed at first use (the model's tables are declared together).
    public func rowCap(_ t: SparseTable) -> UInt64? {
        lock.withLock {
            if let c = caps[t.spec.id] { return c }
            let sparse = tables.values.filter { if case .sparse = $0 { return true } else { return false } }.count
            let c = _limits.perServerCap(t.spec, shards: shardCount, sparseTables: sparse, stateWidth: t.optimizer.stateWidth)
            caps[t.spec.id] = .some(c)
            return c
        }
    }

    public func table(_ id: UInt32) -> ServerTable? { lock.withLock { tables[id] } }
    public func all() -> [ServerTable] { lock.withLock { tables.values.sorted { $0.spec.id < $1.spec.id } } }

    public func denseRange(_ spec: TableSpec) -> Range<Int> {
        Sharding.denseRange(size: Int(spec.denseSize), server: shardIndex, servers: shardCount)
    }

    /// Validates a whole declaration and then creates the new tables, under
    /// one lock so concurrent declarations cannot interleave.
    /// Returns an error reply, or nil on success.
    func declare(_ d: DeclareTables) -> ErrorReply? {
        lock.withLock {
            var seen = Set<UInt32>()
            for s in d.tables {
                if let e = TableRegistry.validate(s) { return e }
                guard seen.insert(s.id).inserted else {
                    return ErrorReply(status: .badRequest, message: "table id \(s.id) declared twice in one request")
                }
                if let existing = tables[s.id]?.spec {
                    if existing.kind != s.kind || existing.dim != s.dim || existing.denseSize != s.denseSize {
                        return ErrorReply(status: .conflict, message:
                            "table \(s.id) '\(s.name)' declared as \(s.kind) dim=\(s.dim) size=\(s.denseSize) but exists as \(existing.kind) '\(existing.name)' dim=\(existing.dim) size=\(existing.denseSize)")
                    }
                    if let field = TableRegistry.firstDifference(existing, s) {
                        return ErrorReply(status: .conflict, message:
                            "table \(s.id) '\(existing.name)' exists with \(field.name) \(field.existing); this declaration has \(field.declared) (a worker with another config would train it under other rules)")
                    }
                } else if let clash = tables.values.first(where: { $0.spec.name == s.name && !s.name.isEmpty }) {
                    return ErrorReply(status: .conflict, message:
                        "table name '\(s.name)' is already used by table \(clash.spec.id), not \(s.id)")
                }
            }
            var initial: [UInt32: [Float]] = [:]
            for b in d.initial {
                guard let s = d.tables.first(where: { $0.id == b.tableID }), s.kind == .dense else {
                    return ErrorReply(status: .unknownTable, message: "initial values for table \(b.tableID), which is not a dense table of this declaration")
                }
                let r = denseRange(s)
                guard b.offset == UInt64(r.lowerBound), b.count == UInt64(r.count), b.values.count == r.count else {
                    return ErrorReply(status: .wrongDimension, message:
                        "initial values of dense table \(s.id) '\(s.name)' must be this server's slice [\(r.lowerBound), \(r.upperBound)) with \(r.count) values; got offset \(b.offset) count \(b.count) with \(b.values.count) values")
                }
                if !allFinite(b.values) {
                    return ErrorReply(status: .nonFinite, message: "initial values of dense table \(s.id) '\(s.name)' contain NaN or Inf")
                }
                initial[b.tableID] = b.values
            }
            // Initial rows from files, all read before any table is created.
            var files: [UInt32: InitialRows] = [:]
            for s in d.tables where tables[s.id] == nil && !s.initFile.isEmpty {
                do {
                    files[s.id] = try InitialRows(directory: s.initFile, dim: Int(s.dim))
                } catch {
                    return ErrorReply(status: .badRequest, message:
                        "table \(s.id) '\(s.name)': cannot load its initial rows: \(error)")
                }
            }
            for s in d.tables where tables[s.id] == nil {
                switch s.kind {
                case .sparse:
                    tables[s.id] = .sparse(SparseTable(spec: s, optimizer: Optimizers.make(for: s), stripeBits: stripeBits,
                                                       initialRows: files[s.id]))
                case .dense:
                    tables[s.id] = .dense(DenseTable(spec: s, range: denseRange(s), optimizer: Optimizers.make(for: s), initial: initial[s.id]))
                }
            }
            return nil
        }
    }

    /// Adds (or replaces) `list`: a checkpoint restore's tables.
    func replaceAll(_ list: [ServerTable]) {
        lock.withLock { for t in list { tables[t.spec.id] = t } }
    }

    /// A copy of one table (`SparseTable.snapshot`, `DenseTable.snapshot`).
    enum TableSnapshot {
        case sparse(SparseTableSnapshot)
        case dense(weights: [Float], state: [Float], step: UInt32)
    }
    private var snapshots: [String: [UInt32: TableSnapshot]] = [:]

    /// Keeps a copy of every table under `name` (replacing an older one of
    /// that name). Returns the sparse rows copied.
    func saveSnapshot(_ name: String) -> UInt64 {
        let current = all()
        var copy: [UInt32: TableSnapshot] = [:]
        var rows: UInt64 = 0
        for t in current {
            switch t {
            case .sparse(let s):
                let snap = s.snapshot()
                rows += UInt64(snap.rows)
                copy[s.spec.id] = .sparse(snap)
            case .dense(let d):
                let (w, st, step) = d.snapshot()
                copy[d.spec.id] = .dense(weights: w, state: st, step: step)
            }
        }
        lock.withLock { snapshots[name] = copy }
        return rows
    }

    /// Puts every table back as snapshot `name` holds it. Tables declared
    /// after it are left as they are. Returns the sparse rows restored, or an
    /// error reply when no snapshot has that name.
    func restoreSnapshot(_ name: String) -> Result<UInt64, ErrorReply> {
        guard let copy = lock.withLock({ snapshots[name] }) else {
            let known = lock.withLock { snapshots.keys.sorted() }
            return .failure(ErrorReply(status: .badRequest, message:
                "no snapshot named '\(name)' on this server (it has: \(known.isEmpty ? "none" : known.joined(separator: ", ")))"))
        }
        var rows: UInt64 = 0
        for t in all() {
            switch (t, copy[t.spec.id]) {
            case (.sparse(let s), .sparse(let snap)?):
                s.restore(snap)
                rows += UInt64(snap.rows)
            case (.dense(let d), .dense(let w, let st, let step)?):
                d.restore(weights: w, state: st, step: step)
            default:
                continue
            }
        }
        return .success(rows)
    }

    /// The first setting that changes results (initial values, optimiser,
    /// frozen) in which a re-declaration differs from the existing table. A
    /// second worker whose config differs is refused rather than silently
    /// training the same rows under other rules; the name is not compared.
    static func firstDifference(_ a: TableSpec, _ b: TableSpec) -> (name: String, existing: String, declared: String)? {
        let fields: [(String, String, String)] = [
            ("init", "\(a.initKind)", "\(b.initKind)"),
            ("init_scale", "\(a.initScale)", "\(b.initScale)"),
            ("seed", "\(a.seed)", "\(b.seed)"),
            ("frozen", "\(a.frozen)", "\(b.frozen)"),
            ("init_file", a.initFile, b.initFile),
            ("learning_rate", "\(a.adam.learningRate)", "\(b.adam.learningRate)"),
            ("beta1", "\(a.adam.beta1)", "\(b.adam.beta1)"),
            ("beta2", "\(a.adam.beta2)", "\(b.adam.beta2)"),
            ("epsilon", "\(a.adam.epsilon)", "\(b.adam.epsilon)"),
            ("l2", "\(a.adam.l2)", "\(b.adam.l2)"),
        ]
        return fields.first { $0.1 != $0.2 }.map { (name: $0.0, existing: $0.1, declared: $0.2) }
    }

    static func validate(_ s: TableSpec) -> ErrorReply? {
        func bad(_ what: String) -> ErrorReply {
            ErrorReply(status: .badRequest, message: "table \(s.id) '\(s.name)': \(what)")
        }
        switch s.kind {
        case .sparse:
            if s.dim == 0 || s.dim > 1 << 16 { return bad("sparse dim must be in 1...65536, got \(s.dim)") }
            if s.denseSize != 0 { return bad("sparse table has dense_size \(s.denseSize), expected 0") }
        case .dense where !s.initFile.isEmpty:
            return bad("init_file is for sparse tables only")
        case .dense:
            if s.dim != 1 { return bad("dense table must have dim 1, got \(s.dim)") }
            if s.denseSize == 0 || s.denseSize > 1 << 34 { return bad("dense_size must be in 1...2^34, got \(s.denseSize)") }
        }
        let a = s.adam
        if !(a.learningRate.isFinite && a.learningRate >= 0) { return bad("learning_rate must be finite and >= 0, got \(a.learningRate)") }
        if !(a.beta1 >= 0 && a.beta1 < 1) { return bad("beta1 must be in [0, 1), got \(a.beta1)") }
        if !(a.beta2 >= 0 && a.beta2 < 1) { return bad("beta2 must be in [0, 1), got \(a.beta2)") }
        if !(a.epsilon.isFinite && a.epsilon > 0) { return bad("epsilon must be finite and > 0, got \(a.epsilon)") }
        if !(a.l2.isFinite && a.l2 >= 0) { return bad("l2 must be finite and >= 0, got \(a.l2)") }
        if !(s.initScale.isFinite && s.initScale >= 0) { return bad("init_scale must be finite and >= 0, got \(s.initScale)") }
        return nil
    }
}

/// True when no value is NaN or ±Inf: those have an all-ones exponent, and
/// adding 1 to such an exponent carries into bit 31. An integer OR reduction
/// vectorises, unlike a float sum.
@inline(__always)
func allFinite(_ p: UnsafeBufferPointer<Float>) -> Bool {
    var m: UInt32 = 0
    for x in p { m |= ((x.bitPattern & 0x7F80_0000) &+ 0x0080_0000) }
    return m & 0x8000_0000 == 0
}

func allFinite(_ a: [Float]) -> Bool { a.withUnsafeBufferPointer { allFinite($0) } }
