#!/usr/bin/env bash
# Launches a local ScenePS cluster, trains, evaluates and prints per-scene results.
#
#   cluster/local.sh [--config FILE] [--run-dir DIR] [--servers N] [--workers-per-scene M]
#                    [--log LOG.csv [--items ITEMS.csv] [--truth TRUTH.csv] [--skip-bad-rows]]
#                    [--rows N] [--base-port P] [--text-features] [--debug]
#
# Without --log it trains on the default generated data set (data/default/,
# generated once). With --log it prepares that log into RUN_DIR/data first.
# --text-features embeds the catalogue's titles (--items, or the generated
# items.csv) unless cached, and trains with model.text_features: true.
# Flags override the config. Results: RUN_DIR/summary.json (the run directory
# is printed at the end); logs of every process: RUN_DIR/logs/.
# Ctrl-C or SIGTERM stops every process. SCENEPS_BIN=DIR uses prebuilt executables. The exit status is non-zero, and the
# failing process is named, when any process fails.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CONFIG="$ROOT/cluster/default.yaml"
RUN_DIR="" SERVERS="" WPS="" LOG="" ITEMS="" TRUTH="" SKIP_BAD="" ROWS="" BASE_PORT="" CONF="release" TEXT_FEATURES=""

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }
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
    --text-features) TEXT_FEATURES=1; shift ;;
    --debug) CONF="debug"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown flag '$1' (see --help)" ;;
  esac
done
for v in SERVERS WPS ROWS BASE_PORT; do
  val=${!v}
  [ -z "$val" ] || [[ "$val" =~ ^[1-9][0-9]*$ ]] || die "--$(echo $v | tr A-Z a-z | tr _ -) must be a positive integer, got '$val'"
done
[ -f "$CONFIG" ] || die "config file not found: $CONFIG"
[ -z "$LOG" ] || [ -f "$LOG" ] || die "log file not found: $LOG"
[ -z "$ITEMS" ] || [ -f "$ITEMS" ] || die "items file not found: $ITEMS"
[ -z "$TRUTH" ] || [ -f "$TRUTH" ] || die "truth file not found: $TRUTH"
[ -n "$LOG" ] || [ -z "$ITEMS$TRUTH$SKIP_BAD" ] || die "--items, --truth and --skip-bad-rows go with --log"
[ -z "$TEXT_FEATURES" ] || [ -z "$LOG" ] || [ -n "$ITEMS" ] || die "--text-features with --log needs --items ITEMS.csv (the catalogue whose titles are embedded)"

abs() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
CONFIG=$(abs "$CONFIG"); [ -z "$LOG" ] || LOG=$(abs "$LOG")
[ -z "$ITEMS" ] || ITEMS=$(abs "$ITEMS"); [ -z "$TRUTH" ] || TRUTH=$(abs "$TRUTH")
[ -n "$RUN_DIR" ] || RUN_DIR="$ROOT/runs/$(date +%Y%m%d-%H%M%S)-$$"
RUN_DIR=$(abs "$RUN_DIR")
# A new run in a run directory replaces the results of any earlier one there
# (their worker reports would count in the throughput, their schedule would
# not match this run's epochs).
for old in summary.json schedule.json epochs workers logs; do
  if [ -e "$RUN_DIR/$old" ]; then
    echo "local.sh: note: $RUN_DIR holds an earlier run; its results are replaced" >&2
    break
  fi
done
rm -rf "$RUN_DIR/summary.json" "$RUN_DIR/schedule.json" "$RUN_DIR/epochs" "$RUN_DIR/workers" "$RUN_DIR/logs"
mkdir -p "$RUN_DIR/logs" "$RUN_DIR/workers"

# --- install and build what is missing ------------------------------------
"$ROOT/tools/install-deps.sh"
if [ -n "${SCENEPS_BIN:-}" ]; then
  BIN="$SCENEPS_BIN"   # prebuilt executables (the test suite sets this)
