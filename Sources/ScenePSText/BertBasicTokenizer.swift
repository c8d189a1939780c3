import Foundation

/// BERT's text normalisation and word splitting, as Hugging Face tokenizers'
/// `BertNormalizer` and `BertPreTokenizer` do them (the `tokenizer.json` of
/// all-MiniLM-L6-v2 names both):
///
/// 1. clean text: drop NUL, U+FFFD and "other" characters (Cc, Cf, Cs, Co,
///    Cn) except tab, LF and CR; every White_Space character becomes a space;
/// 2. CJK ideographs (the CJK Unified Ideographs blocks and their extensions,
///    the compatibility ideographs) get a space on each side;
/// 3. accent stripping: NFD, then every nonspacing mark (Mn) dropped
///    (`strip_accents: null` means "when lower-casing");
/// 4. lower-casing with the full Unicode mapping, one character at a time;
/// 5. split on whitespace, and every punctuation character is a word of its
///    own: ASCII 33-47, 58-64, 91-96, 123-126 and the Unicode P* categories.
public struct BertBasicTokenizer: Sendable, Equatable {
    public var cleanText = true
    public var handleChineseChars = true
    public var stripAccents = true
    public var lowercase = true

    public init(cleanText: Bool = true, handleChineseChars: Bool = true, stripAccents: Bool = true, lowercase: Bool = true) {
        self.cleanText = cleanText
        self.handleChineseChars = handleChineseChars
        self.stripAccents = stripAccents
        self.lowercase = lowercase
    }

    /// The normalised text as Unicode scalars (steps 1-4).
    public func normalize(_ text: String) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(text.unicodeScalars.count + 8)
        var ascii = true
        for c in text.unicodeScalars {
            if c.value >= 0x80 { ascii = false }
            if cleanText {
                if c.value == 0 || c.value == 0xFFFD || Self.isControl(c) { continue }
                if Self.isWhitespace(c) { out.append(" "); continue }
            }
            if handleChineseChars && Self.isChineseChar(c) {
                out.append(" "); out.append(c); out.append(" ")
                continue
            }
            out.append(c)
        }
        if ascii {
            // Nothing to decompose; ASCII lower-casing is the Unicode one there.
            if lowercase {
                for i in out.indices where out[i].value >= 65 && out[i].value <= 90 {
                    out[i] = Unicode.Scalar(out[i].value + 32)!
                }
            }
            return out
        }
        if stripAccents {
            var s = String.UnicodeScalarView()
            s.append(contentsOf: out)
            let nfd = String(s).decomposedStringWithCanonicalMapping
            out.removeAll(keepingCapacity: true)
            for c in nfd.unicodeScalars where c.properties.generalCategory != .nonspacingMark {
                out.append(c)
            }
        }
        if lowercase {
            var lowered: [Unicode.Scalar] = []
            lowered.reserveCapacity(out.count)
            for c in out {
                if c.value < 0x80 {
                    lowered.append(c.value >= 65 && c.value <= 90 ? Unicode.Scalar(c.value + 32)! : c)
                } else {
                    lowered.append(contentsOf: c.properties.lowercaseMapping.unicodeScalars)
                }
            }
            out = lowered
        }
        return out
    }

    /// The words of `text` (steps 1-5), each as Unicode scalars.
    public func words(_ text: String) -> [[Unicode.Scalar]] {
        let chars = normalize(text)
        var words: [[Unicode.Scalar]] = []
        var current: [Unicode.Scalar] = []
        for c in chars {
            if Self.isWhitespace(c) {
                if !current.isEmpty { words.append(current); current.removeAll(keepingCapacity: true) }
            } else if Self.isPunctuation(c) {
                if !current.isEmpty { words.append(current); current.removeAll(keepingCapacity: true) }
                words.append([c])
            } else {
                current.append(c)
            }
        }
        if !current.isEmpty { words.append(current) }
        return words
    }

    // MARK: - Character classes (tokenizers' bert normaliser and pre-tokeniser)

    /// Tab, LF and CR count as whitespace, not as control characters.
    static func isWhitespace(_ c: Unicode.Scalar) -> Bool {
        switch c.value {
        case 9, 10, 13, 32: return true
        default: return c.value >= 0x80 && c.properties.isWhitespace
        }
    }

    /// Rust's `char::is_other`: Cc, Cf, Cs, Co, Cn; tab, LF and CR excluded.
    static func isControl(_ c: Unicode.Scalar) -> Bool {
        switch c.value {
        case 9, 10, 13: return false
        case 0x20..<0x7F: return false
        default:
            switch c.properties.generalCategory {
            case .control, .format, .surrogate, .privateUse, .unassigned: return true
            default: return false
            }
        }
    }

    static func isPunctuation(_ c: Unicode.Scalar) -> Bool {
        let v = c.value
        if (33...47).contains(v) || (58...64).contains(v) || (91...96).contains(v) || (123...126).contains(v) { return true }
        if v < 0x80 { return false }
        switch c.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation:
            return true
        default:
            return false
        }
    }

    static func isChineseChar(_ c: Unicode.Scalar) -> Bool {
        switch c.value {
        case 0x4E00...0x9FFF, 0x3400...0x4DBF, 0x20000...0x2A6DF, 0x2A700...0x2B73F,
             0x2B740...0x2B81F, 0x2B820...0x2CEAF, 0xF900...0xFAFF, 0x2F800...0x2FA1F:
            return true
        default:
            return false
        }
    }
}
