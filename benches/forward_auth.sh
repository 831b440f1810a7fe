#!/usr/bin/env bash
# nginx auth_request to `pat serve`, against the floor of the subrequest mechanism.
#
#   bash benches/forward_auth.sh            (ROUNDS=5, SECONDS_PER_RUN=5, CONNS=32)
#
# wrk through nginx to a small upstream (an nginx server that answers 200), in
# interleaved rounds of three locations:
#   (a) pat   auth_request to `pat serve` /auth with a cached token (release build)
#   (b) floor auth_request to a location that just returns 200: the subrequest
#             mechanism alone (no hop, no decision)
#   (c) none  no auth_request at all
#   (d) hop   auth_request to an nginx server that just answers 200, over the same
#             keep-alive proxying as (a): the floor of any auth service reached over
#             HTTP (the hop without the decision), so (a)/(d) is what `pat serve` costs
# and prints requests/s per run, and per round the ratio (a)/(b); the goal is a median
# of at least 0.90. Then, with CALLGRIND=1, the instructions per /auth request of
# `pat serve` under callgrind (user space; deterministic whatever else the machine does).
# Needs nginx, wrk, curl (and valgrind for CALLGRIND=1). PAT=path/to/pat measures
# another build.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in nginx wrk curl; do
  command -v "$tool" >/dev/null || { echo "$tool not found: apt-get install $tool" >&2; exit 1; }
done
if [ -z "${PAT:-}" ]; then
  cargo build --release -q --features server --bin pat
  PAT=$PWD/target/release/pat
fi
ROUNDS=${ROUNDS:-5}
SECS=${SECONDS_PER_RUN:-5}
CONNS=${CONNS:-32}
dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$dir/nginx.pid" ] && kill "$(cat "$dir/nginx.pid")" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export PAT_STORE_URL="sqlite://$dir/pat.db"
token=$("$PAT" token create -u bench -n forward-auth -e 1d -q)
start_pat() {
  "$@" serve --listen "127.0.0.1:$pat_port" >"$dir/pat.log" 2>"$dir/pat.err" &
  pids+=($!)
  for _ in $(seq 600); do grep -q '^listening on ' "$dir/pat.err" && return 0; sleep 0.1; done
  echo "pat serve did not start" >&2; cat "$dir/pat.err" >&2; exit 1
}
pat_port=$(free_port); up_port=$(free_port); web_port=$(free_port); hop_port=$(free_port)
mkdir -p "$dir/tmp"
cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
events { worker_connections 4096; }
http {
  client_body_temp_path tmp/client_body; proxy_temp_path tmp/proxy;
  fastcgi_temp_path tmp/fastcgi; uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;
  access_log off;
  upstream pat { server 127.0.0.1:$pat_port; keepalive 64; }
  upstream app { server 127.0.0.1:$up_port; keepalive 64; }
  upstream hop { server 127.0.0.1:$hop_port; keepalive 64; }
  server {
    listen 127.0.0.1:$up_port;
    location / { return 200 "hello\n"; }
  }
  server {
    listen 127.0.0.1:$hop_port;
    location / { return 200; }
  }
  server {
    listen 127.0.0.1:$web_port;
    # Keep-alive to both upstreams. proxy_set_header in a location replaces every one
    # inherited, so each location that sets a header sets Connection too.
    proxy_http_version 1.1;
    location /pat/ {
      auth_request /_pat;
      auth_request_set \$owner \$upstream_http_x_pat_owner;
      proxy_set_header X-Pat-Owner \$owner;
      proxy_set_header Connection "";
      proxy_pass http://app;
    }
    location /floor/ {
      auth_request /_floor;
      auth_request_set \$owner \$upstream_http_x_pat_owner;
      proxy_set_header X-Pat-Owner \$owner;
      proxy_set_header Connection "";
      proxy_pass http://app;
    }
    location /hop/ {
      auth_request /_hop;
      auth_request_set \$owner \$upstream_http_x_pat_owner;
      proxy_set_header X-Pat-Owner \$owner;
      proxy_set_header Connection "";
      proxy_pass http://app;
    }
    location /none/ {
      proxy_set_header Connection "";
      proxy_pass http://app;
    }
    location = /_pat {
      internal;
      proxy_pass http://pat/auth;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Forwarded-Method \$request_method;
      proxy_set_header X-Forwarded-Uri \$request_uri;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header Connection "";
    }
    location = /_hop {
      internal;
      proxy_pass http://hop/auth;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Forwarded-Method \$request_method;
      proxy_set_header X-Forwarded-Uri \$request_uri;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header Connection "";
    }
    location = /_floor {
      internal;
      return 200;
    }
  }
}
CONF
nginx -p "$dir" -c "$dir/nginx.conf" -g "pid $dir/nginx.pid;" -e "$dir/error.log"
start_pat "$PAT"
base="http://127.0.0.1:$web_port"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$base/pat/x")" = 200 ] \
  || { echo "the check through nginx does not pass" >&2; cat "$dir/error.log" "$dir/pat.err" >&2; exit 1; }
[ "$(curl -s -o /dev/null -w '%{http_code}' "$base/pat/x")" = 401 ] || { echo "no token passed" >&2; exit 1; }
run() { wrk -t2 -c"$CONNS" -d"${SECS}s" -H "Authorization: Bearer $token" "$base/$1/x" | awk '/Requests\/sec/ {print $2}'; }
echo "machine: $(nproc) cores, $(uname -sr); nginx $(nginx -v 2>&1 | sed 's/.*\///'); ${SECS}s per run, $CONNS connections"
run pat >/dev/null; run floor >/dev/null; run hop >/dev/null   # warm-up
ratios=(); hops=()
for r in $(seq "$ROUNDS"); do
  a=$(run pat); b=$(run floor); c=$(run none); d=$(run hop)
  ratio=$(python3 -c "print(f'{$a / $b:.3f}')")
  hop=$(python3 -c "print(f'{$a / $d:.3f}')")
  ratios+=("$ratio"); hops+=("$hop")
  echo "round $r: pat $a/s, floor $b/s, none $c/s, hop $d/s; pat/floor $ratio, pat/hop $hop"
done
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
echo "median pat/floor: $(median "${ratios[@]}") (goal: at least 0.90)"
echo "median pat/hop: $(median "${hops[@]}") (the hop alone, answered by nginx)"
if [ "${CALLGRIND:-0}" = 1 ]; then
  command -v callgrind_control >/dev/null || { echo "valgrind not found" >&2; exit 1; }
  kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
  : >"$dir/pat.err"
  start_pat valgrind --tool=callgrind --callgrind-out-file="$dir/pat.cg" "$PAT"
  pid=${pids[-1]}
  hdr=(-H "Authorization: Bearer $token" -H "X-Forwarded-Method: GET" -H "X-Forwarded-Uri: /x")
  wrk -t1 -c4 -d2s "${hdr[@]}" "http://127.0.0.1:$pat_port/auth" >/dev/null
  callgrind_control --zero "$pid" >/dev/null 2>&1
  requests=$(wrk -t1 -c4 -d5s "${hdr[@]}" "http://127.0.0.1:$pat_port/auth" | awk '/requests in/ {print $1}')
  callgrind_control --dump "$pid" >/dev/null 2>&1
  total=$(awk '/^(summary|totals):/ {print $2; exit}' "$dir/pat.cg.1")
  echo "pat serve /auth: $((total / requests)) instructions per request ($requests requests, callgrind)"
fi
