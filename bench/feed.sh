#!/usr/bin/env bash
# The revocation feed's benchmarks of issue 13 (SPEC 7), in one run:
#   - a 304 poll (If-None-Match) and an empty delta poll (?since=latest)
#     against the floor server's /jwks (the bare-axum floor serving our bytes),
#     each run right after a floor run of its own, the median of the pairs' ratios;
#   - a delta poll (10 new entries) against a full poll at 100,000 entries;
#   - the time from POST /revoke answering 200 to 100 connected event streams
#     having the event (examples/stream_latency.rs), p50/p99.
# Servers on SERVER_CORE, load on LOAD_CORE, limits off, repetitions
# interleaved. Writes target/bench-feed/report.md.
#
#   bash bench/feed.sh               # REPS=5 DUR=5
set -euo pipefail
REPS=${REPS:-5} DUR=${DUR:-5} CONNS=${CONNS:-16}
SERVER_CORE=${SERVER_CORE:-0} LOAD_CORE=${LOAD_CORE:-1}
ENTRIES=${ENTRIES:-100000} STREAMS=${STREAMS:-100} EVENTS=${EVENTS:-200}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/target/bench-feed}
PORT_OURS=18110 PORT_FLOOR=18112
SECRET=bench-fleet-secret-of-32-bytes-or-more PASSWORD=bench-admin-password PREFIX=/api/v1/auth
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
PIDS=()
trap cleanup EXIT
rm -rf "$OUT"; mkdir -p "$OUT/ours"; cd "$ROOT"

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
cargo build --release --example standalone --example floor --example stream_latency
BIN=$ROOT/target/release/examples

# ENTRIES - 10 revocations preloaded in pico's file format; 10 more are
# revoked through the API after a cursor is taken, for the delta poll.
denylist $((ENTRIES - 10)) "$OUT/ours/revocations.jsonl"
env RUST_LOG=warn SERVER_AUTH_FLEET_MINT_SECRET=$SECRET SERVER_AUTH_AUTO_CREATE_ADMIN=true \
  SERVER_AUTH_ADMIN_PASSWORD=$PASSWORD SERVER_AUTH_RATE_LIMIT_PER_IP_PER_MINUTE=0 \
  SERVER_AUTH_REFRESH_PER_FAMILY_PER_MINUTE=0 SERVER_AUTH_REVOCATION_STREAM_MAX=$((STREAMS + 10)) \
  SERVER_AUTH_METRICS_LISTEN=${METRICS_LISTEN-} \
  taskset -c "$SERVER_CORE" "$BIN/standalone" --listen 127.0.0.1:$PORT_OURS --data-dir "$OUT/ours" >"$OUT/ours.log" 2>&1 &
OURS_PID=$!; PIDS+=($OURS_PID); wait_listening "$OUT/ours.log" $OURS_PID
BASE=http://127.0.0.1:$PORT_OURS$PREFIX
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
OPER=$(curl -sf -XPOST "$BASE/login" -H 'content-type: application/json' \
  -d "{\"email\":\"admin@pico.local\",\"password\":\"$PASSWORD\"}" | json 'd["access_token"]')
SERV=$(curl -sf -XPOST "$BASE/fleet/sessions" -H 'content-type: application/json' -H "X-Fleet-Secret: $SECRET" \
  -d '{"session_id":"bench-poller","agent_id":"bench","role":"service"}' | json 'd["session_token"]')
poll() { curl -sf -H "Authorization: Bearer $SERV" "$BASE/revoked-jtis$1"; }
C0=$(poll "" | json 'd["cursor"]')
for i in $(seq 10); do
  curl -sf -XPOST "$BASE/revoke" -H 'content-type: application/json' -H "Authorization: Bearer $OPER" \
    -d "{\"jti\":\"feed-bench-delta-$i\",\"reason\":\"bench\"}" >/dev/null
done
curl -sf -D "$OUT/full.headers" -o "$OUT/full.json" -H "Authorization: Bearer $SERV" "$BASE/revoked-jtis"
ETAG=$(grep -i '^etag:' "$OUT/full.headers" | cut -d' ' -f2- | tr -d '\r')
CN=$(json 'd["cursor"]' <"$OUT/full.json")
FULL_N=$(json 'len(d["items"])' <"$OUT/full.json")
DELTA_N=$(poll "?since=$C0" | json 'len(d["items"]) if not d["full"] else -1')
EMPTY_N=$(poll "?since=$CN" | json 'len(d["items"]) if not d["full"] else -1')
S304=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $SERV" -H "If-None-Match: $ETAG" "$BASE/revoked-jtis")
echo "full poll: $FULL_N entries, $(wc -c <"$OUT/full.json") bytes; delta since C0: $DELTA_N; since latest: $EMPTY_N; conditional: $S304" | tee "$OUT/check.txt" >&2
[ "$FULL_N" = "$ENTRIES" ] && [ "$DELTA_N" = 10 ] && [ "$EMPTY_N" = 0 ] && [ "$S304" = 304 ] \
  || { echo "the feed did not answer as SPEC 7 says" >&2; exit 1; }

