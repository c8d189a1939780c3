import Foundation
import Logging
import ScenePSClient
import ScenePSCore
import ScenePSData
import ScenePSModel
import ScenePSProtocol

/// What a worker reports of one chunk it trained.
public struct ChunkResult: Sendable, Equatable {
    public var examples: Int
    public var steps: Int
    public var seconds: Double
    public var loss: Double
}

/// The training loop of one worker, one leased chunk at a time: each
/// minibatch pulled, computed and pushed without waiting for other workers.
/// Which chunk, at which learning rate, comes from the coordinator's lease
/// (`WorkerMember` runs the lease loop).
public final class Trainer {
    let config: ClusterConfig
    let manifest: DatasetManifest
    let dataDir: String
    /// This worker's name (feed-0), for logs and the shuffle seed.
    let name: String
    let client: PSClient
    let logger: Logger
    let model: any CTRModel<Float>
    let tables: ModelTables
    let frozen: Set<UInt32>
    /// Rows of the pull-only tables (`item_text`) this worker has pulled: each key once.
    let caches: [FrozenRowCache]
    var cur: Stage
    var next: Stage
    var input: ModelInput<Float>
    var inputGrad: ModelInput<Float>
    var denseGrad: [Float]
    var labels: [Float]
    var logits: [Float]
    var progress: Progress
    /// Steps and examples over every chunk this process trained.
    public private(set) var steps = 0, examples = 0
    let started = Date()
    var declared = false
    /// Prometheus metrics (worker --metrics-port); nil: none kept.
    public var metrics: WorkerMetrics?
    /// Progress as JSON lines (worker --progress-file), for psctl report; nil: none written.
    public var progressFile: ProgressFile?
    /// SCENEPS_SYNC_PUSH=1 waits for every push before going on (the loop before the overlap, to measure
    /// what the overlap buys; BENCHMARKS.md).
    let syncPush = ProcessInfo.processInfo.environment["SCENEPS_SYNC_PUSH"] == "1"

    /// Where the time goes (`WorkerMember.times` in a worker).
    public let times: StepTimes

    public init(config: ClusterConfig, dataDir: String, name: String, client: PSClient, logger: Logger,
                times: StepTimes = StepTimes()) throws {
        self.times = times
        self.config = config
        self.dataDir = dataDir
        self.name = name
        self.client = client
        self.logger = logger
        manifest = try DatasetManifest.load(directory: dataDir)
        model = try ModelFactory.make(config, scenes: manifest.scenes.count, maxBatch: config.training.batchSize)
        let assembler = BatchAssembler(d: config.model.d, historyWidth: min(config.model.lLong, manifest.lLong),
                                       sameSceneOnly: config.model.ablation == .sameScene,
                                       sceneKeys: manifest.scenes.map(\.key),
                                       tables: FeatureSchema.tables(for: config.model), textDim: config.model.textDim)
        tables = ModelTables(config: config, denseSize: model.layout.count)
        frozen = Set(tables.sparse.filter(\.settings.frozen).map(\.id))
        if tables.sparse.contains(where: { $0.id == FeatureTable.itemText.id }) {
            try TitleVectorCheck.check(model: config.model, dataDir: dataDir, manifest: manifest)
        }
        // SCENEPS_FROZEN_CACHE=off pulls frozen rows every step (to measure what the cache saves; BENCHMARKS.md).
        caches = ProcessInfo.processInfo.environment["SCENEPS_FROZEN_CACHE"] == "off"
            ? [] : FeatureSchema.frozenCaches(assembler.tables, d: config.model.d, textDim: config.model.textDim)
        let B = config.training.batchSize
        cur = Stage(samples: SampleBatch(lLong: manifest.lLong, capacity: B), assembler: assembler)
        next = cur
        input = ModelInput<Float>(d: config.model.d, historyWidth: assembler.historyWidth, capacity: B,
                                  textDim: FeatureSchema.textDim(for: config.model))
        inputGrad = input
        denseGrad = [Float](repeating: 0, count: model.layout.count)
        labels = [Float](repeating: 0, count: B)
        logits = [Float](repeating: 0, count: B)
        progress = Progress(logEvery: config.training.logEvery)
    }

    /// Declares the model's tables on the servers (once per process; a
    /// declaration equal to the servers' is a no-op there).
    public func declareTables() throws {
        guard !declared else { return }
        try client.declare(tables, denseInitial: model.layout.initialValues(seed: config.seed))
        declared = true
    }


