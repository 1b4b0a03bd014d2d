#!/usr/bin/env bash
# The one command of issue 6: micro-benchmarks, the end-to-end load benchmark
# of wallet-auth against pico-server-auth 0.2.2 and the bare-axum floor, all
# in one run, and the memory figures. Writes target/bench-run/report.md.
#
#   bash bench/run.sh                 # REPS=5 DUR=5 by default
#   REPS=3 DUR=3 bash bench/run.sh    # quicker, noisier
#   ALGORITHM=ML-DSA-65 OUT=target/bench-run-mldsa bash bench/run.sh
#                                     # wallet-auth's tokens ML-DSA-65 (default RS256)
#   METRICS_LISTEN=127.0.0.1:0 bash bench/run.sh
#                                     # with /metrics on (off by default here)
#
# Every server under test runs pinned to SERVER_CORE (default 0), every load
# generator to LOAD_CORE (default 1). Load goes to 127.0.0.1 only. Every loop
# is bounded: wrk runs DUR seconds (under `timeout`), the Rust driver stops
# after its pre-signed bodies or DUR seconds, and each server start waits at
# most 60 s.
set -euo pipefail

REPS=${REPS:-5}
DUR=${DUR:-5}
CONNS=${CONNS:-16}
SERVER_CORE=${SERVER_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
OURS_KEYS=${OURS_KEYS:-6000}
PICO_KEYS=${PICO_KEYS:-200}
FILL=${FILL:-1000000}
ALGORITHM=${ALGORITHM:-RS256}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/target/bench-run}
VENV=${VENV:-$ROOT/target/pico-venv}
PORT_OURS=18100 PORT_PICO=18101 PORT_FLOOR=18102 PORT_RSS=18103
SECRET=bench-fleet-secret-of-32-bytes-or-more
PASSWORD=bench-admin-password
PREFIX=/api/v1/auth

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
log() { printf '\n== %s\n' "$*" >&2; }
PIDS=()
trap cleanup EXIT

rm -rf "$OUT"
mkdir -p "$OUT"
cd "$ROOT"

log "tools"
if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq wrk; else
    echo "wrk is missing: apt-get install wrk" >&2; exit 1; fi
fi
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import pico_server_auth, uvicorn' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'pico-server-auth==0.2.2' uvicorn
fi
"$VENV/bin/pip" show pico-server-auth | grep -i '^version' >&2

log "build (release)"
cargo build --release --example standalone --example floor --example loadtest
cargo bench --bench hot_paths --bench token_algorithms --no-run
BIN=$ROOT/target/release/examples

{
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src examples benches bench || echo ' (dirty)')"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; server core $SERVER_CORE, load core $LOAD_CORE"
  echo "kernel: $(uname -r); rustc: $(rustc --version); wrk: $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$OUT/machine.txt"

log "micro-benchmarks (criterion, pinned to core $SERVER_CORE)"
taskset -c "$SERVER_CORE" cargo bench --bench hot_paths -- --noplot 2>&1 | tee "$OUT/criterion.txt" | grep -E '^[a-zA-Z_0-9-]+/|time:' >&2
# Tokens per algorithm (RS256 and ML-DSA-65 both, whatever ALGORITHM says):
# mint and verify per second, token sizes.
taskset -c "$SERVER_CORE" cargo bench --bench token_algorithms -- --noplot 2>&1 | tee "$OUT/token-algorithms.txt" | grep -E '^token|time:|thrpt:' >&2

# The rate limits are off: the load comes from one IP and measures
# throughput, not the limits (SPEC 10; 0 = off).
ours_env=(env RUST_LOG=warn SERVER_AUTH_FLEET_MINT_SECRET=$SECRET SERVER_AUTH_AUTO_CREATE_ADMIN=true
  SERVER_AUTH_ADMIN_PASSWORD=$PASSWORD SERVER_AUTH_CHALLENGE_TTL_SECONDS=3600
  SERVER_AUTH_RATE_LIMIT_PER_IP_PER_MINUTE=0 SERVER_AUTH_REFRESH_PER_FAMILY_PER_MINUTE=0
  SERVER_AUTH_ALGORITHM=$ALGORITHM SERVER_AUTH_METRICS_LISTEN=${METRICS_LISTEN-})

