import Foundation
import Logging
import ScenePSCore
import ScenePSData
import ScenePSModel

/// Which worker this is: identity comes from flags, never from the config.
public struct WorkerIdentity: Sendable {
    public var scene: String
    public var index: Int
    public var count: Int
    public init(scene: String, index: Int, count: Int) { self.scene = scene; self.index = index; self.count = count }
    /// `all-I` for a worker of every scene (`--scene "*"`).
    public var name: String { "\(scene == "*" ? "all" : scene)-\(index)" }
}

/// What a worker reports when it is done (RUN_DIR/workers/<scene>-<i>.json).
public struct WorkerReport: Codable, Sendable {
    public var scene: String
    public var index: Int
    public var examples: Int
    public var steps: Int
    public var epoch: Int
    public var startedAt: Double      // Unix seconds
    public var finishedAt: Double
    public var trainSeconds: Double
    public var finalLoss: Double
    public var peakRSSMiB: Double
    /// With title features: the items this worker met that have no title
    /// vector (not in the embedded catalogue) and so read a zero vector.
    public var itemsWithoutTitle: Int? = nil
    /// CPU time of the worker process (user + system) when it reported.
    public var cpuSeconds: Double? = nil

    enum CodingKeys: String, CodingKey {
        case scene, index, examples, steps, epoch
        case startedAt = "started_at", finishedAt = "finished_at", trainSeconds = "train_seconds", finalLoss = "final_loss", peakRSSMiB = "peak_rss_mib"
        case itemsWithoutTitle = "items_without_title", cpuSeconds = "cpu_seconds"
    }

    public var examplesPerSec: Double { trainSeconds > 0 ? Double(examples) / trainSeconds : 0 }
}

/// The training loop of one worker: its share of its scene's chunks, each
/// minibatch pulled, computed and pushed without waiting for other workers.
public final class Trainer {
    let config: ClusterConfig
    let manifest: DatasetManifest
    let dataDir: String
    let identity: WorkerIdentity
    let store: ParameterStoreSetup
    let logger: Logger
    /// The scenes this worker trains: one, or every scene for `--scene '*'`.
    let sceneIndices: [Int]
    let model: any CTRModel<Float>
    var assembler: BatchAssembler
    let tables: ModelTables
    /// Rows of the pull-only tables (`item_text`) this worker has pulled: each key once.
    let caches: [FrozenRowCache]

    public init(config: ClusterConfig, dataDir: String, identity: WorkerIdentity,
                store: ParameterStoreSetup, logger: Logger) throws {
        self.config = config
        self.dataDir = dataDir
        self.identity = identity
        self.store = store
        self.logger = logger
        manifest = try DatasetManifest.load(directory: dataDir)
        if identity.scene == "*" {
            sceneIndices = manifest.scenes.map(\.index)
        } else if let s = manifest.scenes.first(where: { $0.name == identity.scene }) {
            sceneIndices = [s.index]
        } else {
            let known = manifest.scenes.map(\.name).joined(separator: ", ")
            throw ScenePSError.invalidArgument("scene '\(identity.scene)' is not in the data set at \(dataDir) (its scenes: \(known), or * for all)")
        }
        model = try ModelFactory.make(config, scenes: manifest.scenes.count, maxBatch: config.training.batchSize)
        assembler = BatchAssembler(d: config.model.d, historyWidth: min(config.model.lLong, manifest.lLong),
                                   sameSceneOnly: config.model.ablation == .sameScene,
                                   sceneKeys: manifest.scenes.map(\.key),
                                   tables: FeatureSchema.tables(for: config.model))
        tables = ModelTables(config: config, denseSize: model.layout.count)
        if let text = tables.sparse.first(where: { $0.id == FeatureTable.itemText.id }) {
            try TitleVectorCheck.check(directory: text.initFile, width: text.dim, dataDir: dataDir, manifest: manifest)
        }
        // SCENEPS_FROZEN_CACHE=off pulls frozen rows every step (to measure what the cache saves; BENCHMARKS.md).
        caches = ProcessInfo.processInfo.environment["SCENEPS_FROZEN_CACHE"] == "off"
            ? [] : FeatureSchema.frozenCaches(assembler.tables, d: config.model.d)
    }

