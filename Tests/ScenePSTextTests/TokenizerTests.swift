import Foundation
import ScenePSCore
import XCTest
@testable import ScenePSText

final class TokenizerTests: XCTestCase {
    /// The reference tokenizer's ids for all 11 fixture titles, exactly.
    func testFixtureTokenIDsMatchExactly() throws {
        let fixture = try loadFixture()
        XCTAssertEqual(fixture.cases.count, 11)
        let model = try TestModel.load()
        XCTAssertEqual(model.maxLength, 256)
        for c in fixture.cases {
            let ids = model.tokenizer.encode(c.title)
            XCTAssertEqual(ids.count, c.token_ids.count, "length of \"\(c.title.prefix(60))\"")
            XCTAssertEqual(ids, c.token_ids, "ids of \"\(c.title.prefix(60))\"")
        }
        // The over-long title is the one that exercises truncation.
        XCTAssertTrue(fixture.cases.contains { $0.token_ids.count == 256 })
    }

    /// Awkward titles (special case mappings, Hangul, fullwidth forms,
    /// combining marks, Cf and control characters, emoji, other scripts,
    /// symbols, special-token text, over-long words, truncation) against the
    /// reference tokenizer's ids (tools/gen_tokenizer_cases.py).
    func testEdgeCaseTokenIDsMatchReferenceTokenizer() throws {
        struct Cases: Decodable { var cases: [FixtureCase2] }
        struct FixtureCase2: Decodable { var title: String; var token_ids: [Int32] }
        let data = try Data(contentsOf: URL(fileURLWithPath: fixtureDirectory + "/tokenizer-edge-cases.json"))
        let cases = try JSONDecoder().decode(Cases.self, from: data).cases
        XCTAssertGreaterThanOrEqual(cases.count, 20)
        let t = try TestModel.load().tokenizer
        for c in cases {
            XCTAssertEqual(t.encode(c.title), c.token_ids, "ids of \(c.title.prefix(50).debugDescription)")
        }
    }

    func testBasicTokenizerSplitsAsBERTDoes() {
        let b = BertBasicTokenizer()
        func words(_ s: String) -> [String] { b.words(s).map { String(String.UnicodeScalarView($0)) } }
        XCTAssertEqual(words("Hello, WORLD!"), ["hello", ",", "world", "!"])
        XCTAssertEqual(words("Café crème brûlée"), ["cafe", "creme", "brulee"])
        XCTAssertEqual(words("抹茶 matcha"), ["抹", "茶", "matcha"])
        XCTAssertEqual(words("a\u{0}b\u{FFFD}c\u{200B}d"), ["abcd"])          // NUL, U+FFFD, Cf dropped
        XCTAssertEqual(words("tab\there\nnew\u{3000}line"), ["tab", "here", "new", "line"])
        XCTAssertEqual(words("$5+3=8 ^_^ a|b ~x `y"), ["$", "5", "+", "3", "=", "8", "^", "_", "^", "a", "|", "b", "~", "x", "`", "y"])
        XCTAssertEqual(words("«quoted»—dash…"), ["«", "quoted", "»", "—", "dash", "…"])  // Unicode P*
        XCTAssertEqual(words("ÅNGSTRÖM Ωmega"), ["angstrom", "ωmega"])
        XCTAssertEqual(words(""), [])
        XCTAssertEqual(words("   "), [])
    }

    func testWordPieceGreedyLongestMatchAndUnknown() throws {
        let model = try TestModel.load()
        let t = model.tokenizer
        // Unknown word: greedy pieces; a character with no piece makes the whole word [UNK].
        XCTAssertEqual(t.encode("unbelievablyxyzzy"), [101, 4895, 8671, 2666, 3567, 6321, 18037, 28753, 102])
        XCTAssertEqual(t.encode("\u{1F600}"), [101, t.unkID, 102])
        // A word over max_input_chars_per_word characters is one [UNK].
        XCTAssertEqual(t.encode(String(repeating: "a", count: 101)), [101, t.unkID, 102])
        XCTAssertNotEqual(t.encode(String(repeating: "a", count: 100)), [101, t.unkID, 102])
        // Special tokens in the raw text map to their ids, as the reference's added-token matching does.
        XCTAssertEqual(t.encode("a [SEP] b[MASK]"), [101, 1037, 102, 1038, 103, 102])
        // Truncation keeps [SEP] last.
        let long = t.encode(String(repeating: "bag ", count: 1000))
        XCTAssertEqual(long.count, 256)
        XCTAssertEqual(long.last, 102)
    }

    func testTokenizerFileThatDoesNotParse() throws {
        let dir = try makeTempDirectory(self)
        let path = dir + "/tokenizer.json"
        try writeBytes(path, Array("{\"model\": {\"type\": \"WordPiece\", ".utf8))
        assertThrows([path, "does not parse as JSON"]) { try WordPieceTokenizer(path: path, maxLength: 256) }
        try writeBytes(path, Array("[1, 2, 3]".utf8))
        assertThrows([path, "not a JSON object"]) { try WordPieceTokenizer(path: path, maxLength: 256) }
        try writeBytes(path, Array("{\"model\": {\"type\": \"BPE\", \"vocab\": {}}}".utf8))
        assertThrows([path, "model.type", "WordPiece"]) { try WordPieceTokenizer(path: path, maxLength: 256) }
        assertThrows([dir + "/missing.json", "cannot read tokenizer"]) { try WordPieceTokenizer(path: dir + "/missing.json", maxLength: 256) }
    }
}
