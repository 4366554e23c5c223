#!/usr/bin/env bash
# Load bench for `otsd aggregate` (issue 12): an aggregator in front of two
# calendars on this machine, driven by wrk (keep-alive connections, random
# 32-byte digests; generator, aggregator and calendars on the same cores).
#
#   crates/otsd/bench/aggregate.sh [SECONDS_PER_RUN] [RSS_RUN_SECONDS]
#   CONNS="4096 16384"  connection counts, one run each (default both)
#   INTERVAL_MS=1000    the aggregator's round (default 1 s, as a.pool's)
#   PROFILE=release     or debug (no build: checks the script on a tiny
#                       load, e.g. PROFILE=debug CONNS=8 aggregate.sh 3 0)
#   OTSD=path           another otsd binary (no build), e.g. a copy built
#                       from an earlier commit, for before/after figures
#   AGG_ARGS=...        more flags for the aggregator
#   CAL_ARGS=...        more flags for the calendars (default --no-bitcoin:
#                       they only have to take one commitment per round)
#
# Each run reports wrk's req/s, errors and latency percentiles (p99 target:
# under the round plus the calendars' round plus 50 ms), the bound
# (connections per round interval) and the share of it reached (target
# 95 %), the aggregator's CPU per acknowledged digest from /proc/<pid>/stat
# (target 15 us), its RSS every 10 s, and each calendar's commitments per
# aggregator round (target exactly 1). A last run at the first connection
# count lasts RSS_RUN_SECONDS (default 300; 0 skips it) and samples RSS
# (target: flat). At the end: the upstreams' wait per round (must stay
# under the interval; see there). A bench, not a test: nothing asserts.
set -euo pipefail
cd "$(dirname "$0")/../../.."
DUR=${1:-30}
RSS_DUR=${2:-300}
CONNS=${CONNS:-4096 16384}
INTERVAL_MS=${INTERVAL_MS:-1000}
PROFILE=${PROFILE:-release}
BENCH_DIR=crates/otsd/bench
command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl not found" >&2; exit 1; }
# Every connection is a descriptor in wrk and in the aggregator.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
MAX_CONNS=0
for c in $CONNS; do [ "$c" -gt "$MAX_CONNS" ] && MAX_CONNS=$c; done
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((MAX_CONNS + 1000)) ]; then
  echo "warning: ulimit -n is $(ulimit -n), under $MAX_CONNS connections plus room" >&2
fi

if [ -z "${OTSD:-}" ] && [ "$PROFILE" = release ]; then
  cargo build --release -p otsd --bin otsd >/dev/null
fi
OTSD=${OTSD:-target/$PROFILE/otsd}
[ -x "$OTSD" ] || { echo "$OTSD not built" >&2; exit 1; }
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# Starts "$@" with stderr to $WORK/$NAME.log; sets PID and ADDR (from its
# "listening on" line).
launch() { # $1 = name, then the command
  local name=$1; shift
  "$@" 2>"$WORK/$name.log" &
  PID=$!
  PIDS+=("$PID")
  ADDR=
  for _ in $(seq 600); do
    ADDR=$(grep -o 'listening on [0-9.:]*' "$WORK/$name.log" | awk '{print $3}' || true)
    [ -n "$ADDR" ] && return 0
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "$name did not start" >&2; cat "$WORK/$name.log" >&2; exit 1
}

CAL_DIRS=()
CAL_URLS=()
for name in cal-a cal-b; do
  "$OTSD" -c "$WORK/$name" init --uri "https://$name.bench.invalid" >/dev/null
  launch "$name" "$OTSD" -c "$WORK/$name" --rpc-address 127.0.0.1 --rpc-port 0 \
    ${CAL_ARGS:---no-bitcoin}
  CAL_DIRS+=("$WORK/$name")
  CAL_URLS+=("http://$ADDR")
done
launch agg "$OTSD" aggregate --rpc-address 127.0.0.1 --rpc-port 0 \
  --upstream "${CAL_URLS[0]}" --upstream "${CAL_URLS[1]}" --upstream-min 2 \
  --interval "$INTERVAL_MS" --max-connections $((MAX_CONNS + 1024)) ${AGG_ARGS:-}
