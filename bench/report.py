"""Turns the raw results of bench/run.sh into the markdown report.

usage: python3 report.py OUT_DIR

Reads OUT_DIR/results.jsonl (one line per repetition of each path on each
server), OUT_DIR/rss.json, and criterion's medians under target/criterion;
prints markdown to stdout. Figures are medians over repetitions; ratios are
of medians taken in this one run.
"""

import json
import os
import statistics
import sys

out = sys.argv[1]
crit = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "criterion")


def crit_ns(name):
    path = os.path.join(crit, name, "new", "estimates.json")
    try:
        with open(path) as f:
            return json.load(f)["median"]["point_estimate"]
    except OSError:
        return None


rows = [json.loads(line) for line in open(os.path.join(out, "results.jsonl")) if line.strip()]
by = {}
for r in rows:
    by.setdefault((r["path"], r["server"]), []).append(r)


def med(path, server, field):
    rs = by.get((path, server))
    if not rs:
        return None
    vals = [r[field] for r in rs if r.get(field) is not None]
    return statistics.median(vals) if vals else None


def errs(path, server):
    return sum(r.get("errors", 0) for r in by.get((path, server), []))


def reps(path, server):
    return len(by.get((path, server), []))


def f(x, nd=0):
    if x is None:
        return "n/a"
    return f"{x:,.{nd}f}"


def pct(x):
    return "n/a" if x is None else f"{x:.0%}"


paths = [
    "/jwks",
    "/challenge",
    "/sign-in Ed25519",
    "/sign-in secp256k1",
    "/sign-in ML-DSA-65",
    "/fleet/sessions",
    "/revoke (durable)",
    "/revoked-jtis @10k",
    "/revoked-jtis @10k identity",
]
floor_of = {"/jwks": "/jwks", "/challenge": "/challenge",
            "/revoked-jtis @10k identity": "/revoked-jtis @10k identity"}

