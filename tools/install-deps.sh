#!/usr/bin/env bash
# Installs the Debian packages ScenePS builds against, when missing.
# Safe to run repeatedly: does nothing when everything is there.
#   tools/install-deps.sh           the build's packages
#   tools/install-deps.sh --test    the build's packages and the test suite's (chromium, headless)
#   tools/install-deps.sh --slurm   Slurm and munge (slurm-wlm munge), for the Slurm test
#                                   (tools/slurm-local.sh); without root or sudo it says so
#                                   and exits 3 instead of failing
set -euo pipefail
# protobuf-compiler: the CURVE test compiles protos/ for its independent Python client (Tests/.../CurveProcessTests).
pkgs=(libzmq3-dev libprotobuf-c-dev protobuf-c-compiler libopenblas-dev protobuf-compiler)
optional=""
if [ "${1:-}" = "--slurm" ]; then pkgs=(slurm-wlm munge); optional=1; fi
# chromium: ReportTests opens RUN_DIR/report.html in headless Chromium and checks its screenshot
# (tools/report_screenshot.py). Only for the test suite (tools/test.sh): not in images or on every launch.
if [ "${1:-}" = "--test" ]; then pkgs+=(chromium); fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if [ -n "$optional" ] && ! sudo -n true 2>/dev/null; then
    echo "install-deps: ${missing[*]} not installed and this user cannot install them (not root, no password-less sudo): skipping what needs them" >&2
    exit 3
  fi
  sudo="sudo"
fi
echo "installing Debian packages: ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
