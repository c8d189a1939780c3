#!/usr/bin/env bash
# Scrapes Prometheus endpoints with prometheus-client's parser (tools/scrape_metrics.py),
# in a venv under the user cache that this script creates on first use:
#   ${SCENEPS_CACHE:-$HOME/.cache/sceneps}/venv-metrics  (PyPI: prometheus-client)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV="${SCENEPS_CACHE:-$HOME/.cache/sceneps}/venv-metrics"
if ! "$VENV/bin/python" -c 'import prometheus_client' 2>/dev/null; then
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install --quiet 'prometheus-client>=0.17' >&2 \
    || { echo "scrape-metrics.sh: cannot install prometheus-client from PyPI into $VENV" >&2; exit 1; }
fi
# No URL: only make sure the venv is there (a test does this before its job starts).
[ $# -gt 0 ] || { echo "scrape-metrics.sh: prometheus-client ready in $VENV"; exit 0; }
exec "$VENV/bin/python" "$ROOT/tools/scrape_metrics.py" "$@"
