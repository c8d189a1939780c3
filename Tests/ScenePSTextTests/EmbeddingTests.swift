import Foundation
import ScenePSCore
import XCTest
@testable import ScenePSText

final class EmbeddingTests: XCTestCase {
    /// Every fixture embedding to cosine >= 0.9999 with the reference, each
    /// title embedded alone and all of them in one padded batch.
    func testFixtureEmbeddingsMatchReference() throws {
        let fixture = try loadFixture()
        let model = try TestModel.load()
        let d = model.dimension
        XCTAssertEqual(d, 384)
        let embedder = TitleEmbedder(model: model, threads: 1)
        let together = embedder.embed(fixture.cases.map(\.title))
        var worst = 1.0
        for (i, c) in fixture.cases.enumerated() {
            XCTAssertEqual(c.embedding.count, d)
            let alone = embedder.embed([c.title])
            let cosAlone = cosine(alone[...], c.embedding)
            let cosBatch = cosine(together[(i * d)..<((i + 1) * d)], c.embedding)
            // Against the reference's embeddings: measured ≥ 0.99999999999 under Nehalem..SkylakeX and Zen
            // kernels; 0.9999 leaves room for any kernel's Float round-off through 6 layers, and a wrong
            // layer, mask or pooling falls far below it.
            XCTAssertGreaterThanOrEqual(cosAlone, 0.9999, "\"\(c.title.prefix(60))\" alone")
            XCTAssertGreaterThanOrEqual(cosBatch, 0.9999, "\"\(c.title.prefix(60))\" in a batch")
            worst = min(worst, cosAlone, cosBatch)
            // Unit length, and never a zero vector.
            let norm = alone.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot()
            XCTAssertEqual(norm, 1, accuracy: 1e-4)   // normalised in Float over 384 terms: γ_384 ≈ 2.3e-5 at worst
        }
        print("minilm fixture: min cosine \(worst) over \(fixture.cases.count) titles")
    }

    /// A padded batch (one title with many shorter ones) gives each title the
    /// embedding it has alone: the attention mask and the pooling ignore padding.
    func testPaddingDoesNotChangeEmbeddings() throws {
        let model = try TestModel.load()
        let titles = ["a", "red shoes", "vintage leather messenger bag with brass buckles", "x y z w v u t s r q p o n m"]
        let ids = titles.map { model.tokenizer.encode($0) }
        let d = model.dimension
        let ws = BertEncoder.Workspace(config: model.encoder.config, tokens: 4096)
        var batch = [Float](repeating: 0, count: titles.count * d)
        batch.withUnsafeMutableBufferPointer { model.encoder.embed(ids, into: $0.baseAddress!, workspace: ws) }
        for (i, seq) in ids.enumerated() {
            var alone = [Float](repeating: 0, count: d)
            alone.withUnsafeMutableBufferPointer { model.encoder.embed([seq], into: $0.baseAddress!, workspace: ws) }
            XCTAssertGreaterThan(cosine(batch[(i * d)..<((i + 1) * d)], alone), 0.99999, titles[i])
        }
    }

    /// Two threads (either way of using them) give the rows one thread gives, in the same order.
    func testThreadedEmbeddingEqualsSingleThreaded() throws {
        let model = try TestModel.load()
        let titles = (0..<120).map { i in "item \(i) " + String(repeating: "word\(i % 7) ", count: i % 13) }
        let one = TitleEmbedder(model: model, threads: 1, batchTokens: 512).embed(titles)
        for p in TitleEmbedder.Parallelism.allCases {
            let two = TitleEmbedder(model: model, threads: 2, parallelism: p, batchTokens: 512).embed(titles)
            XCTAssertEqual(two.count, one.count)
            var worst = 1.0
            for i in titles.indices { worst = min(worst, cosine(two[(i * 384)..<((i + 1) * 384)], Array(one[(i * 384)..<((i + 1) * 384)]))) }
            XCTAssertGreaterThan(worst, 0.99999, "\(p)")
            XCTAssertFalse(two.contains { $0.isNaN })
        }
    }

    func testBatchesGroupSimilarLengthsWithinBudget() {
        let lengths = [5, 30, 5, 7, 30, 2, 256, 9]
        let b = TitleEmbedder.batches(lengths: lengths, batchTokens: 60, maxBatch: 3)
        XCTAssertEqual(b.flatMap { $0 }.sorted(), Array(lengths.indices))
        for batch in b {
            XCTAssertLessThanOrEqual(batch.count, 3)
            let longest = batch.map { lengths[$0] }.max()!
            XCTAssertTrue(batch.count == 1 || batch.count * longest <= 60, "\(batch)")
        }
        XCTAssertEqual(b.first, [5, 0, 2])   // shortest first
    }
}
