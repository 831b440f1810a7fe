#!/usr/bin/env bash
# Requests per second of the bench_server modes under wrk on loopback, alternating the
# modes (A B A B ...) so drift of a noisy machine hits them alike, with ratios to `bare`.
#
#   bash benches/http.sh [ROUNDS] [SECONDS]      (defaults: 10 rounds of 3 s per run)
#
# Needs wrk (Debian package `wrk`). With taskset and two or more CPUs, the servers run
# on CPU 0 and wrk on CPU 1 (PIN=0 turns this off), so the two do not steal each other's
# time. One server per mode is started first and kept running (idle but for its turn),
# so a round of all the runs takes only seconds and the machine's drift between a run
# and its baseline stays small.
#
# `bare` runs three times a round: without an Authorization header (`bare`), and with
# the same header the Bearer modes get (`bare+bearer`) or `pat-basic` gets
# (`bare+basic`), which it ignores. Those two isolate the layer's cost from hyper's cost
# of reading a longer request: each layered mode is also given as a ratio to `bare` with
# the same requests. Prints one line per run: median req/s, and the median over rounds of
# the ratio to that round's baseline (paired, so drift between rounds cancels).
#
# `floor-bearer` and `floor-basic` are the least any validator that names its caller must
# do (see examples/bench_server.rs), in tower-http's plumbing: tower-pat's modes are also
# given as a ratio to them, which is what is left to gain. OUTER=1 starts every server
# with `--outer` (the layer around the whole Router instead of `Router::layer`).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-10}
SECS=${2:-3}
THREADS=${WRK_THREADS:-1}
CONNS=${WRK_CONNECTIONS:-32}
MODES=(bare tower-http-bearer pat-bearer pat-basic floor-bearer floor-basic)
# Each layered run next to its baseline; odd rounds go forwards, even ones backwards
# (A B C C B A ...), so a steady drift within a round cancels too.
RUNS=(bare bare+bearer pat-bearer floor-bearer tower-http-bearer bare+basic pat-basic floor-basic)
command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }
cargo build --release --example bench_server -q
BIN=target/release/examples/bench_server
OUTER_ARG=()
[ "${OUTER:-0}" = 1 ] && OUTER_ARG=(--outer)
SERVER_PIN=() WRK_PIN=()
if [ "${PIN:-1}" = 1 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  SERVER_PIN=(taskset -c 0) WRK_PIN=(taskset -c 1)
fi
median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
per_round() { echo "$1" | awk '{for (i = 1; i <= NF; i++) printf "%s%.3f", (i > 1 ? " " : ""), $i}'; }

declare -A PORT OUT PID
cleanup() {
  for mode in "${MODES[@]}"; do
    [ -n "${PID[$mode]:-}" ] && kill "${PID[$mode]}" 2>/dev/null || true
    [ -n "${OUT[$mode]:-}" ] && rm -f "${OUT[$mode]}"
  done
}
trap cleanup EXIT
port=$((18080 + RANDOM % 1000))
for mode in "${MODES[@]}"; do
  port=$((port + 1))
  PORT[$mode]=$port
  OUT[$mode]=$(mktemp)
  "${SERVER_PIN[@]}" "$BIN" --listen 127.0.0.1:$port --mode "$mode" --tokens "${TOKENS:-10000}" "${OUTER_ARG[@]}" >"${OUT[$mode]}" &
  PID[$mode]=$!
done
for mode in "${MODES[@]}"; do
  for _ in $(seq 600); do grep -q '^listening:' "${OUT[$mode]}" && break; sleep 0.05; done
  grep -q '^listening:' "${OUT[$mode]}" || { echo "$mode did not start" >&2; exit 1; }
done

# The server and the Authorization header of each run (a mode's own token: bare ignores
# it, tower-http's is its one static token).
declare -A SERVER HEADER
for run in "${RUNS[@]}"; do
  mode=${run%%+*}
  case "$run" in
    bare) kind=none ;;
    *+*) kind=${run#*+} ;;
    *-basic) kind=basic ;;
    *) kind=bearer ;;
  esac
  SERVER[$run]=$mode
  case "$kind" in
    none) HEADER[$run]= ;;
    basic) HEADER[$run]="Authorization: Basic $(sed -n 's/^basic: //p' "${OUT[$mode]}" | head -1)" ;;
    *) HEADER[$run]="Authorization: Bearer $(sed -n 's/^token: //p' "${OUT[$mode]}" | head -1)" ;;
  esac
  hdr=()
  [ -n "${HEADER[$run]}" ] && hdr=(-H "${HEADER[$run]}")
  # Check that the request is accepted before loading it.
  code=$(curl -s -o /dev/null -w '%{http_code}' "${hdr[@]}" "http://127.0.0.1:${PORT[$mode]}/")
  [ "$code" = 200 ] || { echo "$run answered $code" >&2; exit 1; }
  # Warm up (connections, caches, the allocator) before anything is measured.
  "${WRK_PIN[@]}" wrk -t"$THREADS" -c"$CONNS" -d1s "${hdr[@]}" "http://127.0.0.1:${PORT[$mode]}/" >/dev/null
