# What bench/run.sh and bench/feed.sh share; sourced by both, not run.
# The functions read the caller's settings when called: PIDS (servers to
# stop), OUT, ROOT, PREFIX, DUR, CONNS, LOAD_CORE, PORT and SPID (per server
# name: port and pid) and RESULTS (the JSON lines file).

# Stops every server in PIDS (the EXIT trap of both scripts).
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }

# wait_listening LOGFILE PID: until the server prints its address (60 s max).
wait_listening() {
  for _ in $(seq 600); do
    grep -q 'listening on' "$1" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { cat "$1" >&2; return 1; }
    sleep 0.1
  done
  echo "server did not start: $1" >&2; return 1
}

# denylist N PATH: a denylist of N entries in pico-server-auth's own file format.
denylist() {
  python3 - "$1" "$2" <<'PY'
import json, os, sys
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    for i in range(n):
        f.write(json.dumps({"jti": os.urandom(16).hex(), "revoked_at": 1795000000.0 + i,
                            "reason": "bench preload", "revoked_by": "admin@pico.local"}) + "\n")
PY
}

# CPU seconds (user + system) a process has used, from /proc (USER_HZ = 100).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# wrk_run SERVER LABEL URLPATH REP LUA [VAR=VALUE...]: DUR seconds of wrk with
# bench/wrk/LUA (the VAR=VALUEs in its environment) against SERVER's
# PREFIX/URLPATH; one JSON line, with the server's CPU use, onto RESULTS.
wrk_run() {
  local server=$1 label=$2 path=$3 rep=$4 lua=$5 t0 t1 c0 c1
  shift 5
  c0=$(cpu_ticks "${SPID[$server]}"); t0=$(date +%s.%N)
  env "$@" timeout $((DUR + 60)) taskset -c "$LOAD_CORE" wrk -t1 -c"$CONNS" -d"${DUR}s" --timeout 30s --latency \
    -s "$ROOT/bench/wrk/$lua" "http://127.0.0.1:${PORT[$server]}$PREFIX$path" >"$OUT/wrk.out" 2>&1 || true
  c1=$(cpu_ticks "${SPID[$server]}"); t1=$(date +%s.%N)
  python3 "$ROOT/bench/parse_wrk.py" "$server" "$label" "$rep" \
    "$(python3 -c "print(($c1 - $c0) / 100 / ($t1 - $t0))")" <"$OUT/wrk.out" | tee -a "$RESULTS" >&2
}