start_ours() { # PORT DATADIR LOG
  "${ours_env[@]}" taskset -c "$SERVER_CORE" "$BIN/standalone" --listen "127.0.0.1:$1" --data-dir "$2" >"$3" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
  wait_listening "$3" "$LAST_PID"
}

log "servers"
mkdir -p "$OUT/ours" "$OUT/pico"
denylist 10000 "$OUT/ours/revocations.jsonl"
cp "$OUT/ours/revocations.jsonl" "$OUT/pico/revocations.jsonl"
start_ours $PORT_OURS "$OUT/ours" "$OUT/ours.log"
OURS_PID=$LAST_PID
taskset -c "$SERVER_CORE" "$VENV/bin/python" "$ROOT/bench/pico_app.py" $PORT_PICO "$OUT/pico" $SECRET $PASSWORD >"$OUT/pico.log" 2>&1 &
PICO_PID=$!
PIDS+=("$PICO_PID")
wait_listening "$OUT/pico.log" "$PICO_PID"

# Tokens: an operator token from the admin login, a service token from the
# fleet endpoint. pico (client middleware off) ignores them; ours checks them.
token() { # PORT KIND
  local base="http://127.0.0.1:$1$PREFIX"
  if [ "$2" = operator ]; then
    curl -sf -XPOST "$base/login" -H 'content-type: application/json' \
      -d "{\"email\":\"admin@pico.local\",\"password\":\"$PASSWORD\"}"
  else
    curl -sf -XPOST "$base/fleet/sessions" -H 'content-type: application/json' -H "X-Fleet-Secret: $SECRET" \
      -d '{"session_id":"bench-poller","agent_id":"bench","role":"service"}'
  fi | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("access_token") or d["session_token"])'
}
declare -A PORT=([ours]=$PORT_OURS [pico]=$PORT_PICO [floor]=$PORT_FLOOR)
declare -A OPER SERV
for s in ours pico; do OPER[$s]=$(token "${PORT[$s]}" operator); SERV[$s]=$(token "${PORT[$s]}" service); done
# The floor serves our exact /jwks and /revoked-jtis bytes.
curl -sf "http://127.0.0.1:$PORT_OURS$PREFIX/jwks" >"$OUT/jwks.json"
curl -sf -H "Authorization: Bearer ${SERV[ours]}" "http://127.0.0.1:$PORT_OURS$PREFIX/revoked-jtis" >"$OUT/poll.json"
taskset -c "$SERVER_CORE" "$BIN/floor" --listen "127.0.0.1:$PORT_FLOOR" --jwks-file "$OUT/jwks.json" \
  --poll-file "$OUT/poll.json" >"$OUT/floor.log" 2>&1 &
FLOOR_PID=$!
PIDS+=("$FLOOR_PID")
wait_listening "$OUT/floor.log" "$FLOOR_PID"
declare -A SPID=([ours]=$OURS_PID [pico]=$PICO_PID [floor]=$FLOOR_PID)
# Both servers must answer the poll with the 10,000 preloaded entries.
for s in ours pico; do
  n=$(curl -sf -H "Authorization: Bearer ${SERV[$s]}" "http://127.0.0.1:${PORT[$s]}$PREFIX/revoked-jtis" |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))')
  echo "$s: /revoked-jtis has $n entries" >&2
done

RESULTS=$OUT/results.jsonl
: >"$RESULTS"

signin_run() { # SERVER ALG REP
  local keys=$OURS_KEYS
  [ "$1" = pico ] && keys=$PICO_KEYS
  timeout $((DUR + 600)) taskset -c "$LOAD_CORE" "$BIN/loadtest" signin --base "http://127.0.0.1:${PORT[$1]}$PREFIX" \
    --alg "$2" --keys "$keys" --conns "$CONNS" --duration "$DUR" --reps 1 --server-pid "${SPID[$1]}" |
    python3 -c "import json,sys
for l in sys.stdin:
    r=json.loads(l); r.update(server='$1', path='/sign-in $2', rep=$3, tool='loadtest'); r['errors']=r.get('errors',0); print(json.dumps(r))" |
    tee -a "$RESULTS" >&2
}

ADDR=$(printf 'ab%.0s' $(seq 32))
CH_BODY="{\"address\":\"$ADDR\"}"
FLEET_BODY='{"session_id":"bench-session","agent_id":"bench-agent","role":"service"}'

