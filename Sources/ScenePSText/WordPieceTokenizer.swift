import Foundation
import ScenePSCore

/// BERT's WordPiece tokenizer, configured from a Hugging Face
/// `tokenizer.json` (the file the reference's fast tokenizer reads):
///
/// - special tokens (`added_tokens` with `special: true`) are matched in the
///   raw text first, as the reference does, and map straight to their ids;
/// - the rest goes through `BertBasicTokenizer` (normaliser and
///   pre-tokeniser options from the file);
/// - each word is split greedily, longest match first, continuation pieces
///   prefixed `##`; a word with no split, or longer than
///   `max_input_chars_per_word` characters, is one `[UNK]`;
/// - `[CLS] … [SEP]` around it, after truncating the pieces so the whole
///   sequence is at most `maxLength` tokens.
///
/// Only the configuration all-MiniLM-L6-v2 uses is accepted; anything else
/// in the file is an error naming the key, not a silently different
/// tokenization.
public struct WordPieceTokenizer: Sendable {
    public let basic: BertBasicTokenizer
    public let vocab: [String: Int32]
    public let unkID: Int32
    public let clsID: Int32
    public let sepID: Int32
    public let padID: Int32
    public let continuingPrefix: String
    public let maxInputCharsPerWord: Int
    /// Longest sequence produced, `[CLS]` and `[SEP]` included.
    public let maxLength: Int
    /// Special tokens matched in the raw text, longest first.
    let specialTokens: [(text: [UInt8], id: Int32)]

