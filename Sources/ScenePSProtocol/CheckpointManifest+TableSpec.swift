import ScenePSCore

// The one mapping between a checkpoint manifest's table entries and the
// `TableSpec`s servers declare: the driver that writes a manifest
// (ScenePSClient's CheckpointDriver) and the server that restores one
// (ScenePSServer's CheckpointRestore) both go through it, so the names on
// disk ("sparse", "uniform", "adam", ...) are spelled here only.

extension TableKind {
    /// The manifest's `kind`.
    public var manifestName: String { description }
    public init?(manifestName: String) {
        switch manifestName {
        case "sparse": self = .sparse
        case "dense": self = .dense
        default: return nil
        }
    }
}

extension InitKind {
    /// The manifest's `init`.
    public var manifestName: String { description }
    public init?(manifestName: String) {
        switch manifestName {
        case "zeros": self = .zeros
        case "uniform": self = .uniform
        case "normal": self = .normal
        default: return nil
        }
    }
}

extension CheckpointManifest.Optimiser {
    /// The manifest's name for Adam (the only optimiser of this format).
    public static let adamName = "adam"

    /// Adam's settings as the manifest stores them.
    public init(adam a: AdamConfig) {
        self.init(name: Self.adamName, learning_rate: a.learningRate, beta1: a.beta1, beta2: a.beta2,
                  epsilon: a.epsilon, l2: a.l2)
    }

    /// The settings back; nil for an optimiser this build does not know.
    public var adamConfig: AdamConfig? {
        guard name == Self.adamName else { return nil }
        return AdamConfig(learningRate: learning_rate, beta1: beta1, beta2: beta2, epsilon: epsilon, l2: l2)
    }
}

extension CheckpointManifest.Table {
    /// The manifest's entry for table `spec`, holding `rows` rows over all
    /// shards (a dense table: its size).
    public init(spec s: TableSpec, rows: UInt64) {
        self.init(id: s.id, name: s.name, kind: s.kind.manifestName, dim: s.dim, dense_size: s.denseSize,
                  init: s.initKind.manifestName, init_scale: s.initScale, seed: s.seed, frozen: s.frozen,
                  optimiser: .init(adam: s.adam), rows: s.kind == .dense ? s.denseSize : rows)
    }

    /// The table this entry describes. Throws naming `manifest` (the file),
    /// the table and the field this build cannot read (check: schema).
    public func tableSpec(manifest path: String) throws -> TableSpec {
        func bad(_ what: String) -> ScenePSError {
            ScenePSError(.checkpoint, "\(path): table \(id) '\(name)': \(what) (check: schema)")
        }
        guard let kind = TableKind(manifestName: kind) else { throw bad("unknown kind '\(self.kind)'") }
        guard let initKind = InitKind(manifestName: `init`) else { throw bad("unknown init '\(`init`)'") }
        guard let adam = optimiser.adamConfig else {
            throw bad("optimiser '\(optimiser.name)' is not \(CheckpointManifest.Optimiser.adamName)")
        }
        // The manifest does not record initFile: the restored rows come from the shard files.
        return TableSpec(id: id, name: name, kind: kind, dim: dim, denseSize: dense_size, initKind: initKind,
                         initScale: init_scale, seed: seed, frozen: frozen, adam: adam)
    }
}
