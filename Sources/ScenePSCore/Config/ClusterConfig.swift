import Foundation
import Yams

/// The cluster configuration file (YAML). `cluster/default.yaml` documents
/// every key; every key is optional and has the default shown there.
/// Identity (which shard, which scene) comes from flags; tunables from here.
public struct ClusterConfig: Sendable, Equatable, Codable {
    public enum ModelKind: String, Sendable, Codable, CaseIterable { case msif, baseline }
    public enum Ablation: String, Sendable, Codable, CaseIterable {
        case full
        case sameScene = "same-scene"
        case longOnly = "long-only"
        case shortOnly = "short-only"
        case noSceneGates = "no-scene-gates"
    }
    public enum InitKind: String, Sendable, Codable, CaseIterable { case zeros, uniform, normal }

    public struct Adam: Sendable, Equatable, Codable {
        public var learningRate: Double
        public var beta1 = 0.9
        public var beta2 = 0.999
        public var epsilon = 1e-8
        public var l2 = 0.0
        public init(learningRate: Double, l2: Double = 0) { self.learningRate = learningRate; self.l2 = l2 }
    }

    public struct Model: Sendable, Equatable, Codable {
        public var kind: ModelKind = .msif
        public var d = 32
        public var lLong = 50
        public var lShort = 10
        public var heads = 2
        public var ffn = 64
        public var experts = 4
        public var expertWidths = [128, 64]
        public var headWidth = 32
        public var baselineHidden = [64, 32]
        public var ablation: Ablation = .full
        /// Title features (docs/ARCHITECTURE.md §3.6): the frozen `item_text` table and
        /// the learned projection `text.W` (d × textDim) added to the target and
        /// every behaviour token's item vector.
        public var textFeatures = false
        /// Width of the title vectors the model reads: the catalogue's 384-d
        /// vectors projected once on their top `textDim` principal components
        /// (`TitleReduction`: `text_embeddings/pca-K/`), 384 = the vectors as
        /// embedded. 64 keeps the cold-start gain at a sixth of the cost
        /// (BENCHMARKS.md, "Title features").
        public var textDim = 64
        /// Directory of `psctl embed-titles` output (`embeddings.npy`,
        /// `item_ids.txt`) the servers load `item_text` from; required with `textFeatures`.
        public var textEmbeddings = ""
        public init() {}
    }

    public struct Table: Sendable, Equatable, Codable {
        public var initKind: InitKind
        public var initScale: Double
        public var frozen = false
        /// Per-table optimiser; nil = the `optimizer.sparse` settings.
        public var adam: Adam?
        /// Most rows of this table over all servers (`max_rows`); nil = a share of each server's memory
        /// budget (docs/SECURITY.md, "Limits"). A pull or push that would create more is refused (TABLE_FULL).
        public var maxRows: Int?
        public init(initKind: InitKind, initScale: Double) { self.initKind = initKind; self.initScale = initScale }
    }

    public struct Training: Sendable, Equatable, Codable {
        /// Examples per step and worker. 128 rather than the reference
        /// trainer's 256: with many asynchronous workers per scene, 256 lost
        /// 0.006-0.009 AUC to staleness (16 workers), 128 none (BENCHMARKS.md).
        public var batchSize = 128
        /// Most epochs (a cap: `LearningRateSchedule` normally stops earlier).
        public var epochs = 20
        /// Epochs without a validation gain before the rate decays (or, once
        /// it has decayed `lrDecays` times, training stops).
        public var patience = 1
        public var computeThreads = 1
        public var logEvery = 100
        public var timeoutSeconds = 10.0
        public var retries = 3
        /// Each decay of the schedule multiplies every learning rate by this.
        public var lrDecay = 0.1
        /// Decays before training stops at the next plateau.
        public var lrDecays = 2
        /// A validation AUC gain below this is a plateau: the rate decays.
        public var minImprovement = 0.0005
        /// Every learning rate ramps linearly from 0 to its value over this
        /// fraction of each worker's first epoch (0 = off). Asynchronous
        /// workers all push gradients of the initial parameters at once; at
        /// full rate those stale steps can wreck the start (BENCHMARKS.md).
        public var warmup = 0.05
        /// A worker waits while its scene is more than this fraction of an
        /// epoch ahead of the slowest scene (the coordinator compares the
        /// scenes' progress); 0 turns alignment off.
        public var maxProgressLead = 0.02
        /// Send the next minibatch's pull before computing the current one;
        /// nil = auto (`prefetchEnabled`). It hides the pull's round trip
        /// (with pushes overlapped too: +10-50% examples/s on the quickstart's
        /// layout, more behind a network) but adds a step of staleness to every
        /// pull: nothing measurable with 4 workers on 2 cores (one-epoch AUC
        /// 0.7722 against 0.7725 without, 18 and 14 runs), 0.006 AUC with 8 and
        /// 0.01 with 16 workers on 2 cores (BENCHMARKS.md).
        public var prefetch: Bool? = nil
        public init() {}