    /// Trains the leased chunk. `pace(examplesInChunk)` is asked every few
    /// steps (progress alignment and lease validity): it returns false when
    /// the lease was taken back, and may block while the scene is ahead (true
    /// when it waited: the rows pulled for the current batch are then pulled
    /// again). Nil when the chunk was abandoned because its lease was taken back.
    ///
    /// The network is overlapped with the computation: a step's push is sent
    /// and not waited for (its acknowledgement is collected after the next
    /// step's compute, before that step's push, so at most one push of this
    /// worker is in flight), and the next step's pull is sent right after it
    /// (or, with `training.prefetch`, before the current step's compute). A
    /// pull sent while this worker's previous push is unacknowledged may miss
    /// that push on a server with several handler threads, and a prefetched
    /// pull misses the push of the step computed meanwhile: such steps are
    /// counted (`count.stale_steps`, and the pushes they may miss,
    /// `count.stale_pushes`); the bound is one own push without prefetch, two
    /// with it. The chunk's last push is acknowledged before the chunk is
    /// reported done.
    public func train(_ lease: LeaseReply, pace: (Int) throws -> (valid: Bool, waited: Bool)) throws -> ChunkResult? {
        try declareTables()
        let epoch = Int(lease.epoch)
        let B = config.training.batchSize
        // SCENEPS_FAULT_NAN_STEP=N poisons step N's gathered rows with a NaN
        // (fault injection for tests of the non-finite-loss guard).
        let faultNaNStep = ProcessInfo.processInfo.environment["SCENEPS_FAULT_NAN_STEP"].flatMap { Int($0) }
        let rng = SplitMix64(seed: config.seed ^ KeyHash.idKey(lease.chunkFile) ^ KeyHash.mix64(UInt64(epoch)))
        var source = BatchSource(chunks: [ChunkRef(file: lease.chunkFile, count: Int(lease.chunkExamples))], dataDir: dataDir,
                                 batchSize: B, rng: rng)
        var inFlight: PSClient.PushTicket? = nil
        func settlePush() throws {
            guard let t = inFlight else { return }
            inFlight = nil
            try times.time("wait.push") { try client.wait(t) }
        }
        func sendPull(_ s: inout Stage) throws {
            s.stale = inFlight != nil ? 1 : 0
            let requested = s.requested
            s.pending = try times.time("pull_send") { try client.pull(requested, dense: [ModelTables.denseID]) }
        }
        func stage(_ s: inout Stage) throws -> Bool {
            let got = try times.time("batch") { () -> Bool in
                guard let chunk = try source.next(into: &s.samples) else { return false }
                s.chunk = chunk
                try s.assembler.index(s.samples)
                s.requested = FeatureSchema.uncached(s.assembler.pulls, caches)
                return true
            }
            if got { try sendPull(&s) }
            return got
        }
        let prefetch = config.training.prefetch ?? false   // the worker resolves auto before it builds the trainer
        let t0 = Date()
        var chunkSteps = 0, chunkExamples = 0
        var lastLoss = Double.nan
        var have = try stage(&cur)
        while have {
            if chunkSteps > 0 && chunkSteps % Pacing.every == 0 {
                let p = try pace(chunkExamples)
                guard p.valid else {
                    try settlePush()
                    if let p = cur.pending { _ = try client.wait(p) }
                    cur.pending = nil
                    logger.warning("lease taken back by the coordinator: leaving the chunk", metadata: [
                        "worker": "\(name)", "lease": "\(lease.leaseID)", "chunk": "\(lease.chunkFile)"])
                    return nil
                }
                if p.waited {   // the rows pulled for this batch are stale now: pull them again
                    _ = try times.time("wait.pull") { try client.wait(cur.pending!) }
                    try settlePush()
                    try sendPull(&cur)
                }
            }
            let pending = cur.pending!
            let pulled = try times.time("wait.pull") { try client.wait(pending) }
            cur.pending = nil
            if cur.stale > 0 {
                times.count("stale_steps")
                times.count("stale_pushes", Double(cur.stale))
            }
            times.time("gather") {
                FeatureSchema.fill(caches, requested: cur.requested, rows: pulled.sparse)
                cur.assembler.gather(rows: pulled.sparse, into: &input, cached: caches)
            }
            if steps + 1 == faultNaNStep {   // fault injection (tests): what a numeric blow-up looks like
                logger.warning("fault injection: NaN in the input of this step", metadata: ["step": "\(steps + 1)"])
                input.user[0] = .nan
            }
            var haveNext = prefetch ? try stage(&next) : false
            let samples = cur.samples
            let n = samples.count
            let loss = times.time("compute") { () -> Float in
                for i in 0..<n { labels[i] = samples.label[i] }
                for i in denseGrad.indices { denseGrad[i] = 0 }
                return pulled.dense[ModelTables.denseID]!.withUnsafeBufferPointer { params in
                    labels.withUnsafeBufferPointer { y in
                        denseGrad.withUnsafeMutableBufferPointer { g in
                            model.lossAndGradients(parameters: params, input: input,
                                                   labels: UnsafeBufferPointer(rebasing: y[0..<n]),
                                                   parameterGradient: g, inputGradient: &inputGrad, logits: &logits)
                        }
                    }
                }
            }
            guard loss.isFinite else {
                try? settlePush()
                let rows = samples.row.prefix(8).map(String.init).joined(separator: ",")
                throw ScenePSError(.training, "loss is \(loss) at step \(steps + 1) (epoch \(epoch), chunk \(cur.chunk), log rows \(rows)…): not pushing; check learning rates and the data")
            }
            let pushes = times.time("scatter") { () -> [SparseGradient] in
                let grads = cur.assembler.scatter(inputGrad)
                return zip(cur.assembler.pulls, grads)
                    .filter { !frozen.contains($0.0.tableID) }   // frozen tables are pull-only on the servers
                    .map { SparseGradient(tableID: $0.0.tableID, keys: $0.0.keys, values: $0.1) }
            }
            let lrScale = config.training.learningRateScale(
                epoch: epoch, level: Int(lease.lrLevel), examplesDone: Int(lease.sceneExamplesBefore) + chunkExamples + n,
                epochExamples: Int(lease.sceneEpochExamples))
            try settlePush()   // the previous step's: its answer came while this step computed
            inFlight = try times.time("push_send") {
                try client.push(pushes, dense: [DenseGradient(tableID: ModelTables.denseID, values: denseGrad)], lrScale: lrScale)
            }
            if syncPush { try settlePush() }
            if prefetch && haveNext { next.stale += 1 }   // its pull went before this push
            times.time("other") {
                steps += 1
                chunkSteps += 1
                examples += n
                chunkExamples += n
                lastLoss = Double(loss)
                progress.record(labels: labels[0..<n], logits: logits[0..<n], loss: Double(loss))
                metrics?.step(examples: n, loss: Double(loss), epoch: epoch)
                if steps % config.training.logEvery == 0 {
                    let auc = logProgressLine(epoch: epoch)
                    metrics?.set(runningAUC: auc)
                }
            }
            times.count("steps")
            if !prefetch { haveNext = try stage(&next) }
            swap(&cur, &next)
            have = haveNext
        }
        try settlePush()   // the chunk is done only once its every push is applied
        return ChunkResult(examples: chunkExamples, steps: chunkSteps, seconds: Date().timeIntervalSince(t0), loss: lastLoss)
    }

