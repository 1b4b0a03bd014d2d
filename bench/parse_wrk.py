"""Reads wrk --latency output on stdin; prints one JSON result line.

usage: wrk ... | python3 parse_wrk.py SERVER PATH REP [SERVER_CPU_UTIL]
"""

import json
import re
import sys

server, path, rep = sys.argv[1:4]
util = float(sys.argv[4]) if len(sys.argv) > 4 else None
text = sys.stdin.read()


def ms(value, unit):
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
lat = {p: ms(v, u) for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)}
non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
errors = int(non2xx.group(1)) if non2xx else 0
if sock:
    errors += sum(int(x) for x in sock.groups())
total = re.search(r"(\d+) requests in", text)
print(json.dumps({
    "server": server, "path": path, "rep": int(rep), "tool": "wrk",
    "rps": float(rps.group(1)) if rps else None,
    "p50_ms": lat.get("50"), "p99_ms": lat.get("99"),
    "requests": int(total.group(1)) if total else None,
    "errors": errors,
    "server_cpu_util": util,
}))
