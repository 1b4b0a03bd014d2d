#!/usr/bin/env bash
# A/B of two release builds of the standalone (BEFORE and AFTER, paths to the binaries):
# the same loads as bench/run.sh (wrk, loadtest signin), interleaved repetitions, servers on core 0,
# load on core 1, limits off. E.g.: git worktree add /tmp/old e61683f && (cd /tmp/old && cargo build
# --release --example standalone) && BEFORE=/tmp/old/target/release/examples/standalone
# AFTER=target/release/examples/standalone bash bench/ab.sh
# Metrics are off unless METRICS_LISTEN=ADDR (both sides). ENV_BEFORE / ENV_AFTER add settings to one side (space-separated VAR=VALUE), so one binary can
# be compared with itself: BEFORE=$B AFTER=$B ENV_AFTER=SERVER_AUTH_ALGORITHM=ML-DSA-65 bash bench/ab.sh
set -uo pipefail
REPS=${REPS:-5} DUR=${DUR:-5} CONNS=16
ROOT=$(cd "$(dirname "$0")/.." && pwd) OUT=${OUT:-$ROOT/target/bench-ab}; rm -rf $OUT; mkdir -p $OUT
SECRET=bench-fleet-secret-of-32-bytes-or-more PASSWORD=bench-admin-password PREFIX=/api/v1/auth
LOADTEST=${LOADTEST:-$ROOT/target/release/examples/loadtest}
declare -A EXTRA=([before]="${ENV_BEFORE:-}" [after]="${ENV_AFTER:-}")
declare -A BINS=([before]=${BEFORE:?BEFORE=path of the old standalone} [after]=${AFTER:?AFTER=path of the new standalone}) PORT=([before]=18200 [after]=18201) SPID
env_=(env RUST_LOG=warn SERVER_AUTH_FLEET_MINT_SECRET=$SECRET SERVER_AUTH_AUTO_CREATE_ADMIN=true
  SERVER_AUTH_ADMIN_PASSWORD=$PASSWORD SERVER_AUTH_CHALLENGE_TTL_SECONDS=3600
  SERVER_AUTH_RATE_LIMIT_PER_IP_PER_MINUTE=0 SERVER_AUTH_REFRESH_PER_FAMILY_PER_MINUTE=0 SERVER_AUTH_ALLOW_MEMORY_REVOCATIONS=false
  SERVER_AUTH_METRICS_LISTEN=${METRICS_LISTEN-} SERVER_AUTH_CHALLENGE_MAX_OUTSTANDING=4000000)
# (4M outstanding: the /challenge load issues ~400k a repetition, all live for the 3,600 s TTL;
# at the default 1M cap the third repetition's sign-ins found the store full.)
for v in before after; do
  mkdir -p $OUT/$v
  # shellcheck disable=SC2086 # EXTRA is a list of VAR=VALUE words
  "${env_[@]}" ${EXTRA[$v]} taskset -c 0 ${BINS[$v]} --listen 127.0.0.1:${PORT[$v]} --data-dir $OUT/$v > $OUT/$v.log 2>&1 &
  SPID[$v]=$!
  for _ in $(seq 600); do grep -q 'listening on' $OUT/$v.log && break; sleep 0.1; done
  grep -q 'listening on' $OUT/$v.log || { cat $OUT/$v.log; exit 1; }
done
trap 'kill ${SPID[@]} 2>/dev/null' EXIT
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
wrk_run() { local v=$1 label=$2 path=$3 rep=$4; shift 4; local c0 c1 t0 t1
  c0=$(cpu_ticks ${SPID[$v]}); t0=$(date +%s.%N)
  env "$@" timeout $((DUR+60)) taskset -c 1 wrk -t1 -c$CONNS -d${DUR}s --timeout 30s --latency -s $ROOT/bench/wrk/req.lua "http://127.0.0.1:${PORT[$v]}$PREFIX$path" > $OUT/wrk.out 2>&1
  c1=$(cpu_ticks ${SPID[$v]}); t1=$(date +%s.%N)
  python3 $ROOT/bench/parse_wrk.py $v "$label" $rep "$(python3 -c "print(($c1-$c0)/100/($t1-$t0))")" < $OUT/wrk.out >> $OUT/results.jsonl; }
signin_run() { local v=$1 alg=$2 rep=$3
  timeout $((DUR+600)) taskset -c 1 $LOADTEST signin --base "http://127.0.0.1:${PORT[$v]}$PREFIX" --alg $alg --keys 6000 --conns $CONNS --duration $DUR --reps 1 --server-pid ${SPID[$v]} |
  python3 -c "import json,sys
for l in sys.stdin:
    r=json.loads(l); r.update(server='$v', path='/sign-in $alg', rep=$rep); print(json.dumps(r))" >> $OUT/results.jsonl; }
CH='{"address":"'$(printf 'ab%.0s' $(seq 32))'"}'
FL='{"session_id":"bench-session","agent_id":"bench-agent","role":"service"}'
for rep in $(seq $REPS); do
  echo "rep $rep $(date -u +%T)" >&2
  for v in before after; do wrk_run $v /jwks /jwks $rep METHOD=GET; done
  for v in after before; do wrk_run $v /challenge /challenge $rep METHOD=POST "BODY=$CH"; done
  for alg in Ed25519 secp256k1 ML-DSA-65; do for v in before after; do signin_run $v $alg $rep; done; done
  for v in after before; do wrk_run $v /fleet/sessions /fleet/sessions $rep METHOD=POST "BODY=$FL" FLEET_SECRET=$SECRET; done
done
kill ${SPID[before]} ${SPID[after]}; wait 2>/dev/null
python3 - $OUT/results.jsonl <<'PY'
import json,sys,statistics as st
rows=[json.loads(l) for l in open(sys.argv[1])]
paths=[]
for r in rows:
    if r['path'] not in paths: paths.append(r['path'])
print("| path | before req/s (median) | after req/s (median) | after/before | reps |")
print("|---|---:|---:|---:|---:|")
for p in paths:
    b=[r['rps'] for r in rows if r['path']==p and r['server']=='before']
    a=[r['rps'] for r in rows if r['path']==p and r['server']=='after']
    print(f"| `{p}` | {st.median(b):,.0f} | {st.median(a):,.0f} | {st.median(a)/st.median(b):.3f} | {len(b)}/{len(a)} |")
PY