    /// A progress line in the log and in the progress file; returns its running AUC.
    @discardableResult
    func logProgressLine(epoch: Int) -> Double {
        let seconds = Date().timeIntervalSince(started)
        let line = progress.log(logger, worker: name, epoch: epoch, step: steps, examples: examples, seconds: seconds)
        progressFile?.progress(epoch: epoch, step: steps, examples: examples, seconds: seconds, line: line)
        return line.auc
    }

    /// A progress line now (at the end of the process).
    public func logProgress(epoch: Int) {
        logProgressLine(epoch: epoch)
        for c in caches {
            let table = tables.table(c.table).name
            if c.zeroKeys > 0 {
                logger.warning("items without a title vector read zeros", metadata: [
                    "worker": "\(name)", "table": "\(table)", "items": "\(c.zeroKeys)", "of": "\(c.count)",
                    "embeddings": "\(config.model.textEmbeddings)"])
            } else {
                logger.info("title vectors", metadata: ["worker": "\(name)", "table": "\(table)", "items": "\(c.count)",
                                                        "without_title": "0"])
            }
        }
    }

}

/// Progress alignment: how often a worker reports its chunk's progress.
enum Pacing {
    static let every = 8
}

/// One minibatch on its way through the worker: its samples, their keys
/// (the assembler) and its pull, once sent.
struct Stage {
    var samples: SampleBatch
    var assembler: BatchAssembler
    var pending: PSClient.PullTicket? = nil
    /// What `pending` asked for: the assembler's pulls without the cached keys.
    var requested: [SparsePull] = []
    var chunk = ""
    /// Pushes of this worker its pulled rows may miss: one unacknowledged
    /// when the pull was sent, and with prefetch the push of the step
    /// computed meanwhile.
    var stale = 0
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

    /// Logs a progress line; returns its values.
    @discardableResult
    func log(_ logger: Logger, worker: String, epoch: Int, step: Int, examples: Int, seconds: Double) -> ProgressLine {
        let recent = losses.suffix(logEvery)
        let loss = recent.isEmpty ? .nan : recent.reduce(0, +) / Double(recent.count)
        let auc = Evaluation.auc(labels: Array(labels.suffix(window)), scores: Array(scores.suffix(window)))
        let rate = seconds > 0 ? Double(examples) / seconds : 0
        logger.info("progress", metadata: [
            "worker": "\(worker)", "epoch": "\(epoch)", "step": "\(step)", "examples": "\(examples)",
            "examples_per_sec": "\(Int(rate))", "loss": "\(String(format: "%.4f", loss))",
            "running_auc": "\(String(format: "%.4f", auc))",
        ])
        return ProgressLine(loss: loss, auc: auc, rate: rate)
    }
}

/// The values of one progress line.
struct ProgressLine {
    var loss: Double, auc: Double, rate: Double
}
