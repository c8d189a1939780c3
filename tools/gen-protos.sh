#!/usr/bin/env bash
# Regenerates the committed protobuf-c code from protos/*.proto.
#   tools/gen-protos.sh           write Sources/ScenePSWire/
#   tools/gen-protos.sh --check   exit 1 if the committed code is stale
set -euo pipefail
cd "$(dirname "$0")/.."
command -v protoc-c >/dev/null || { echo "protoc-c not found: apt-get install protobuf-c-compiler" >&2; exit 2; }
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
protoc-c --proto_path=protos --c_out="$out" protos/scene_ps.proto
dst=Sources/ScenePSWire
if [ "${1:-}" = "--check" ]; then
  if cmp -s "$out/scene_ps.pb-c.c" "$dst/scene_ps.pb-c.c" && cmp -s "$out/scene_ps.pb-c.h" "$dst/include/scene_ps.pb-c.h"; then
    echo "protobuf-c code is fresh"; exit 0
  fi
  echo "stale: $dst does not match protos/scene_ps.proto; run tools/gen-protos.sh and commit" >&2; exit 1
fi
mkdir -p "$dst/include"
cp "$out/scene_ps.pb-c.c" "$dst/"
cp "$out/scene_ps.pb-c.h" "$dst/include/"
echo "wrote $dst"
