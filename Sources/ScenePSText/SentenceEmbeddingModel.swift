import Foundation
import ScenePSCore

/// A sentence-transformers model directory loaded and checked: tokenizer,
/// BERT encoder over the mapped weights, and the pooling the directory
/// declares (mean over tokens, then L2 normalisation — the only one
/// supported). Every inconsistency is an error naming the file.
public final class SentenceEmbeddingModel: @unchecked Sendable {
    public let directory: String
    public let tokenizer: WordPieceTokenizer
    public let encoder: BertEncoder
    /// Longest token sequence, `[CLS]` and `[SEP]` included.
    public let maxLength: Int
    public var dimension: Int { encoder.config.hidden }

    public init(directory: String) throws {
        try ModelFiles.check(directory: directory)
        self.directory = directory
        let config = try BertConfig.read(path: directory + "/config.json")

        // Maximum length: sentence-transformers' max_seq_length wins over the tokenizer's own.
        let stPath = directory + "/sentence_bert_config.json"
        let st = try ModelFiles.jsonObject(path: stPath, what: "sentence-transformers config")
        guard let maxSeq = st["max_seq_length"] as? Int, maxSeq >= 2 else {
            throw ScenePSError.data("\(stPath): \"max_seq_length\" is missing or below 2")
        }
        guard maxSeq <= config.maxPositions else {
            throw ScenePSError.data("\(stPath): max_seq_length \(maxSeq) exceeds the model's max_position_embeddings \(config.maxPositions)")
        }
        maxLength = maxSeq

        let poolPath = directory + "/1_Pooling/config.json"
        let pool = try ModelFiles.jsonObject(path: poolPath, what: "pooling config")
        guard (pool["pooling_mode_mean_tokens"] as? Bool) == true,
              ["pooling_mode_cls_token", "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens"].allSatisfy({ (pool[$0] as? Bool) != true }) else {
            throw ScenePSError.data("\(poolPath): only mean pooling (pooling_mode_mean_tokens alone) is supported")
        }
        if let dim = pool["word_embedding_dimension"] as? Int, dim != config.hidden {
            throw ScenePSError.data("\(poolPath): word_embedding_dimension \(dim) differs from config.json's hidden_size \(config.hidden)")
        }
        let modulesPath = directory + "/modules.json"
        if FileManager.default.fileExists(atPath: modulesPath) {
            let data = (try? Data(contentsOf: URL(fileURLWithPath: modulesPath))) ?? Data()
            guard let modules = (try? JSONSerialization.jsonObject(with: data)) as? [[String: Any]] else {
                throw ScenePSError.data("\(modulesPath): not a JSON list of modules")
            }
            let types = modules.compactMap { $0["type"] as? String }
            guard types.contains(where: { $0.hasSuffix("models.Normalize") }) else {
                throw ScenePSError.data("\(modulesPath): the model has no Normalize module; only L2-normalised embeddings are supported")
            }
        }

        let tokPath = directory + "/tokenizer.json"
        tokenizer = try WordPieceTokenizer(path: tokPath, maxLength: maxLength)
        if let bad = tokenizer.vocab.first(where: { Int($0.value) >= config.vocabSize }) {
            throw ScenePSError.data("\(tokPath): token \"\(bad.key)\" has id \(bad.value), beyond the model's vocab_size \(config.vocabSize)")
        }
        for id in [tokenizer.clsID, tokenizer.sepID, tokenizer.unkID] + tokenizer.specialTokens.map(\.id) where Int(id) >= config.vocabSize || id < 0 {
            throw ScenePSError.data("\(tokPath): special token id \(id) is outside the model's vocab_size \(config.vocabSize)")
        }
        let weights = try SafeTensors(path: directory + "/model.safetensors")
        encoder = try BertEncoder(weights: weights, config: config)
    }

    /// What identifies this model in an embedding cache's meta.json.
    public func fingerprint() throws -> EmbeddingCache.ModelInfo {
        try EmbeddingCache.ModelInfo.of(directory: directory)
    }
}

extension EmbeddingCache.ModelInfo {
    /// The fingerprint of the model in `directory` from its files alone
    /// (no tokenizer or encoder built), for a consumer that only checks a cache.
    public static func of(directory: String) throws -> EmbeddingCache.ModelInfo {
        try ModelFiles.check(directory: directory)
        let config = try BertConfig.read(path: directory + "/config.json")
        let stPath = directory + "/sentence_bert_config.json"
        guard let maxSeq = try ModelFiles.jsonObject(path: stPath, what: "sentence-transformers config")["max_seq_length"] as? Int else {
            throw ScenePSError.data("\(stPath): \"max_seq_length\" is missing")
        }
        let weights = try MappedFile(path: directory + "/model.safetensors")
        return EmbeddingCache.ModelInfo(
            name: ModelFiles.modelName, directory: directory,
            weightsBytes: weights.size,
            weightsHash: ContentHash.hex(weights.withBytes { ContentHash.of(bytes: $0) }),
            tokenizerHash: ContentHash.hex(try ContentHash.of(file: directory + "/tokenizer.json")),
            configHash: ContentHash.hex(try ContentHash.of(file: directory + "/config.json")),
            maxLength: maxSeq, dimension: config.hidden)
    }
}
