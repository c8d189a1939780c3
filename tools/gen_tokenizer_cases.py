#!/usr/bin/env python3
"""Regenerates Tests/ScenePSTextTests/Fixtures/tokenizer-edge-cases.json: token
ids of awkward titles from the reference tokenizer (Hugging Face `tokenizers`,
loading the model directory's tokenizer.json through sentence-transformers'
AutoTokenizer, truncated at the model's 256 tokens).

    .venv-st/bin/python tools/gen_tokenizer_cases.py [MODEL_DIR]
"""
import json
import os
import sys

from transformers import AutoTokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = [
    "İstanbul ΣΊΣΥΦΟΣ straße ǅemal",            # special case mappings, final sigma, titlecase digraph
    "한국어 키보드",                               # Hangul: NFD into conjoining jamo
    "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",            # fullwidth forms (no NFKC: not folded)
    "e\u0301cole na\u00efve co\u00f6perate",       # combining and precomposed accents
    "zero\u200bwidth\u200djoin\ufeffbom",          # Cf characters dropped
    "tab\tnew\nline\r\ncr\u00a0nbsp\u3000ideo",    # whitespace kinds
    "ctrl\u0001\u0007\u007f\u0085x",               # control characters (NEL is Cc: dropped)
    "emoji \U0001F600\U0001F44D\U0001F3FD flags \U0001F1EB\U0001F1F7",
    "العربية עברית ไทย हिन्दी",                   # scripts without spaces or with marks
    "日本語のテキスト、中文字符。",                  # CJK ideographs split, kana not
    "math ∑∫√ ≤≥ ½ ™ © ° µ",                       # symbols (not punctuation) and compatibility chars
    "quotes “curly” ‘single’ «guillemets» ¿que? ¡si!",
    "dashes – — ‐ hyphen‑nb … ellipsis",
    "price $19.99 €5,00 £3 ¥100 #1 @home 50% a&b a/b a\\b",
    "[CLS] inside [SEP] and [MASK]ed [UNK] [PAD]",
    "[cls] lower [Sep] not special",
    "x" * 99 + " " + "y" * 100 + " " + "z" * 101,
    "antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "   leading and trailing   ",
    "\ufffd replacement \u0000 nul",
    "ÅÄÖ åäö ØÆ øæ Ł ł Đ đ ß",
    "ǈ ǋ Ǳ ﬁ ﬂ ligatures",
    " ".join(["word%d" % i for i in range(300)]),
]


def main():
    model = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.environ.get("SCENEPS_CACHE") or os.path.expanduser("~/.cache/sceneps"), "all-MiniLM-L6-v2")
    tok = AutoTokenizer.from_pretrained(model)
    out = {
        "about": "Token ids of awkward titles from the reference tokenizer (Hugging Face tokenizers %s, "
                 "the fast tokenizer of all-MiniLM-L6-v2's tokenizer.json, truncated at 256 tokens incl. [CLS]/[SEP]); "
                 "regenerate with tools/gen_tokenizer_cases.py." % __import__("tokenizers").__version__,
        "cases": [{"title": t, "token_ids": tok(t, truncation=True, max_length=256)["input_ids"]} for t in CASES],
    }
    path = os.path.join(REPO, "Tests", "ScenePSTextTests", "Fixtures", "tokenizer-edge-cases.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print("wrote %d cases to %s" % (len(CASES), path))


if __name__ == "__main__":
    main()
