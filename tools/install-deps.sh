#!/usr/bin/env bash
# Installs the Debian packages ScenePS builds against, when missing.
# Safe to run repeatedly: does nothing when everything is there.
set -euo pipefail
# protobuf-compiler: the CURVE test compiles protos/ for its independent Python client (Tests/.../CurveProcessTests).
pkgs=(libzmq3-dev libprotobuf-c-dev protobuf-c-compiler libopenblas-dev protobuf-compiler)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