done

# The run with the same requests and no layer, for each layered mode.
declare -A BASELINE=([tower-http-bearer]=bare+bearer [pat-bearer]=bare+bearer [pat-basic]=bare+basic
  [floor-bearer]=bare+bearer [floor-basic]=bare+basic)
declare -A RPS RATIO SAME
for round in $(seq "$ROUNDS"); do
  declare -A ROUND=()
  order=("${RUNS[@]}")
  if [ $((round % 2)) = 0 ]; then
    order=()
    for ((i = ${#RUNS[@]} - 1; i >= 0; i--)); do order+=("${RUNS[$i]}"); done
  fi
  for run in "${order[@]}"; do
    hdr=()
    [ -n "${HEADER[$run]}" ] && hdr=(-H "${HEADER[$run]}")
    rps=$("${WRK_PIN[@]}" wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" "${hdr[@]}" "http://127.0.0.1:${PORT[${SERVER[$run]}]}/" | awk '/Requests\/sec/ {print $2}')
    echo "round $round $run $rps"
    ROUND[$run]=$rps
  done
  ratio() { awk -v a="${ROUND[$1]}" -v b="${ROUND[$2]}" 'BEGIN {print a / b}'; }
  for run in "${RUNS[@]}"; do
    RPS[$run]="${RPS[$run]:-} ${ROUND[$run]}"
    RATIO[$run]="${RATIO[$run]:-} $(ratio "$run" bare)"
    base=${BASELINE[$run]:-}
    if [ -n "$base" ]; then
      SAME[$run]="${SAME[$run]:-} $(ratio "$run" "$base")"
    fi
  done
  # tower-pat against its peer, paired in the round.
  SAME[peer]="${SAME[peer]:-} $(ratio pat-bearer tower-http-bearer)"
  # And against the floor of the work, paired in the round.
  SAME[floor-bearer-pat]="${SAME[floor-bearer-pat]:-} $(ratio pat-bearer floor-bearer)"
  SAME[floor-basic-pat]="${SAME[floor-basic-pat]:-} $(ratio pat-basic floor-basic)"
done
for run in "${RUNS[@]}"; do
  printf "%-18s %10.0f req/s  ratio to bare %.3f (per round: %s)\n" "$run" \
    "$(echo "${RPS[$run]}" | median)" "$(echo "${RATIO[$run]}" | median)" "$(per_round "${RATIO[$run]}")"
done
for run in tower-http-bearer floor-bearer pat-bearer floor-basic pat-basic; do
  printf "%-18s ratio to %-11s %.3f (per round: %s)\n" "$run" "${BASELINE[$run]}" \
    "$(echo "${SAME[$run]}" | median)" "$(per_round "${SAME[$run]}")"
done
printf "%-18s ratio to tower-http-bearer %.3f (per round: %s)\n" pat-bearer \
  "$(echo "${SAME[peer]}" | median)" "$(per_round "${SAME[peer]}")"
for mode in bearer basic; do
  printf "%-18s ratio to floor-%-6s    %.3f (per round: %s)\n" "pat-$mode" "$mode" \
    "$(echo "${SAME[floor-$mode-pat]}" | median)" "$(per_round "${SAME[floor-$mode-pat]}")"
done
