#!/usr/bin/env bash
# Load bench for otsd with wrk (keep-alive connections, random 32-byte
# digests, generator on the same machine as the server).
#
#   crates/otsd/bench/load.sh [SECONDS_PER_SCENARIO] [RSS_RUN_SECONDS]
#   ONLY="A B C D" picks scenarios (default: all).
#   OTSD_ARGS="--http-threads 1" passes more flags to otsd.
#
# Scenario A: default 1 s interval, 4096 connections: throughput, p50, p99.
# Scenario B: 10 ms interval, 512 connections: throughput and server CPU
#             time per acknowledged digest (utime+stime from /proc/<pid>/stat).
# Scenario C: 10 ms interval, 512 connections for RSS_RUN_SECONDS, VmRSS
#             sampled every 10 s.
# Scenario D: GET /timestamp of completed proofs: 1,000,000 commitments
#             completed in one transaction (examples/complete_one_tx), random
#             reads of 100,000 of them, 256 connections: throughput, latency.
# Needs wrk (apt-get install -y wrk). A bench, not a test: nothing asserts.
set -euo pipefail
cd "$(dirname "$0")/../../.."
DUR=${1:-30}
RSS_DUR=${2:-300}
ONLY=${ONLY:-A B C D}
want() { case " $ONLY " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
BENCH_DIR=crates/otsd/bench
command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }
ulimit -n 20000

cargo build --release -p otsd --bin otsd --example complete_one_tx >/dev/null
OTSD=target/release/otsd
WORK=$(mktemp -d)
trap 'kill "$PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
PID=

start() { # $1 = aggregation interval ms; KEEP_CAL=1 serves the calendar as is
  rm -rf "$WORK/log"
  ADDR=
  if [ -z "${KEEP_CAL:-}" ]; then
    rm -rf "$WORK/cal"
    "$OTSD" -c "$WORK/cal" init --uri https://bench.invalid >/dev/null
  fi
  "$OTSD" -c "$WORK/cal" --rpc-address 127.0.0.1 --rpc-port 0 \
    --aggregation-interval "$1" --no-bitcoin ${OTSD_ARGS:-} 2>"$WORK/log" &
  PID=$!
  for _ in $(seq 200); do
    [ -f "$WORK/log" ] && ADDR=$(grep -o 'listening on [0-9.:]*' "$WORK/log" | awk '{print $3}' || true)
    [ -n "$ADDR" ] && return 0
    sleep 0.05
  done
  echo "otsd did not start" >&2; cat "$WORK/log" >&2; exit 1
}
stop() { kill -TERM "$PID"; wait "$PID" || true; PID=; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
cpu_split() { awk '{print "user " $14 " ticks, system " $15 " ticks"}' "/proc/$PID/stat"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$PID/status"; }
requests() { awk '/requests in/ {print $1}' "$1"; }

if want A; then
echo "== A: 1 s interval, 4096 connections, ${DUR}s"
start 1000
wrk -t2 -c4096 -d"${DUR}s" --timeout 10s --latency -s "$BENCH_DIR/post.lua" "http://$ADDR" | tee "$WORK/a.txt"
echo "rounds journaled: $(( $(stat -c %s "$WORK/cal/journal") / 44 ))"
stop
fi

if want B; then
echo "== B: 10 ms interval, 512 connections, ${DUR}s"
start 10
T0=$(cpu_ticks)
wrk -t2 -c512 -d"${DUR}s" --timeout 10s --latency -s "$BENCH_DIR/post.lua" "http://$ADDR" | tee "$WORK/b.txt"
T1=$(cpu_ticks)
echo "server CPU since start: $(cpu_split)"
HZ=$(getconf CLK_TCK)
N=$(requests "$WORK/b.txt")
awk -v t=$((T1 - T0)) -v hz="$HZ" -v n="$N" \
  'BEGIN { printf "server CPU: %.2f s for %d digests = %.1f us/digest\n", t / hz, n, t / hz / n * 1e6 }'
stop
fi

if want C; then
echo "== C: RSS over ${RSS_DUR}s at full load (10 ms interval, 512 connections)"
start 10
echo "t=0s rss=$(rss_kb) kB"
wrk -t2 -c512 -d"${RSS_DUR}s" --timeout 10s -s "$BENCH_DIR/post.lua" "http://$ADDR" >"$WORK/c.txt" &
WRK=$!
for i in $(seq 10 10 "$RSS_DUR"); do
  sleep 10
  echo "t=${i}s rss=$(rss_kb) kB"
done
wait "$WRK"
grep -E "requests in|Non-2xx|Socket errors" "$WORK/c.txt" || true
stop
fi

if want D; then
echo "== D: GET /timestamp of completed proofs, 256 connections, ${DUR}s"
rm -rf "$WORK/cal"
target/release/examples/complete_one_tx 1000000 3000 "$WORK/cal"
KEEP_CAL=1 start 1000
T0=$(cpu_ticks)
wrk -t2 -c256 -d"${DUR}s" --timeout 10s --latency -s "$BENCH_DIR/get.lua" "http://$ADDR" -- "$WORK/cal/bench-paths.txt" | tee "$WORK/d.txt"
T1=$(cpu_ticks)
HZ=$(getconf CLK_TCK)
N=$(requests "$WORK/d.txt")
awk -v t=$((T1 - T0)) -v hz="$HZ" -v n="$N" \
  'BEGIN { printf "server CPU: %.2f s for %d requests = %.1f us/request\n", t / hz, n, t / hz / n * 1e6 }'
echo "server RSS: $(rss_kb) kB"
stop
fi
