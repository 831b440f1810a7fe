#!/usr/bin/env bash
# Requests per second of the bench_server modes under wrk on loopback, alternating the
# modes (A B A B ...) so drift of a noisy machine hits them alike, with ratios to `bare`.
#
#   bash benches/http.sh [ROUNDS] [SECONDS]      (defaults: 3 rounds of 10 s per mode)
#
# Needs wrk (Debian package `wrk`). With taskset and two or more CPUs, the server runs
# on CPU 0 and wrk on CPU 1 (PIN=0 turns this off), so the two do not steal each other's
# time. Prints one line per mode: median req/s, and the median over rounds of the ratio
# to that round's `bare` run (paired, so machine-wide drift between rounds cancels).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-10}
THREADS=${WRK_THREADS:-1}
CONNS=${WRK_CONNECTIONS:-32}
MODES=(bare tower-http-bearer pat-bearer pat-basic)
command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }
cargo build --release --example bench_server -q
BIN=target/release/examples/bench_server
declare -A RPS RATIO
SERVER_PIN=() WRK_PIN=()
if [ "${PIN:-1}" = 1 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  SERVER_PIN=(taskset -c 0) WRK_PIN=(taskset -c 1)
fi
median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
LUA=$(mktemp)
trap 'rm -f "$LUA"; [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null || true' EXIT
port=18080
for round in $(seq "$ROUNDS"); do
  for mode in "${MODES[@]}"; do
    port=$((port + 1))
    OUT=$(mktemp)
    "${SERVER_PIN[@]}" "$BIN" --listen 127.0.0.1:$port --mode "$mode" --tokens "${TOKENS:-10000}" >"$OUT" &
    PID=$!
    for _ in $(seq 200); do grep -q '^listening:' "$OUT" && break; sleep 0.05; done
    case "$mode" in
      bare) HDR=() ;;
      pat-basic) HDR=(-H "Authorization: Basic $(sed -n 's/^basic: //p' "$OUT" | head -1)") ;;
      *) HDR=(-H "Authorization: Bearer $(sed -n 's/^token: //p' "$OUT" | head -1)") ;;
    esac
    # Check that the request is accepted before loading it.
    code=$(curl -s -o /dev/null -w '%{http_code}' "${HDR[@]}" "http://127.0.0.1:$port/")
    [ "$code" = 200 ] || { echo "$mode answered $code" >&2; exit 1; }
    rps=$("${WRK_PIN[@]}" wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" "${HDR[@]}" "http://127.0.0.1:$port/" | awk '/Requests\/sec/ {print $2}')
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
    rm -f "$OUT"
    echo "round $round $mode $rps"
    [ "$mode" = bare ] && round_bare=$rps
    RPS[$mode]="${RPS[$mode]:-} $rps"
    RATIO[$mode]="${RATIO[$mode]:-} $(awk -v a="$rps" -v b="$round_bare" 'BEGIN {print a / b}')"
  done
done
for mode in "${MODES[@]}"; do
  printf "%-18s %10.0f req/s  ratio to bare %.3f (per round: %s)\n" "$mode" \
    "$(echo "${RPS[$mode]}" | median)" "$(echo "${RATIO[$mode]}" | median)" \
    "$(echo "${RATIO[$mode]}" | awk '{for (i = 1; i <= NF; i++) printf "%s%.3f", (i > 1 ? " " : ""), $i}')"
done