    /// This worker's chunks: every `count`-th chunk of its scenes' training sets.
    var myChunks: [ChunkRef] {
        let all = sceneIndices.flatMap { i in manifest.scenes.first { $0.index == i }!.train }
        return all.indices.filter { $0 % identity.count == identity.index }.map { all[$0] }
    }

    /// Trains one pass over this worker's chunks at `lr_decay^lrLevel` times
    /// the configured rates (`LearningRateSchedule`). Epochs are separated by
    /// the launcher, which evaluates the validation split in between and
    /// decides the next epoch's level; the epoch number seeds the shuffle.
    public func run(epoch: Int, lrLevel: Int = 0) throws -> WorkerReport {
        let started = Date().timeIntervalSince1970
        try store.declare(tables, denseInitial: model.layout.initialValues(seed: config.seed))
        let chunks = myChunks
        let B = config.training.batchSize
        let denseCount = model.layout.count
        let textDim = FeatureSchema.textDim(for: config.model)
        var input = ModelInput<Float>(d: config.model.d, historyWidth: assembler.historyWidth, capacity: B, textDim: textDim)
        var inputGrad = ModelInput<Float>(d: config.model.d, historyWidth: assembler.historyWidth, capacity: B, textDim: textDim)
        var denseGrad = [Float](repeating: 0, count: denseCount)
        let frozen = Set(tables.sparse.filter(\.settings.frozen).map(\.id))
        let epochExamples = chunks.reduce(0) { $0 + $1.count }
        // SCENEPS_FAULT_NAN_STEP=N poisons step N's gathered rows with a NaN
        // (fault injection for tests of the non-finite-loss guard).
        let faultNaNStep = ProcessInfo.processInfo.environment["SCENEPS_FAULT_NAN_STEP"].flatMap { Int($0) }
        var pacer = Pacer(epoch: epoch, total: epochExamples,
                          lead: config.training.maxProgressLead, store: store)
        var labels = [Float](repeating: 0, count: B)
        var logits = [Float](repeating: 0, count: B)
        var progress = Progress(logEvery: config.training.logEvery)
        var rng = SplitMix64(seed: config.seed ^ KeyHash.idKey(identity.name) ^ KeyHash.mix64(UInt64(epoch)))
        var steps = 0, examples = 0
        var lastLoss = Double.nan
        let t0 = Date()
        logger.info("training", metadata: ["worker": "\(identity.name)", "chunks": "\(chunks.count)",
                                           "epoch": "\(epoch)", "lr_level": "\(lrLevel)", "dense.floats": "\(denseCount)"])
        // Two stages: while batch k is computed, the pull of batch k+1 is
        // already on its way (training.prefetch); without prefetch the next
        // batch is staged after the push, strictly sequentially.
        var source = BatchSource(chunks: chunks.shuffled(using: &rng), dataDir: dataDir, batchSize: B, rng: rng)
        func stage(_ s: inout Stage) throws -> Bool {
            guard let chunk = try source.next(into: &s.samples) else { return false }
            s.chunk = chunk
            try s.assembler.index(s.samples)
            s.requested = FeatureSchema.uncached(s.assembler.pulls, caches)
            s.pending = try store.beginPull(s.requested, denseTable: ModelTables.denseID, denseCount: denseCount)
            return true
        }
        var cur = Stage(samples: SampleBatch(lLong: manifest.lLong, capacity: B), assembler: assembler)
        var next = cur
        let prefetch = config.training.prefetch ?? false   // the worker resolves auto before it builds the trainer
        var have = try stage(&cur)
        while have {
            // Progress alignment waits here, before the rows are used: if this
            // worker had to wait, the rows pulled for this batch (possibly
            // seconds ago) are stale, so they are pulled again.
            if try pacer.waitIfAhead(examples: examples) {
                _ = try cur.pending!.finish()
                cur.pending = try store.beginPull(cur.requested, denseTable: ModelTables.denseID, denseCount: denseCount)
            }
            let pulled = try cur.pending!.finish()
            cur.pending = nil
            FeatureSchema.fill(caches, requested: cur.requested, rows: pulled.rows)
            cur.assembler.gather(rows: pulled.rows, into: &input, cached: caches)
            if steps + 1 == faultNaNStep {   // fault injection (tests): what a numeric blow-up looks like
                logger.warning("fault injection: NaN in the input of this step", metadata: ["step": "\(steps + 1)"])
                input.user[0] = .nan
            }
            var haveNext = prefetch ? try stage(&next) : false
            let samples = cur.samples
            let n = samples.count
            if labels.count < n { labels = .init(repeating: 0, count: n) }
            for i in 0..<n { labels[i] = samples.label[i] }
            for i in denseGrad.indices { denseGrad[i] = 0 }
            let loss = pulled.dense.withUnsafeBufferPointer { params in
                labels.withUnsafeBufferPointer { y in
                    denseGrad.withUnsafeMutableBufferPointer { g in
                        model.lossAndGradients(parameters: params, input: input,
                                               labels: UnsafeBufferPointer(rebasing: y[0..<n]),
                                               parameterGradient: g, inputGradient: &inputGrad, logits: &logits)
                    }
                }
            }
            guard loss.isFinite else {
                let rows = samples.row.prefix(8).map(String.init).joined(separator: ",")
                throw ScenePSError(.training, "loss is \(loss) at step \(steps + 1) (epoch \(epoch), chunk \(cur.chunk), log rows \(rows)…): not pushing; check learning rates and the data")
            }
            let grads = cur.assembler.scatter(inputGrad)
            let pushes = zip(cur.assembler.pulls, grads)
                .filter { !frozen.contains($0.0.table) }   // frozen tables are pull-only on the servers
                .map { (table: $0.0.table, keys: $0.0.keys, values: $0.1) }
            let lrScale = config.training.learningRateScale(epoch: epoch, level: lrLevel, examplesDone: examples + n,
                                                            epochExamples: epochExamples)
            try store.push(pushes, denseTable: ModelTables.denseID, dense: denseGrad, lrScale: lrScale)
            steps += 1
            examples += n
            lastLoss = Double(loss)
            progress.record(labels: labels[0..<n], logits: logits[0..<n], loss: Double(loss))
            if steps % config.training.logEvery == 0 {
                progress.log(logger, worker: identity.name, epoch: epoch, step: steps,
                             examples: examples, seconds: Date().timeIntervalSince(t0))
            }
            if !prefetch { haveNext = try stage(&next) }
            swap(&cur, &next)
            have = haveNext
        }
        try pacer.finish()
        let seconds = Date().timeIntervalSince(t0)
        if pacer.waitedSeconds > 0 {
            logger.info("progress alignment", metadata: ["worker": "\(identity.name)",
                                                         "waited_seconds": "\(String(format: "%.1f", pacer.waitedSeconds))"])
        }
        progress.log(logger, worker: identity.name, epoch: epoch, step: steps, examples: examples, seconds: seconds)
        for c in caches {
            let name = tables.table(c.table).name
            if c.zeroKeys > 0 {
                logger.warning("items without a title vector read zeros", metadata: [
                    "worker": "\(identity.name)", "table": "\(name)", "items": "\(c.zeroKeys)", "of": "\(c.count)",
                    "embeddings": "\(config.model.textEmbeddings)"])
            } else {
                logger.info("title vectors", metadata: ["worker": "\(identity.name)", "table": "\(name)", "items": "\(c.count)",
                                                        "without_title": "0"])
            }
        }
        return WorkerReport(scene: identity.scene, index: identity.index, examples: examples, steps: steps,
                            epoch: epoch, startedAt: started,
                            finishedAt: Date().timeIntervalSince1970, trainSeconds: seconds, finalLoss: lastLoss,
                            peakRSSMiB: ProcessStats.peakRSSMiB,
                            itemsWithoutTitle: caches.isEmpty ? nil : caches.reduce(0) { $0 + $1.zeroKeys },
                            cpuSeconds: ProcessStats.cpuSeconds)
    }
}