curl -sf "$BASE/jwks" >"$OUT/jwks.json"
taskset -c "$SERVER_CORE" "$BIN/floor" --listen 127.0.0.1:$PORT_FLOOR --jwks-file "$OUT/jwks.json" \
  --poll-file "$OUT/jwks.json" >"$OUT/floor.log" 2>&1 &
FLOOR_PID=$!; PIDS+=($FLOOR_PID); wait_listening "$OUT/floor.log" $FLOOR_PID
declare -A PORT=([ours]=$PORT_OURS [floor]=$PORT_FLOOR) SPID=([ours]=$OURS_PID [floor]=$FLOOR_PID)

RESULTS=$OUT/results.jsonl; : >"$RESULTS"
for rep in $(seq "$REPS"); do
  printf '\n== repetition %s of %s\n' "$rep" "$REPS" >&2
  # Each load against the floor runs next to a floor run of its own (the
  # floor first in odd repetitions, second in even ones): the machine's
  # speed drifts within seconds, so the ratio is taken pair by pair and the
  # report gives the median of the pairs.
  pair() { # FLOOR_LABEL LABEL PATH VAR=VALUE...
    local fl=$1 label=$2 path=$3; shift 3
    if ((rep % 2)); then wrk_run floor "$fl" /jwks "$rep" req.lua METHOD=GET; fi
    wrk_run ours "$label" "$path" "$rep" req.lua "$@"
    if ! ((rep % 2)); then wrk_run floor "$fl" /jwks "$rep" req.lua METHOD=GET; fi
  }
  pair "floor /jwks" "304 poll" /revoked-jtis METHOD=GET "AUTH=$SERV" "IF_NONE_MATCH=$ETAG"
  pair "floor /jwks (pair 2)" "empty delta poll" "/revoked-jtis?since=$CN" METHOD=GET "AUTH=$SERV"
  pair "floor /jwks (pair 3)" "/jwks" /jwks METHOD=GET
  wrk_run ours "delta poll (10 new) @100k" "/revoked-jtis?since=$C0" "$rep" req.lua METHOD=GET "AUTH=$SERV"
  wrk_run ours "full poll @100k" /revoked-jtis "$rep" req.lua METHOD=GET "AUTH=$SERV"
done
printf '\n== stream latency: %s streams, %s revocations\n' "$STREAMS" "$EVENTS" >&2
for rep in $(seq 3); do
  timeout 600 taskset -c "$LOAD_CORE" "$BIN/stream_latency" --base "$BASE" --token "$OPER" \
    --streams "$STREAMS" --events "$EVENTS" | tee -a "$OUT/latency.jsonl" >&2
done

python3 - "$RESULTS" "$OUT/latency.jsonl" <<'PY' | tee "$OUT/report.md"
import json, statistics as st, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
med = lambda label, k="rps": st.median(r[k] for r in rows if r["path"] == label)
errs = {r["path"]: 0 for r in rows}
for r in rows: errs[r["path"]] += r.get("errors") or 0
def paired(label, floor_label):
    by_rep = {r["rep"]: r["rps"] for r in rows if r["path"] == floor_label}
    return st.median(r["rps"] / by_rep[r["rep"]] for r in rows if r["path"] == label)
print("| load | req/s (median) | p99 ms | ratio (median of pairs) | errors |\n|---|---:|---:|---:|---:|")
for label, floor_label in [("floor /jwks", None), ("304 poll", "floor /jwks"),
                           ("floor /jwks (pair 2)", None), ("empty delta poll", "floor /jwks (pair 2)"),
                           ("floor /jwks (pair 3)", None), ("/jwks", "floor /jwks (pair 3)"),
                           ("full poll @100k", None), ("delta poll (10 new) @100k", "full poll @100k")]:
    ratio = f"{paired(label, floor_label):.2f} of {floor_label}" if floor_label else ""
    print(f"| {label} | {med(label):,.0f} | {med(label, 'p99_ms'):.2f} | {ratio} | {errs[label]} |")
lat = [json.loads(l) for l in open(sys.argv[2])]
print("\n| stream latency run | samples | missed | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|---:|")
for i, r in enumerate(lat, 1):
    print(f"| {i} | {r['samples']} | {r['missed']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.2f} |")
print(f"\nmedian of runs: p50 {st.median(r['p50_ms'] for r in lat):.2f} ms, p99 {st.median(r['p99_ms'] for r in lat):.2f} ms")
PY