        /// Whether a worker prefetches when `hostWorkers` workers (0 = not
        /// known) share `cores` cores: as configured, or under auto when there
        /// are at most two workers per core.
        public func prefetchEnabled(hostWorkers: Int, cores: Int) -> Bool {
            prefetch ?? (hostWorkers > 0 && hostWorkers <= 2 * cores)
        }

        /// The learning-rate multiplier a worker sends with the push that
        /// brings its epoch to `examplesDone` of `epochExamples`: `lrDecay^level`
        /// (the schedule's decay level of the epoch), with a linear ramp over
        /// the first `warmup` of epoch 1. Never 0 (the wire reads 0 as 1; the client refuses it).
        public func learningRateScale(epoch: Int, level: Int, examplesDone: Int, epochExamples: Int) -> Float {
            var scale = LearningRateSchedule.scale(level: level, decay: lrDecay)
            let ramp = warmup * Double(epochExamples)
            if epoch == 1 && Double(examplesDone) < ramp { scale *= Double(examplesDone) / ramp }
            return max(Float(scale), 1e-30)
        }
    }

    public struct Data: Sendable, Equatable, Codable {
        public var testFraction = 0.1
        public var validFraction = 0.05
        public var chunkSize = 8192
        public init() {}
    }

    public var servers = 2
    public var basePort = 17_200
    public var seed: UInt64 = 42
    public var model = Model()
    public var denseAdam = Adam(learningRate: 0.001)
    public var sparseAdam = Adam(learningRate: 0.01)
    /// Sparse tables by name; the model's tables always exist, these override.
    public var tables: [String: Table] = ClusterConfig.defaultTables
    public var training = Training()
    public var data = Data()
    public var checkpoint = Checkpoint()
    /// What the cluster does when one server dies mid-run (docs/CHECKPOINTS.md, "Recovery policy").
    public var recovery = RecoveryPolicy.partial

    /// `partial`: only the dead server reloads its shard of the latest checkpoint; `global`: every server
    /// rolls back to that cut and the coordinator's data progress rewinds to it.
    public enum RecoveryPolicy: String, Sendable, Equatable, Codable, CaseIterable {
        case partial, global
    }

    /// When the coordinator takes checkpoints (docs/CHECKPOINTS.md).
    public struct Checkpoint: Sendable, Equatable, Codable {
        /// Seconds between checkpoints while training runs; 0 = none on a timer.
        public var everySeconds = 60.0
        /// One after every epoch's evaluation too.
        public var atEpochEnd = true
        /// Complete checkpoints kept (the best epoch's is kept besides).
        public var keep = 3
        public init() {}
    }
    /// Workers of each scene not named in `scenes` when `workersByRows` is false (`workers_per_scene: N`).
    public var workersPerScene = 1
    /// `workers_per_scene: by_rows`: each scene not named in `scenes` gets workers in proportion to its
    /// training rows, the average scene one (`workers(forScene:sceneRows:)`).
    public var workersByRows = true
    /// Scene name → workers. Empty: the scenes found in the log.
    public var scenes: [String: Int] = [:]
    /// Scene names in the order they were listed (YAML mapping order).
    public var sceneOrder: [String] = []

    public init() {}

    /// The sparse tables of the model, in wire-id order (from `FeatureTable.all`).
    public static var sparseTableNames: [String] { FeatureTable.all.map(\.name) }

    /// Every sparse table with its declared defaults (`FeatureTable.defaults`).
    public static var defaultTables: [String: Table] {
        Dictionary(uniqueKeysWithValues: FeatureTable.all.map { ($0.name, $0.defaults) })
    }

