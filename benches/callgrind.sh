#!/usr/bin/env bash
# Server instructions per request of bench_server modes, under callgrind: deterministic
# whatever else the machine does (user space only; valgrind hides SHA-NI, so SHA-256 runs
# in software, ~3,500 instructions of each cached check).
#
#   bash benches/callgrind.sh [MODE ...]     (default: bare pat-bearer pat-basic pat-uncached)
#
# Per mode: start the server under callgrind, warm it up with wrk for 2 s, zero the
# counters, run wrk -c4 for 5 s, dump, and divide the instructions by the requests wrk
# made. Needs valgrind (callgrind_control) and wrk. BIN=path/to/bench_server measures
# another build (e.g. an older commit's), TOKENS the tokens in the store (1,000), ARGS
# more bench_server flags (e.g. `--connect-info`, `--outer`).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }
command -v callgrind_control >/dev/null || { echo "valgrind not found: apt-get install valgrind" >&2; exit 1; }
MODES=("$@")
[ ${#MODES[@]} -gt 0 ] || MODES=(bare pat-bearer pat-basic pat-uncached)
if [ -z "${BIN:-}" ]; then
  cargo build --release --example bench_server -q
  BIN=target/release/examples/bench_server
fi
dir=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
for mode in "${MODES[@]}"; do
  valgrind --tool=callgrind --callgrind-out-file="$dir/$mode.out" \
    "$BIN" --listen 127.0.0.1:0 --mode "$mode" --tokens "${TOKENS:-1000}" ${ARGS:-} >"$dir/$mode.log" 2>"$dir/$mode.err" &
  pid=$!
  for _ in $(seq 600); do grep -q '^listening:' "$dir/$mode.log" && break; sleep 0.1; done
  addr=$(sed -n 's/^listening: //p' "$dir/$mode.log")
  [ -n "$addr" ] || { echo "$mode did not start" >&2; cat "$dir/$mode.err" >&2; exit 1; }
  case "$mode" in
    *-basic) header="Authorization: Basic $(sed -n 's/^basic: //p' "$dir/$mode.log" | head -1)" ;;
    bare) header="X-None: 1" ;;
    *) header="Authorization: Bearer $(sed -n 's/^token: //p' "$dir/$mode.log" | head -1)" ;;
  esac
  wrk -t1 -c4 -d2s -H "$header" "http://$addr/" >/dev/null
  callgrind_control --zero "$pid" >/dev/null 2>&1
  requests=$(wrk -t1 -c4 -d5s -H "$header" "http://$addr/" | awk '/requests in/ {print $1}')
  callgrind_control --dump "$pid" >/dev/null 2>&1
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  # The first dump, made after zeroing, holds exactly the measured requests' instructions.
  total=$(awk '/^(summary|totals):/ {print $2; exit}' "$dir/$mode.out.1")
  echo "$mode: $((total / requests)) instructions per request ($requests requests)"
done