/// One minibatch on its way through the worker: its samples, their keys
/// (the assembler) and its pull, once sent.
struct Stage {
    var samples: SampleBatch
    var assembler: BatchAssembler
    var pending: PendingPull? = nil
    /// What `pending` asked for: the assembler's pulls without the cached keys.
    var requested: [(table: UInt32, keys: [UInt64], dim: Int)] = []
    var chunk = ""
}

/// The minibatches of one epoch: chunks in the given order, each chunk's
/// samples shuffled, `batchSize` at a time (the last of a chunk may be short).
struct BatchSource {
    let chunks: [ChunkRef]
    let dataDir: String
    let batchSize: Int
    var rng: SplitMix64
    var chunkIndex = -1
    var chunk: ChunkFile? = nil
    var order: [Int] = []
    var start = 0

    init(chunks: [ChunkRef], dataDir: String, batchSize: Int, rng: SplitMix64) {
        self.chunks = chunks
        self.dataDir = dataDir
        self.batchSize = batchSize
        self.rng = rng
    }

    /// Fills `samples` with the next minibatch; returns its chunk's file, or
    /// nil at the end of the epoch.
    mutating func next(into samples: inout SampleBatch) throws -> String? {
        while chunk == nil || start >= order.count {
            chunkIndex += 1
            guard chunkIndex < chunks.count else { return nil }
            let c = try ChunkFile(path: (dataDir as NSString).appendingPathComponent(chunks[chunkIndex].file))
            order = Array(0..<c.count).shuffled(using: &rng)
            chunk = c
            start = 0
        }
        let end = min(start + batchSize, order.count)
        samples.removeAll()
        chunk!.append(order[start..<end], to: &samples)
        start = end
        return chunks[chunkIndex].file
    }
}