else
  echo "== building ($CONF)"
  (cd "$ROOT" && swift build -c "$CONF" --product ps-server >/dev/null && swift build -c "$CONF" --product worker >/dev/null \
     && swift build -c "$CONF" --product psctl >/dev/null) || die "build failed: run 'swift build -c $CONF' to see why"
  BIN=$(cd "$ROOT" && swift build -c "$CONF" --show-bin-path)
fi
for b in ps-server worker psctl; do [ -x "$BIN/$b" ] || die "missing executable $BIN/$b"; done
PSCTL="$BIN/psctl"

# --- data ------------------------------------------------------------------
if [ -n "$LOG" ]; then
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

# --- title features (--text-features): embed the catalogue unless cached ---
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
  if "$PSCTL" embed-titles --items "$CATALOGUE" --out "$EMB" --verify >"$RUN_DIR/logs/embed-verify.log" 2>&1; then
    echo "== title embeddings of $CATALOGUE: cached in $EMB"
  else
    echo "== embedding the titles of $CATALOGUE into $EMB ($(tail -1 "$RUN_DIR/logs/embed-verify.log"))"
    "$PSCTL" embed-titles --items "$CATALOGUE" --out "$EMB" --threads "$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)" \
      || die "embedding the titles of $CATALOGUE failed (see the error above)"
  fi
  printf 'base: "%s"\nmodel: {text_features: true, text_embeddings: "%s"}\n' "$CONFIG" "$EMB" > "$RUN_DIR/config.yaml"
  CONFIG="$RUN_DIR/config.yaml"
fi

# --- plan: servers, ports, workers per scene ------------------------------
plan_args=(--config "$CONFIG" --data "$DATA")
[ -z "$SERVERS" ] || plan_args+=(--servers "$SERVERS")
[ -z "$WPS" ] || plan_args+=(--workers-per-scene "$WPS")
[ -z "$BASE_PORT" ] || plan_args+=(--base-port "$BASE_PORT")
PLAN=$("$PSCTL" plan "${plan_args[@]}") || die "the config does not fit the data (see the error above)"
echo "$PLAN" > "$RUN_DIR/plan.txt"
ENDPOINTS=$(awk '$1=="endpoints"{print $2}' <<<"$PLAN")
IFS=, read -r -a EP <<<"$ENDPOINTS"

# --- processes -------------------------------------------------------------
declare -A NAME_OF=()
PIDS=()
SERVER_PIDS=()
STOPPING=0

start() {   # start NAME CMD...: runs CMD with its output prefixed and copied to RUN_DIR/logs/NAME.log
  local name=$1; shift
  "$@" > >(tee -a "$RUN_DIR/logs/$name.log" | sed -u "s/^/[$name] /") 2>&1 &
  local pid=$!
  NAME_OF[$pid]=$name
  PIDS+=("$pid")
  LAST_PID=$pid
}

stop_all() {
  STOPPING=1
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 50); do
    local alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive -eq 0 ] && return 0
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
}
trap 'echo "local.sh: interrupted, stopping every process" >&2; stop_all; exit 130' INT
trap 'echo "local.sh: terminated, stopping every process" >&2; stop_all; exit 143' TERM
trap 'stop_all' EXIT

fail() { echo "local.sh: FAILED: $*" >&2; echo "local.sh: logs in $RUN_DIR/logs" >&2; stop_all; exit 1; }

check_servers() {   # fail, naming it, when a server has died
  local i rc
  for i in "${!SERVER_PIDS[@]}"; do
    if ! kill -0 "${SERVER_PIDS[$i]}" 2>/dev/null; then
      wait "${SERVER_PIDS[$i]}" && rc=0 || rc=$?
      fail "server-$i $(describe_exit $rc)"
    fi
  done
}

describe_exit() {   # describe_exit RC
  local rc=$1
  if [ "$rc" -gt 128 ]; then echo "was killed by signal $((rc - 128))"; else echo "exited with status $rc"; fi
}

