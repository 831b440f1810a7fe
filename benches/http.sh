#!/usr/bin/env bash
# Requests per second of the bench_server modes under wrk on loopback, alternating the
# modes (A B A B ...) so drift of a noisy machine hits them alike, with ratios to `bare`.
#
#   bash benches/http.sh [ROUNDS] [SECONDS]      (defaults: 3 rounds of 10 s per mode)
#
# Needs wrk (Debian package `wrk`). With taskset and two or more CPUs, the server runs
# on CPU 0 and wrk on CPU 1 (PIN=0 turns this off), so the two do not steal each other's
# time. Prints one line per run: median req/s, and the median over rounds of the ratio
# to that round's `bare` run (paired, so machine-wide drift between rounds cancels).
#
# `bare` runs three times a round: without an Authorization header (`bare`), and with
# the same header the Bearer modes get (`bare+bearer`) or `pat-basic` gets
# (`bare+basic`), which it ignores. Those two isolate the layer's cost from hyper's cost
# of reading a longer request: each layered mode is also given as a ratio to `bare` with
# the same requests.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-10}
THREADS=${WRK_THREADS:-1}
CONNS=${WRK_CONNECTIONS:-32}
RUNS=(bare bare+bearer tower-http-bearer pat-bearer bare+basic pat-basic)
command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }
cargo build --release --example bench_server -q
BIN=target/release/examples/bench_server
declare -A RPS RATIO SAME
SERVER_PIN=() WRK_PIN=()
if [ "${PIN:-1}" = 1 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  SERVER_PIN=(taskset -c 0) WRK_PIN=(taskset -c 1)
fi
median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
LUA=$(mktemp)
trap 'rm -f "$LUA"; [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null || true' EXIT
port=18080
# The run with the same requests and no layer, for each layered mode.
declare -A BASELINE=([tower-http-bearer]=bare+bearer [pat-bearer]=bare+bearer [pat-basic]=bare+basic)
for round in $(seq "$ROUNDS"); do
  declare -A ROUND=()
  for run in "${RUNS[@]}"; do
    mode=${run%%+*}
    case "$run" in
      bare) kind=none ;;
      *+*) kind=${run#*+} ;;
      pat-basic) kind=basic ;;
      *) kind=bearer ;;
    esac
    port=$((port + 1))
    OUT=$(mktemp)
    "${SERVER_PIN[@]}" "$BIN" --listen 127.0.0.1:$port --mode "$mode" --tokens "${TOKENS:-10000}" >"$OUT" &
    PID=$!
    for _ in $(seq 200); do grep -q '^listening:' "$OUT" && break; sleep 0.05; done
    case "$kind" in
      none) HDR=() ;;
      basic) HDR=(-H "Authorization: Basic $(sed -n 's/^basic: //p' "$OUT" | head -1)") ;;
      *) HDR=(-H "Authorization: Bearer $(sed -n 's/^token: //p' "$OUT" | head -1)") ;;
    esac
    # Check that the request is accepted before loading it.
    code=$(curl -s -o /dev/null -w '%{http_code}' "${HDR[@]}" "http://127.0.0.1:$port/")
    [ "$code" = 200 ] || { echo "$run answered $code" >&2; exit 1; }
    rps=$("${WRK_PIN[@]}" wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" "${HDR[@]}" "http://127.0.0.1:$port/" | awk '/Requests\/sec/ {print $2}')
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
    rm -f "$OUT"
    echo "round $round $run $rps"
    ROUND[$run]=$rps
    RPS[$run]="${RPS[$run]:-} $rps"
    RATIO[$run]="${RATIO[$run]:-} $(awk -v a="$rps" -v b="${ROUND[bare]}" 'BEGIN {print a / b}')"
    base=${BASELINE[$run]:-}
    [ -n "$base" ] && SAME[$run]="${SAME[$run]:-} $(awk -v a="$rps" -v b="${ROUND[$base]}" 'BEGIN {print a / b}')"
  done
  # tower-pat against its peer, paired in the round.
  SAME[peer]="${SAME[peer]:-} $(awk -v a="${ROUND[pat-bearer]}" -v b="${ROUND[tower-http-bearer]}" 'BEGIN {print a / b}')"
done
per_round() { echo "$1" | awk '{for (i = 1; i <= NF; i++) printf "%s%.3f", (i > 1 ? " " : ""), $i}'; }
for run in "${RUNS[@]}"; do
  printf "%-18s %10.0f req/s  ratio to bare %.3f (per round: %s)\n" "$run" \
    "$(echo "${RPS[$run]}" | median)" "$(echo "${RATIO[$run]}" | median)" "$(per_round "${RATIO[$run]}")"
done
for run in tower-http-bearer pat-bearer pat-basic; do
  printf "%-18s ratio to %-11s %.3f (per round: %s)\n" "$run" "${BASELINE[$run]}" \
    "$(echo "${SAME[$run]}" | median)" "$(per_round "${SAME[$run]}")"
done
printf "%-18s ratio to tower-http-bearer %.3f (per round: %s)\n" pat-bearer \
  "$(echo "${SAME[peer]}" | median)" "$(per_round "${SAME[peer]}")"