print("| path | ours req/s | ours p50 / p99 ms | pico req/s | pico p50 / p99 ms | ours/pico | floor req/s | ours/floor | server CPU use ours / pico / floor | errors ours/pico |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
summary = {}
for p in paths:
    o, pi = med(p, "ours", "rps"), med(p, "pico", "rps")
    fl = med(floor_of[p], "floor", "rps") if p in floor_of else None
    ratio = o / pi if o and pi else None
    frac = o / fl if o and fl else None
    summary[p] = {"ours": o, "pico": pi, "ratio": ratio, "floor": fl, "floor_frac": frac,
                  "ours_p99": med(p, "ours", "p99_ms")}
    print(
        f"| `{p}` | {f(o)} | {f(med(p, 'ours', 'p50_ms'), 2)} / {f(med(p, 'ours', 'p99_ms'), 2)} "
        f"| {f(pi, 1)} | {f(med(p, 'pico', 'p50_ms'), 1)} / {f(med(p, 'pico', 'p99_ms'), 1)} "
        f"| {f(ratio, 1)}x | {f(fl)} | {'n/a' if frac is None else f'{frac:.0%}'} "
        f"| {pct(med(p, 'ours', 'server_cpu_util'))} / {pct(med(p, 'pico', 'server_cpu_util'))} / "
        f"{pct(med(floor_of[p], 'floor', 'server_cpu_util')) if p in floor_of else '-'} "
        f"| {errs(p, 'ours')} / {errs(p, 'pico')} |"
    )
print()
print(f"Repetitions per cell (ours/pico/floor): " + ", ".join(
    f"{p}: {reps(p, 'ours')}/{reps(p, 'pico')}/{reps(floor_of.get(p, ''), 'floor')}" for p in paths))
print()

print("### Micro-benchmarks (criterion medians, pinned to the server core)")
print()
micro = [
    ("verify/Ed25519", "Ed25519 verify (strict)"),
    ("verify/secp256k1", "secp256k1 verify"),
    ("verify/ML-DSA-65", "ML-DSA-65 verify (key decode included)"),
    ("mint/rs256_access", "RS256 access-token mint"),
    ("mint/hs256_refresh", "HS256 refresh-token mint"),
    ("mint/rs256_validate", "RS256 bearer validation"),
    ("challenge/issue_consume", "challenge issue + consume (100k outstanding)"),
    ("denylist_10k/lookup_hit", "denylist lookup, hit (10k entries)"),
    ("denylist_10k/lookup_miss", "denylist lookup, miss (10k entries)"),
    ("jsonl_append_fsync/1_writers", "JSONL append + fsync, 1 writer (per append)"),
    ("jsonl_append_fsync/16_writers", "JSONL append + fsync, 16 writers (per append)"),
    ("jsonl_append_fsync/256_writers", "JSONL append + fsync, 256 writers (per append)"),
]
print("| operation | median | per second |")
print("|---|---:|---:|")
for key, label in micro:
    ns = crit_ns(key)
    if ns is None:
        print(f"| {label} | n/a | n/a |")
        continue
    shown = f"{ns / 1000:,.2f} us" if ns < 1e6 else f"{ns / 1e6:,.3f} ms"
    print(f"| {label} | {shown} | {1e9 / ns:,.0f} |")
print()

print("### Sign-in against the crypto-bound ceiling (1 server core)")
print()
print("| algorithm | CPU of verify + RS256 mint + HS256 mint | ceiling sign-ins/s | measured sign-ins/s | fraction of ceiling | server CPU use | fraction per CPU-second used |")
print("|---|---:|---:|---:|---:|---:|---:|")
rs, hs = crit_ns("mint/rs256_access"), crit_ns("mint/hs256_refresh")
for alg in ["Ed25519", "secp256k1", "ML-DSA-65"]:
    v = crit_ns(f"verify/{alg}")
    got = med(f"/sign-in {alg}", "ours", "rps")
    if None in (v, rs, hs):
        print(f"| {alg} | n/a | n/a | {f(got)} | n/a |")
        continue
    cost = v + rs + hs
    ceiling = 1e9 / cost
    util = med(f"/sign-in {alg}", "ours", "server_cpu_util")
    per_cpu = [r["rps"] / r["server_cpu_util"] for r in by.get((f"/sign-in {alg}", "ours"), [])
               if r.get("server_cpu_util")]
    per_cpu = statistics.median(per_cpu) if per_cpu else None
    summary[f"ceiling {alg}"] = got / ceiling if got else None
    summary[f"ceiling per cpu {alg}"] = per_cpu / ceiling if per_cpu else None
    # One decimal: the target is a threshold (80%), and 79.6% must not
    # print as 80%.
    print(f"| {alg} | {cost / 1000:,.0f} us | {ceiling:,.0f} | {f(got)} | {(got or 0) / ceiling:.1%} "
          f"| {pct(util)} | {per_cpu / ceiling if per_cpu else 0:.1%} |")
print()

try:
    rss = json.load(open(os.path.join(out, "rss.json")))
except OSError:
    rss = {}
if rss:
    print("### Memory (VmRSS of the standalone server)")
    print()
    print("| state | VmRSS MiB | growth MiB |")
    print("|---|---:|---:|")
    base = rss.get("challenges_before_kib")
    for label, key, ref in [
        ("fresh server", "challenges_before_kib", None),
        (f"after {rss.get('challenges_filled', '?'):,} challenges issued (1 in 4 with a 3,904-char address)", "challenges_after_kib", "challenges_before_kib"),
        ("fresh server, empty denylist", "deny_empty_kib", None),
        ("100,000-entry denylist loaded", "deny_loaded_kib", "deny_empty_kib"),
        ("... after one GET /revoked-jtis (poll body cached)", "deny_polled_kib", "deny_empty_kib"),
    ]:
        v = rss.get(key)
        g = v - rss[ref] if ref and v is not None and rss.get(ref) is not None else None
        print(f"| {label} | {f(v / 1024 if v else None, 1)} | {f(g / 1024 if g is not None else None, 1)} |")
    print()
    print(f"Fill statuses: {rss.get('fill')}")
    print()

json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=1)