echo "== starting ${#EP[@]} servers"
for i in "${!EP[@]}"; do
  start "server-$i" "$BIN/ps-server" --shard-index "$i" --shard-count "${#EP[@]}" --bind "${EP[$i]}"
  SERVER_PIDS+=("$LAST_PID")
done
for i in "${!EP[@]}"; do
  for _ in $(seq 300); do
    grep -q "^ready" "$RUN_DIR/logs/server-$i.log" 2>/dev/null && break
    kill -0 "${SERVER_PIDS[$i]}" 2>/dev/null || { wait "${SERVER_PIDS[$i]}" && rc=0 || rc=$?; fail "server-$i $(describe_exit $rc) before it was ready"; }
    sleep 0.1
  done
  grep -q "^ready" "$RUN_DIR/logs/server-$i.log" || fail "server-$i was not ready within 30 s"
done

EPOCHS=$(awk '$1=="epochs"{print $2}' <<<"$PLAN")
TOTAL_WORKERS=$(awk '$1=="scene"{n += $3} END{print n + 0}' <<<"$PLAN")
CORES=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
if [ "$TOTAL_WORKERS" -gt $((2 * CORES)) ]; then
  echo "local.sh: note: $TOTAL_WORKERS workers on $CORES cores: every pull is many other workers' pushes old" \
       "when its gradient lands (measured: 16 workers on 2 cores lose ~0.01 AUC against 4-8); fewer workers per scene train as fast here" >&2
fi
START_TS=$(date +%s)
for ((epoch = 1; epoch <= EPOCHS; epoch++)); do
  WORKER_PIDS=()
  while read -r _ scene n; do
    for ((w = 0; w < n; w++)); do
      start "worker-$scene-$w" "$BIN/worker" --config "$CONFIG" --data "$DATA" --servers "$ENDPOINTS" \
        --scene "$scene" --index "$w" --count "$n" --epoch "$epoch" --run-dir "$RUN_DIR" \
        --host-workers "$TOTAL_WORKERS"
      WORKER_PIDS+=("$LAST_PID")
    done
  done < <(awk '$1=="scene"' <<<"$PLAN")
  echo "== epoch $epoch: ${#WORKER_PIDS[@]} workers training"

  remaining=${#WORKER_PIDS[@]}
  while [ "$remaining" -gt 0 ]; do
    done_pid=""
    set +e; wait -n -p done_pid "${PIDS[@]}"; rc=$?; set -e
    [ -n "$done_pid" ] || continue
    name=${NAME_OF[$done_pid]}
    if [[ "$name" == server-* ]]; then fail "$name $(describe_exit $rc) while workers were training"; fi
    # A worker usually fails because a server died under it: name the root cause.
    [ "$rc" -eq 0 ] || { check_servers; fail "$name $(describe_exit $rc)"; }
    NEW=(); for p in "${PIDS[@]}"; do [ "$p" = "$done_pid" ] || NEW+=("$p"); done; PIDS=("${NEW[@]}")
    remaining=$((remaining - 1))
  done

  echo "== epoch $epoch: evaluating"
  "$PSCTL" evaluate --config "$CONFIG" --data "$DATA" --servers "$ENDPOINTS" --run-dir "$RUN_DIR" --epoch "$epoch" \
    > "$RUN_DIR/logs/evaluate-$epoch.log" 2>&1 || { cat "$RUN_DIR/logs/evaluate-$epoch.log" >&2; check_servers; fail "evaluation after epoch $epoch failed"; }
  cat "$RUN_DIR/logs/evaluate-$epoch.log"
  grep -q "^decision: stop" "$RUN_DIR/logs/evaluate-$epoch.log" && break
done
"$PSCTL" shutdown --servers "$ENDPOINTS" >/dev/null 2>&1 || true
for p in "${SERVER_PIDS[@]}"; do
  for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
done
sleep 0.2
echo "== done in $(( $(date +%s) - START_TS )) s; results: $RUN_DIR/summary.json"