    /// Reads `path` (a tokenizer.json). `maxLength` is the model's maximum
    /// sequence length (sentence-transformers' `max_seq_length`), which
    /// overrides the file's own truncation setting as the reference does.
    public init(path: String, maxLength: Int) throws {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw ScenePSError.io("\(path): cannot read tokenizer (\(error.localizedDescription))")
        }
        try self.init(json: data, path: path, maxLength: maxLength)
    }

    public init(json data: Data, path: String, maxLength: Int) throws {
        func fail(_ what: String) -> ScenePSError { ScenePSError.data("\(path): \(what)") }
        let root: [String: Any]
        do {
            guard let r = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw fail("tokenizer file is not a JSON object")
            }
            root = r
        } catch let e as ScenePSError {
            throw e
        } catch {
            throw fail("tokenizer file does not parse as JSON (\(error.localizedDescription))")
        }
        guard let model = root["model"] as? [String: Any] else { throw fail("tokenizer file has no \"model\" object") }
        guard (model["type"] as? String) == "WordPiece" else {
            throw fail("model.type is \(model["type"].map { "\"\($0)\"" } ?? "missing"), only \"WordPiece\" is supported")
        }
        guard let rawVocab = model["vocab"] as? [String: Any], !rawVocab.isEmpty else {
            throw fail("model.vocab is missing or empty")
        }
        var vocab: [String: Int32] = [:]
        vocab.reserveCapacity(rawVocab.count)
        for (token, v) in rawVocab {
            guard let id = v as? Int, id >= 0, id < Int(Int32.max) else { throw fail("model.vocab[\"\(token)\"] is not a token id") }
            vocab[token] = Int32(id)
        }
        let unk = (model["unk_token"] as? String) ?? "[UNK]"
        guard let unkID = vocab[unk] else { throw fail("model.unk_token \"\(unk)\" is not in the vocabulary") }
        continuingPrefix = (model["continuing_subword_prefix"] as? String) ?? "##"
        maxInputCharsPerWord = (model["max_input_chars_per_word"] as? Int) ?? 100

        // Normaliser.
        guard let norm = root["normalizer"] as? [String: Any], (norm["type"] as? String) == "BertNormalizer" else {
            throw fail("normalizer is not a BertNormalizer (the only one supported)")
        }
        let lowercase = (norm["lowercase"] as? Bool) ?? true
        let strip: Bool
        if let s = norm["strip_accents"], !(s is NSNull) {
            guard let b = s as? Bool else { throw fail("normalizer.strip_accents is not true, false or null") }
            strip = b
        } else {
            strip = lowercase
        }
        basic = BertBasicTokenizer(cleanText: (norm["clean_text"] as? Bool) ?? true,
                                   handleChineseChars: (norm["handle_chinese_chars"] as? Bool) ?? true,
                                   stripAccents: strip, lowercase: lowercase)
        if let pre = root["pre_tokenizer"] as? [String: Any] {
            guard (pre["type"] as? String) == "BertPreTokenizer" else {
                throw fail("pre_tokenizer.type is \"\(pre["type"] ?? "?")\", only BertPreTokenizer is supported")
            }
        } else {
            throw fail("tokenizer file has no pre_tokenizer")
        }

        // Special tokens: [CLS] and [SEP] from the post-processor's single template.
        guard let post = root["post_processor"] as? [String: Any], let special = post["special_tokens"] as? [String: Any] else {
            throw fail("post_processor.special_tokens is missing")
        }
        func specialID(_ name: String) throws -> Int32 {
            guard let e = special[name] as? [String: Any], let ids = e["ids"] as? [Int], ids.count == 1 else {
                throw fail("post_processor.special_tokens has no single id for \(name)")
            }
            return Int32(ids[0])
        }
        if let single = post["single"] as? [[String: Any]] {
            let kinds = single.map { $0.keys.first ?? "" }
            guard kinds == ["SpecialToken", "Sequence", "SpecialToken"] else {
                throw fail("post_processor.single is not [CLS] sequence [SEP]")
            }
        }
        clsID = try specialID("[CLS]")
        sepID = try specialID("[SEP]")
        padID = vocab["[PAD]"] ?? 0
        var specials: [(text: [UInt8], id: Int32)] = []
        for t in (root["added_tokens"] as? [[String: Any]]) ?? [] {
            guard (t["special"] as? Bool) == true, let content = t["content"] as? String, let id = t["id"] as? Int else { continue }
            guard (t["normalized"] as? Bool) != true, (t["single_word"] as? Bool) != true,
                  (t["lstrip"] as? Bool) != true, (t["rstrip"] as? Bool) != true else {
                throw fail("added token \"\(content)\" uses normalized/single_word/lstrip/rstrip, which are not supported")
            }
            specials.append((Array(content.utf8), Int32(id)))
        }
        specialTokens = specials.sorted { $0.text.count > $1.text.count }
        guard maxLength >= 2 else { throw fail("maximum sequence length \(maxLength) leaves no room for [CLS] and [SEP]") }
        self.maxLength = maxLength
        self.vocab = vocab
        self.unkID = unkID
    }

    /// Token ids of `text`, `[CLS]` and `[SEP]` included, at most `maxLength`.
    public func encode(_ text: String) -> [Int32] {
        var ids: [Int32] = [clsID]
        let budget = maxLength - 2
        for segment in splitOnSpecialTokens(text) {
            if ids.count - 1 >= budget { break }
            switch segment {
            case .special(let id):
                ids.append(id)
            case .text(let s):
                for word in basic.words(s) {
                    appendWordPieces(word, to: &ids)
                    if ids.count - 1 >= budget { break }
                }
            }
        }
        if ids.count - 1 > budget { ids.removeLast(ids.count - 1 - budget) }
        ids.append(sepID)
        return ids
    }

    enum Segment: Equatable {
        case text(String)
        case special(Int32)
    }

    /// The raw text cut at every occurrence of a special token.
    func splitOnSpecialTokens(_ text: String) -> [Segment] {
        if specialTokens.isEmpty { return [.text(text)] }
        let bytes = Array(text.utf8)
        guard bytes.contains(UInt8(ascii: "[")) || specialTokens.contains(where: { $0.text.first != UInt8(ascii: "[") }) else {
            return [.text(text)]
        }
        var out: [Segment] = []
        var start = 0, i = 0
        scan: while i < bytes.count {
            for t in specialTokens where i + t.text.count <= bytes.count && bytes[i] == t.text[0] {
                if bytes[i..<(i + t.text.count)].elementsEqual(t.text) {
                    if start < i { out.append(.text(String(decoding: bytes[start..<i], as: UTF8.self))) }
                    out.append(.special(t.id))
                    i += t.text.count
                    start = i
                    continue scan
                }
            }
            i += 1
        }
        if start < bytes.count { out.append(.text(String(decoding: bytes[start...], as: UTF8.self))) }
        return out
    }

    /// WordPiece of one word: greedy longest match first.
    func appendWordPieces(_ word: [Unicode.Scalar], to ids: inout [Int32]) {
        if word.count > maxInputCharsPerWord { ids.append(unkID); return }
        let mark = ids.count
        var start = 0
        var piece = String.UnicodeScalarView()
        while start < word.count {
            var end = word.count
            var found: Int32? = nil
            while start < end {
                piece.removeAll(keepingCapacity: true)
                if start > 0 { piece.append(contentsOf: continuingPrefix.unicodeScalars) }
                piece.append(contentsOf: word[start..<end])
                if let id = vocab[String(piece)] { found = id; break }
                end -= 1
            }
            guard let id = found else {
                ids.removeLast(ids.count - mark)
                ids.append(unkID)
                return
            }
            ids.append(id)
            start = end
        }
    }
}