# Repetitions are interleaved across servers, so slow drift in the shared
# machine's load hits all of them alike.
for rep in $(seq "$REPS"); do
  log "repetition $rep of $REPS"
  for s in ours pico floor; do wrk_run $s /jwks /jwks "$rep" req.lua METHOD=GET; done
  for s in ours pico floor; do wrk_run $s /challenge /challenge "$rep" req.lua METHOD=POST "BODY=$CH_BODY"; done
  for alg in Ed25519 secp256k1 ML-DSA-65; do for s in ours pico; do signin_run $s $alg "$rep"; done; done
  for s in ours pico; do
    wrk_run $s /fleet/sessions /fleet/sessions "$rep" req.lua METHOD=POST "BODY=$FLEET_BODY" FLEET_SECRET=$SECRET
  done
  # As pico-client-auth polls: httpx sends Accept-Encoding: gzip, deflate.
  for s in ours pico; do
    wrk_run $s "/revoked-jtis @10k" /revoked-jtis "$rep" req.lua METHOD=GET "AUTH=${SERV[$s]}" \
      "ACCEPT_ENCODING=gzip, deflate"
  done
  # Without compression, against the floor serving the same bytes.
  for s in ours pico floor; do
    wrk_run $s "/revoked-jtis @10k identity" /revoked-jtis "$rep" req.lua METHOD=GET "AUTH=${SERV[$s]:-}"
  done
done
# /revoke last: it grows the denylist the poll above is measured with.
for rep in $(seq "$REPS"); do
  for s in ours pico; do
    wrk_run $s "/revoke (durable)" /revoke "$rep" revoke.lua "AUTH=${OPER[$s]}" "RUN_ID=$s$rep"
  done
done
for s in ours pico; do
  echo "$s: revocation file now has $(wc -l <"$OUT/$s/revocations.jsonl") lines" >&2
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
cleanup
PIDS=()

log "memory: $FILL outstanding challenges"
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
mkdir -p "$OUT/rss1"
start_ours $PORT_RSS "$OUT/rss1" "$OUT/rss1.log"
curl -sf "http://127.0.0.1:$PORT_RSS$PREFIX/jwks" >/dev/null
before=$(rss "$LAST_PID")
fill=$(timeout 1200 taskset -c "$LOAD_CORE" "$BIN/loadtest" fill --base "http://127.0.0.1:$PORT_RSS$PREFIX" \
  --count "$FILL" --conns "$CONNS" --long-every 4 --deadline 900)
after=$(rss "$LAST_PID")
echo "$fill" >&2
kill "$LAST_PID"; wait "$LAST_PID" 2>/dev/null || true

log "memory: 100,000-entry denylist"
mkdir -p "$OUT/rss2" "$OUT/rss3"
start_ours $PORT_RSS "$OUT/rss2" "$OUT/rss2.log"
curl -sf "http://127.0.0.1:$PORT_RSS$PREFIX/jwks" >/dev/null
empty=$(rss "$LAST_PID")
kill "$LAST_PID"; wait "$LAST_PID" 2>/dev/null || true
denylist 100000 "$OUT/rss3/revocations.jsonl"
start_ours $PORT_RSS "$OUT/rss3" "$OUT/rss3.log"
curl -sf "http://127.0.0.1:$PORT_RSS$PREFIX/jwks" >/dev/null
loaded=$(rss "$LAST_PID")
svc=$(token $PORT_RSS service)
curl -sf -H "Authorization: Bearer $svc" "http://127.0.0.1:$PORT_RSS$PREFIX/revoked-jtis" -o /dev/null
polled=$(rss "$LAST_PID")
kill "$LAST_PID"; wait "$LAST_PID" 2>/dev/null || true

python3 - "$OUT/rss.json" "$before" "$after" "$empty" "$loaded" "$polled" "$FILL" "$fill" <<'EOF'
import json, sys
path, b, a, e, l, p, n, fill = sys.argv[1:9]
json.dump({"challenges_before_kib": int(b), "challenges_after_kib": int(a), "challenges_filled": int(n),
           "deny_empty_kib": int(e), "deny_loaded_kib": int(l), "deny_polled_kib": int(p),
           "fill": json.loads(fill)}, open(path, "w"), indent=1)
EOF

log "report"
{
  echo '```'
  cat "$OUT/machine.txt"
  echo '```'
  echo
  python3 "$ROOT/bench/report.py" "$OUT"
} >"$OUT/report.md"
cat "$OUT/report.md"
