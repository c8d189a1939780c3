import Foundation
import ScenePSCore

/// Embeds many titles with a `SentenceEmbeddingModel`: tokenises them,
/// groups titles of similar token length into batches (sorted by length,
/// so a batch pads to within a token or two), runs the batches on
/// `threads` threads and writes one L2-normalised row per title, in the
/// titles' order.
///
/// Parallelism: each thread runs whole batches with single-threaded
/// OpenBLAS (`.batches`), or one thread runs every batch with OpenBLAS
/// using `threads` threads (`.blas`). Splitting batches also parallelises
/// the attention, GELU and LayerNorm loops; BENCHMARKS.md has the measured
/// difference at 2 threads.
public struct TitleEmbedder: Sendable {
    public enum Parallelism: String, Sendable, CaseIterable {
        case batches, blas
    }

    public let model: SentenceEmbeddingModel
    public var threads: Int
    public var parallelism: Parallelism
    /// Padded tokens per batch (count × longest); bounds the workspace.
    public var batchTokens: Int
    /// Titles per batch at most.
    public var maxBatch: Int

    public init(model: SentenceEmbeddingModel, threads: Int = 1, parallelism: Parallelism = .batches,
                batchTokens: Int = 2048, maxBatch: Int = 128) {
        precondition(threads >= 1 && batchTokens >= 1 && maxBatch >= 1)
        self.model = model
        self.threads = threads
        self.parallelism = parallelism
        self.batchTokens = max(batchTokens, model.maxLength)
        self.maxBatch = maxBatch
    }

    /// Batches of indices into `lengths`, shortest sequences first.
    public static func batches(lengths: [Int], batchTokens: Int, maxBatch: Int) -> [[Int]] {
        let order = lengths.indices.sorted { (lengths[$0], $0) < (lengths[$1], $1) }
        var out: [[Int]] = []
        var current: [Int] = []
        for i in order {
            let longest = lengths[i]   // ascending: the newest is the longest
            if !current.isEmpty && (current.count + 1 > maxBatch || (current.count + 1) * longest > batchTokens) {
                out.append(current)
                current.removeAll(keepingCapacity: true)
            }
            current.append(i)
        }
        if !current.isEmpty { out.append(current) }
        return out
    }

    /// Embeddings of `titles`, `titles.count × dimension`, row-major.
    /// `progress(done)` is called after each batch (from the running thread,
    /// serialised).
    public func embed(_ titles: [String], progress: (@Sendable (Int) -> Void)? = nil) -> [Float] {
        let ids = tokenize(titles)
        return embed(tokenIDs: ids, progress: progress)
    }

    /// Token ids of every title, on `threads` threads.
    public func tokenize(_ titles: [String]) -> [[Int32]] {
        let out = SharedSlots<[Int32]>(count: titles.count, initial: [])
        let tokenizer = model.tokenizer
        let n = titles.count
        let parts = min(threads, max(1, n / 256))
        DispatchQueue.concurrentPerform(iterations: parts) { part in
            for i in stride(from: part, to: n, by: parts) { out.set(i, tokenizer.encode(titles[i])) }
        }
        return out.values
    }

    public func embed(tokenIDs ids: [[Int32]], progress: (@Sendable (Int) -> Void)? = nil) -> [Float] {
        let d = model.dimension
        var result = [Float](repeating: .nan, count: ids.count * d)
        let plan = Self.batches(lengths: ids.map(\.count), batchTokens: batchTokens, maxBatch: maxBatch)
        let workers = parallelism == .batches ? min(threads, max(plan.count, 1)) : 1
        BertKernels.setBLASThreads(parallelism == .batches ? 1 : threads)
        let encoder = model.encoder
        let tokens = batchTokens
        let state = BatchQueue(count: plan.count)
        result.withUnsafeMutableBufferPointer { res in
            let out = SendablePointer(res.baseAddress!)
            DispatchQueue.concurrentPerform(iterations: workers) { _ in
                let ws = BertEncoder.Workspace(config: encoder.config, tokens: tokens)
                var rows = [Float](repeating: 0, count: min(maxBatch, plan.map(\.count).max() ?? 1) * d)
                while let b = state.next() {
                    let members = plan[b]
                    let batch = members.map { ids[$0] }
                    rows.withUnsafeMutableBufferPointer { r in
                        encoder.embed(batch, into: r.baseAddress!, workspace: ws)
                        for (k, i) in members.enumerated() {
                            (out.pointer + i * d).update(from: r.baseAddress! + k * d, count: d)
                        }
                    }
                    let done = state.finished(members.count)
                    if let progress { state.serialised { progress(done) } }
                }
            }
        }
        return result
    }
}

/// Hands out batch indices to the threads and counts finished titles.
final class BatchQueue: @unchecked Sendable {
    private let lock = NSLock()
    private let progressLock = NSLock()
    private var nextIndex = 0
    private let count: Int
    private var done = 0

    init(count: Int) { self.count = count }

    func next() -> Int? {
        lock.lock(); defer { lock.unlock() }
        guard nextIndex < count else { return nil }
        nextIndex += 1
        return nextIndex - 1
    }

    func finished(_ n: Int) -> Int {
        lock.lock(); defer { lock.unlock() }
        done += n
        return done
    }

    func serialised(_ body: () -> Void) {
        progressLock.lock(); defer { progressLock.unlock() }
        body()
    }
}

/// Output slots written by index from several threads (each index by one thread).
final class SharedSlots<T>: @unchecked Sendable {
    private let base: UnsafeMutablePointer<T>
    let count: Int

    init(count: Int, initial: T) {
        self.count = count
        base = .allocate(capacity: max(count, 1))
        base.initialize(repeating: initial, count: count)
    }

    deinit {
        base.deinitialize(count: count)
        base.deallocate()
    }

    func set(_ i: Int, _ v: T) { base[i] = v }
    var values: [T] { Array(UnsafeBufferPointer(start: base, count: count)) }
}

/// A pointer whose disjoint rows are written by different threads.
struct SendablePointer: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    init(_ p: UnsafeMutablePointer<Float>) { pointer = p }
}