    /// Workers for a scene: the size `scenes` gives it, else `workers_per_scene`. With `by_rows`, a scene's
    /// share of the training rows times the number of scenes, rounded, at least 1: the average scene gets one
    /// worker, one with twice the average's rows two (the default log's home, 40% of four scenes' rows).
    /// One worker is one core's worth of compute, so a scene with more rows than its workers can train in
    /// the time the others take holds every other scene back (progress alignment) while cores idle.
    /// `sceneRows`: every scene's training rows (the data set's manifest; the coordinator's lease plan).
    public func workers(forScene name: String, sceneRows: [String: Int]) -> Int {
        if let n = scenes[name] { return n }
        guard workersByRows else { return workersPerScene }
        let total = sceneRows.values.reduce(0, +)
        guard total > 0, let rows = sceneRows[name] else { return 1 }
        return max(1, Int((Double(sceneRows.count) * Double(rows) / Double(total)).rounded()))
    }
}

extension ClusterConfig {
    /// Reads and validates a config file. Errors name the file, the line, the
    /// key and what was expected.
    public static func load(path: String) throws -> ClusterConfig { try load(path: path, depth: 0) }

    static func load(path: String, depth: Int) throws -> ClusterConfig {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw ScenePSError.config("\(path): cannot read the config file (\(error.localizedDescription))")
        }
        return try parse(yaml: text, file: path, depth: depth)
    }

    public static func parse(yaml: String, file: String = "<config>") throws -> ClusterConfig {
        try parse(yaml: yaml, file: file, depth: 0)
    }

    static func parse(yaml: String, file: String, depth: Int) throws -> ClusterConfig {
        let root: Node?
        do { root = try Yams.compose(yaml: yaml) } catch {
            throw ScenePSError.config("\(file): not valid YAML: \(error)")
        }
        var c = ClusterConfig()
        guard let root else { return c }   // an empty file means all defaults
        let r = ConfigReader(file: file, node: root)
        let top = try r.keys(allowed: ["base", "servers", "base_port", "seed", "model", "optimizer", "tables",
                                       "training", "data", "workers_per_scene", "scenes", "checkpoint", "recovery"])
        // `base: FILE`: that config first (a relative path is relative to this
        // file's directory), then this file's keys override it key by key.
        if let n = top["base"] {
            var path = try r.string("base", n)
            if !path.hasPrefix("/") { path = ((file as NSString).deletingLastPathComponent as NSString).appendingPathComponent(path) }
            guard depth < 8 else { throw r.error("base", "more than 8 nested base configs (does \(path) name itself?)", at: n) }
            let base = try load(path: path, depth: depth + 1)
            c = base
            if top["scenes"] != nil { c.scenes = [:]; c.sceneOrder = [] }
        }
        if let n = top["servers"] { c.servers = try r.int("servers", n, min: 1, max: 256) }
        if let n = top["base_port"] { c.basePort = try r.int("base_port", n, min: 1024, max: 65_000) }
        if let n = top["seed"] { c.seed = UInt64(try r.int("seed", n, min: 0)) }
        if let n = top["workers_per_scene"] {
            if n.string == "by_rows" {
                c.workersByRows = true
            } else {
                guard n.scalar != nil, n.int != nil else {
                    throw r.error("workers_per_scene", "expected an integer in 1...64 or by_rows, found '\(n.any)'", at: n)
                }
                c.workersPerScene = try r.int("workers_per_scene", n, min: 1, max: 64)
                c.workersByRows = false
            }
        }
        if let n = top["model"] { c.model = try parseModel(r.child("model", n), base: c.model) }
        if let n = top["optimizer"] {
            let o = r.child("optimizer", n)
            let keys = try o.keys(allowed: ["dense", "sparse"])
            if let d = keys["dense"] { c.denseAdam = try parseAdam(o.child("dense", d), base: c.denseAdam) }
            if let s = keys["sparse"] { c.sparseAdam = try parseAdam(o.child("sparse", s), base: c.sparseAdam) }
        }
        if let n = top["tables"] {
            let t = r.child("tables", n)
            for (name, node) in try t.keys(allowed: Set(sparseTableNames)) {
                c.tables[name] = try parseTable(t.child(name, node), base: c.tables[name]!, sparse: c.sparseAdam)
            }
        }
        if let n = top["training"] { c.training = try parseTraining(r.child("training", n), base: c.training) }
        if let n = top["data"] {
            let d = r.child("data", n)
            let keys = try d.keys(allowed: ["test_fraction", "valid_fraction", "chunk_size"])
            if let v = keys["test_fraction"] { c.data.testFraction = try d.double("test_fraction", v, min: 0.001, max: 0.9) }
            if let v = keys["valid_fraction"] { c.data.validFraction = try d.double("valid_fraction", v, min: 0, max: 0.9) }
            if let v = keys["chunk_size"] { c.data.chunkSize = try d.int("chunk_size", v, min: 1) }
        }
        if let n = top["checkpoint"] {
            let d = r.child("checkpoint", n)
            let keys = try d.keys(allowed: ["every_seconds", "at_epoch_end", "keep"])
            if let v = keys["every_seconds"] { c.checkpoint.everySeconds = try d.double("every_seconds", v, min: 0, max: 86_400) }
            if let v = keys["at_epoch_end"] { c.checkpoint.atEpochEnd = try d.bool("at_epoch_end", v) }
            if let v = keys["keep"] { c.checkpoint.keep = try d.int("keep", v, min: 1, max: 1000) }
        }
        if let n = top["recovery"] {
            c.recovery = RecoveryPolicy(rawValue: try r.string("recovery", n, oneOf: RecoveryPolicy.allCases.map(\.rawValue)))!
        }
        if let n = top["scenes"] {
            let s = r.child("scenes", n)
            guard let mapping = n.mapping else {
                throw s.error("", "expected a mapping of scene name to its number of workers, e.g. {home: 2, shop: 1}")
            }
            for (k, v) in mapping {
                guard let name = k.string, !name.isEmpty else { throw s.error("", "scene names must be strings", at: k) }
                c.scenes[name] = try s.int(name, v, min: 1, max: 64)
                c.sceneOrder.append(name)
            }
        }
        try c.validate(file: file)
        return c
    }

    /// Cross-field checks, before any process starts.
    public func validate(file: String = "<config>") throws {
        let m = model
        func bad(_ key: String, _ why: String) -> ScenePSError { .config("\(file): model.\(key): \(why)") }
        if m.d % m.heads != 0 { throw bad("heads", "heads (\(m.heads)) must divide d (\(m.d))") }
        if m.lShort > m.lLong { throw bad("l_short", "l_short (\(m.lShort)) must not exceed l_long (\(m.lLong))") }
        if m.expertWidths.count != 2 { throw bad("expert_widths", "expected two widths [hidden, output], found \(m.expertWidths.count)") }
        if m.kind == .baseline && m.ablation != .full && m.ablation != .sameScene {
            throw bad("ablation", "'\(m.ablation.rawValue)' applies to the msif model only")
        }
        if m.textFeatures && m.kind != .msif { throw bad("text_features", "title features apply to the msif model only") }
        if m.textFeatures && m.textEmbeddings.isEmpty {
            throw bad("text_embeddings", "text_features: true needs the directory of psctl embed-titles output (embeddings.npy, item_ids.txt)")
        }
        for t in FeatureTable.all where t.alwaysFrozen && tables[t.name]?.frozen == false {
            throw ScenePSError.config("\(file): tables.\(t.name).frozen: this table is pull-only (its rows come from outside the model) and can not be trained")
        }
    }

    private static func parseModel(_ r: ConfigReader, base: Model) throws -> Model {
        var m = base
        let k = try r.keys(allowed: ["kind", "d", "l_long", "l_short", "heads", "ffn", "experts", "expert_widths",
                                     "head_width", "baseline_hidden", "ablation", "text_features", "text_embeddings", "text_dim"])
        if let n = k["kind"] { m.kind = ModelKind(rawValue: try r.string("kind", n, oneOf: ModelKind.allCases.map(\.rawValue)))! }
        if let n = k["d"] { m.d = try r.int("d", n, min: 1, max: 4096) }
        if let n = k["l_long"] { m.lLong = try r.int("l_long", n, min: 1, max: 10_000) }
        if let n = k["l_short"] { m.lShort = try r.int("l_short", n, min: 1, max: 10_000) }
        if let n = k["heads"] { m.heads = try r.int("heads", n, min: 1, max: 64) }
        if let n = k["ffn"] { m.ffn = try r.int("ffn", n, min: 1, max: 65_536) }
        if let n = k["experts"] { m.experts = try r.int("experts", n, min: 1, max: 64) }
        if let n = k["expert_widths"] { m.expertWidths = try r.ints("expert_widths", n) }
        if let n = k["head_width"] { m.headWidth = try r.int("head_width", n, min: 1, max: 65_536) }
        if let n = k["baseline_hidden"] { m.baselineHidden = try r.ints("baseline_hidden", n) }
        if let n = k["ablation"] { m.ablation = Ablation(rawValue: try r.string("ablation", n, oneOf: Ablation.allCases.map(\.rawValue)))! }
        if let n = k["text_features"] { m.textFeatures = try r.bool("text_features", n) }
        if let n = k["text_embeddings"] { m.textEmbeddings = try r.string("text_embeddings", n) }
        if let n = k["text_dim"] { m.textDim = try r.int("text_dim", n, min: 1, max: FeatureTable.titleVectorDim) }
        return m
    }

    private static func parseAdam(_ r: ConfigReader, base: Adam) throws -> Adam {
        var a = base
        let k = try r.keys(allowed: ["learning_rate", "beta1", "beta2", "epsilon", "l2"])
        if let n = k["learning_rate"] { a.learningRate = try r.double("learning_rate", n, min: 0, max: 10) }
        if let n = k["beta1"] { a.beta1 = try r.double("beta1", n, min: 0, max: 0.999999) }
        if let n = k["beta2"] { a.beta2 = try r.double("beta2", n, min: 0, max: 0.999999999) }
        if let n = k["epsilon"] { a.epsilon = try r.double("epsilon", n, min: 1e-30, max: 1) }
        if let n = k["l2"] { a.l2 = try r.double("l2", n, min: 0, max: 10) }
        return a
    }

    private static func parseTable(_ r: ConfigReader, base: Table, sparse: Adam) throws -> Table {
        var t = base
        let k = try r.keys(allowed: ["init", "init_scale", "frozen", "optimizer", "max_rows"])
        if let n = k["max_rows"] { t.maxRows = try r.int("max_rows", n, min: 1) }
        if let n = k["init"] { t.initKind = InitKind(rawValue: try r.string("init", n, oneOf: InitKind.allCases.map(\.rawValue)))! }
        if let n = k["init_scale"] { t.initScale = try r.double("init_scale", n, min: 0, max: 100) }
        if let n = k["frozen"] { t.frozen = try r.bool("frozen", n) }
        if let n = k["optimizer"] { t.adam = try parseAdam(r.child("optimizer", n), base: t.adam ?? sparse) }
        return t
    }

    private static func parseTraining(_ r: ConfigReader, base: Training) throws -> Training {
        var t = base
        let k = try r.keys(allowed: ["batch_size", "epochs", "patience", "compute_threads", "log_every", "timeout_seconds", "retries",
                                               "lr_decay", "lr_decays", "min_improvement", "warmup", "max_progress_lead", "prefetch"])
        if let n = k["batch_size"] { t.batchSize = try r.int("batch_size", n, min: 1, max: 1 << 20) }
        if let n = k["epochs"] { t.epochs = try r.int("epochs", n, min: 1, max: 10_000) }
        if let n = k["patience"] { t.patience = try r.int("patience", n, min: 1, max: 10_000) }
        if let n = k["compute_threads"] { t.computeThreads = try r.int("compute_threads", n, min: 1, max: 256) }
        if let n = k["log_every"] { t.logEvery = try r.int("log_every", n, min: 1) }
        if let n = k["timeout_seconds"] { t.timeoutSeconds = try r.double("timeout_seconds", n, min: 0.01, max: 3600) }
        if let n = k["retries"] { t.retries = try r.int("retries", n, min: 0, max: 100) }
        if let n = k["lr_decay"] { t.lrDecay = try r.double("lr_decay", n, min: 0.001, max: 1) }
        if let n = k["lr_decays"] { t.lrDecays = try r.int("lr_decays", n, min: 0, max: 100) }
        if let n = k["min_improvement"] { t.minImprovement = try r.double("min_improvement", n, min: 0, max: 1) }
        if let n = k["warmup"] { t.warmup = try r.double("warmup", n, min: 0, max: 1) }
        if let n = k["prefetch"] {
            switch (n.scalar != nil ? n.bool : nil, n.string) {
            case (let b?, _): t.prefetch = b
            case (nil, "auto"): t.prefetch = nil
            default: throw r.error("prefetch", "expected true, false or auto, found '\(n.any)'", at: n)
            }
        }
        if let n = k["max_progress_lead"] { t.maxProgressLead = try r.double("max_progress_lead", n, min: 0, max: 1) }
        return t
    }
}
