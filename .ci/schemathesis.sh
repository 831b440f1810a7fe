#!/usr/bin/env bash
# The admin API against its own OpenAPI document: schemathesis with every check on the
# quickstart (SQLite store, the limiter off so the run's invalid tokens do not lock the
# runner out, and no limit on leaked-token reports, which it sends more than 60 of). Installs schemathesis in a virtualenv. Exit status: schemathesis's.
# One worker: every scenario acts for the same owner, so scenarios run side by side
# would delete each other's tokens between a create and its check.
# Every check but one: `ensure_resource_availability` reports a 404 for a created token
# unless a DELETE removed it, but `POST /{id}/rotate {"new_id": true}` removes the old id
# too (documented: the token is replaced), so a scenario that rotates a token it created
# and then reads the old id is reported as a failure (ST302) when the API is right.
#   SCHEMATHESIS_VENV   where the virtualenv lives (default /tmp/pat-schemathesis)
#   SCHEMATHESIS_EXAMPLES, SCHEMATHESIS_SEED   examples per operation (100), seed (1)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${SCHEMATHESIS_VENV:-/tmp/pat-schemathesis}
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'schemathesis==4.32.5'
fi
cargo build -q --all-features --example quickstart --bin pat
dir=$(mktemp -d)
export PAT_STORE_URL="sqlite://$dir/schemathesis.db" PAT_CLI="$PWD/target/debug/pat"
PAT_MAX_FAILURES=0 PAT_REVOKE_LIMIT=0 PAT_LISTEN=127.0.0.1:0 target/debug/examples/quickstart >"$dir/out" 2>"$dir/err" &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do grep -q '^listening on ' "$dir/err" && break; sleep 0.1; done
base=$(sed -n 's/^listening on \(http:[^ ]*\).*/\1/p' "$dir/err")
[ -n "$base" ] || { echo "the quickstart did not start:" >&2; cat "$dir/err" >&2; exit 1; }
token=$("$PAT_CLI" token create -u demo -n openapi -e 1h -q)
curl -sf -H "Authorization: Bearer $token" "$base/personal-access-tokens/openapi.json" >"$dir/openapi.json"
cd .ci
SCHEMATHESIS_HOOKS=schemathesis_hooks "$venv/bin/schemathesis" run "$dir/openapi.json" \
  --url "$base" --checks all --exclude-checks ensure_resource_availability --workers 1 --max-examples "${SCHEMATHESIS_EXAMPLES:-100}" \
  --seed "${SCHEMATHESIS_SEED:-1}" --no-color