AGG_PID=$PID
AGG=$ADDR
echo "aggregator $AGG (pid $AGG_PID) in front of ${CAL_URLS[*]}"

HZ=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$AGG_PID/stat"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$AGG_PID/status"; }
rounds() { curl -s -H 'Accept: application/json' "http://$AGG/" | grep -o '"rounds":[0-9]*' | cut -d: -f2; }
journal_len() { echo $(( $(stat -c %s "$1/journal") / 44 )); }
sample_rss() { # $1 = seconds, $2 = output file
  local t=0
  while [ "$t" -lt "$1" ]; do
    sleep 10
    t=$((t + 10))
    echo "t=${t}s rss=$(rss_kb) kB" >>"$2"
  done
}

run() { # $1 = connections, $2 = seconds, $3 = label
  local c=$1 d=$2 out="$WORK/wrk-$3.txt" rss="$WORK/rss-$3.txt"
  echo "== $3: ${INTERVAL_MS} ms round, $c connections, ${d}s"
  local r0 j0a j0b t0
  r0=$(rounds); j0a=$(journal_len "${CAL_DIRS[0]}"); j0b=$(journal_len "${CAL_DIRS[1]}")
  t0=$(cpu_ticks)
  echo "t=0s rss=$(rss_kb) kB" >"$rss"
  sample_rss "$d" "$rss" &
  local sampler=$!
  wrk -t2 -c"$c" -d"${d}s" --timeout 10s --latency -s "$BENCH_DIR/post.lua" "http://$AGG" >"$out"
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  # The last round's replies are out once the next round has started.
  sleep $(( (INTERVAL_MS + 999) / 1000 + 1 ))
  local t1 r1 j1a j1b
  t1=$(cpu_ticks); r1=$(rounds)
  j1a=$(journal_len "${CAL_DIRS[0]}"); j1b=$(journal_len "${CAL_DIRS[1]}")
  grep -E "Requests/sec|requests in|Non-2xx|Socket errors|^p50" "$out" || true
  local n rps
  n=$(awk '/requests in/ {print $1}' "$out")
  rps=$(awk '/Requests\/sec/ {print $2}' "$out")
  awk -v rps="$rps" -v c="$c" -v ms="$INTERVAL_MS" \
    'BEGIN { b = c * 1000 / ms; printf "bound %.0f req/s (connections per round): %.1f %% of it\n", b, rps / b * 100 }'
  awk -v t=$((t1 - t0)) -v hz="$HZ" -v n="$n" \
    'BEGIN { if (n > 0) printf "aggregator CPU: %.2f s for %d digests = %.1f us/digest\n", t / hz, n, t / hz / n * 1e6 }'
  cat "$rss"
  local dr=$((r1 - r0))
  echo "aggregator rounds: $dr; commitments journaled: cal-a $((j1a - j0a)), cal-b $((j1b - j0b))"
  awk -v r="$dr" -v a=$((j1a - j0a)) -v b=$((j1b - j0b)) \
    'BEGIN { if (r > 0) printf "commitments per aggregator round: cal-a %.3f, cal-b %.3f\n", a / r, b / r }'
}

for c in $CONNS; do
  run "$c" "$DUR" "c$c"
done
if [ "$RSS_DUR" -gt 0 ]; then
  first=${CONNS%% *}
  run "$first" "$RSS_DUR" "rss-c$first"
fi
grep -c "round refused" "$WORK/agg.log" | sed 's/^/rounds refused (503) in the log: /' || true
# How long the upstreams took per round (the "aggregated" lines): a client
# is answered once per round only while this stays under the interval (a
# round's clients resubmit in time for the next round); past it they miss
# a round, and req/s drops towards half the bound.
grep -o 'upstream_ms=[0-9.]*' "$WORK/agg.log" | cut -d= -f2 |
  awk '{ s += $1; if (NR == 1 || $1 < lo) lo = $1; if ($1 > hi) hi = $1 }
       END { if (NR > 0) printf "upstream wait per round: min %.1f ms, mean %.1f ms, max %.1f ms (%d rounds)\n", lo, s / NR, hi, NR }'