/// Running loss and AUC over the most recent training examples, for progress lines.
struct Progress {
    let logEvery: Int
    var labels: [Float] = []
    var scores: [Double] = []
    var losses: [Double] = []
    let window = 20_000

    init(logEvery: Int) { self.logEvery = logEvery }

    mutating func record(labels l: ArraySlice<Float>, logits: ArraySlice<Float>, loss: Double) {
        labels.append(contentsOf: l)
        scores.append(contentsOf: logits.map(Double.init))
        losses.append(loss)
        if labels.count > 2 * window {
            labels.removeFirst(labels.count - window)
            scores.removeFirst(scores.count - window)
        }
        if losses.count > 2 * logEvery { losses.removeFirst(losses.count - logEvery) }
    }

    func log(_ logger: Logger, worker: String, epoch: Int, step: Int, examples: Int, seconds: Double) {
        let recent = losses.suffix(logEvery)
        let loss = recent.isEmpty ? .nan : recent.reduce(0, +) / Double(recent.count)
        let auc = Evaluation.auc(labels: Array(labels.suffix(window)), scores: Array(scores.suffix(window)))
        let rate = seconds > 0 ? Double(examples) / seconds : 0
        logger.info("progress", metadata: [
            "worker": "\(worker)", "epoch": "\(epoch)", "step": "\(step)", "examples": "\(examples)",
            "examples_per_sec": "\(Int(rate))", "loss": "\(String(format: "%.4f", loss))",
            "running_auc": "\(String(format: "%.4f", auc))",
        ])
    }
}

/// Progress alignment: keeps this worker within `lead` (a fraction of its
/// epoch) of the slowest worker of the epoch, as server 0's progress board
/// reports it. Workers of small scenes would otherwise finish their rows
/// first and leave the rest of the epoch to the large scenes; aligned, every
/// scene's rows are spread through the epoch as in one shuffled pass.
/// Waiting workers leave the CPU to the others. A peer that stops reporting
/// drops off the board (`ProgressBoard.staleAfter`), so nobody waits for it.
struct Pacer {
    let epoch: Int
    let total: Int
    let lead: Double
    let store: ParameterStoreSetup
    /// Report every this many steps (and whenever waiting).
    let every = 8
    var steps = 0
    var waitedSeconds = 0.0

    init(epoch: Int, total: Int, lead: Double, store: ParameterStoreSetup) {
        self.epoch = epoch
        self.total = max(total, 1)
        self.lead = lead
        self.store = store
    }

    /// Called before each step with the examples done so far; reports every
    /// `every` steps and waits while too far ahead. True when it waited.
    mutating func waitIfAhead(examples: Int) throws -> Bool {
        guard lead > 0 else { return false }
        steps += 1
        guard steps % every == 0 else { return false }
        let mine = Double(examples) / Double(total)
        var board = try store.reportProgress(epoch: epoch, progress: mine)
        guard mine > board.minProgress + lead else { return false }
        let start = Date()
        while mine > board.minProgress + lead {
            Thread.sleep(forTimeInterval: 0.02)
            board = try store.reportProgress(epoch: epoch, progress: mine)
        }
        waitedSeconds += Date().timeIntervalSince(start)
        return true
    }

    /// Reports the epoch done, so that nobody waits for this worker.
    func finish() throws {
        guard lead > 0 else { return }
        _ = try store.reportProgress(epoch: epoch, progress: 1)
    }
}
