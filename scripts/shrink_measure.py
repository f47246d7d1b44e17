#!/usr/bin/env python3
"""Issue 11 measurement: for each variant, the first 20 failing det seeds (hunt, default
strategy and params), each shrunk; before/after steps and preemptions, protocol-view rows,
and whether the shrunk run replays (MATCH, exit 1)."""
import json, subprocess, sys, glob, os
BIN = sys.argv[1]; OUT = sys.argv[2]; N = int(sys.argv[3]) if len(sys.argv) > 3 else 20
VARIANTS = [("hpt", "buggy"), ("pfncache", "speculative-valid"), ("pfncache", "deactivate-race"), ("pfncache", "no-refresh-lock")]
os.makedirs(OUT, exist_ok=True)
def rows(path):
    lines = open(path).read().splitlines()
    i = next(i for i, l in enumerate(lines) if l.startswith("---"))
    return len(lines) - i - 1
for m, v in VARIANTS:
    res = f"{OUT}/{m}-{v}"
    subprocess.run([BIN, "hunt", "--model", m, "--variant", v, "--mode", "det", "--seeds", "1..60",
                    "--results-dir", res, "--format", "json"], capture_output=True)
    hunt = json.load(open(glob.glob(f"{res}/hunt-*/hunt.json")[0]))
    failing = hunt["failing"][:N]
    grew = 0
    for f in failing:
        d = f["run_dir"]
        s = json.loads(subprocess.run([BIN, "shrink", d, "--format", "json"], capture_output=True, text=True).stdout)
        b, a = s["before"], s["after"]
        r = subprocess.run([BIN, "replay", d + "/shrunk", "--format", "json"], capture_output=True, text=True)
        rj = json.loads(r.stdout)
        g = a["steps"] > b["steps"] or a["preemptions"] > b["preemptions"]
        grew += g
        print(f"{m}/{v}\tseed {f['seed']}\t{s['invariant']}\tsteps {b['steps']}->{a['steps']}\tpreemptions {b['preemptions']}->{a['preemptions']}\t"
              f"threads {b['threads']}->{a['threads']}\trows {rows(d + '/shrunk/interleaving.txt')}\truns {s['runs']}\t"
              f"replay {'MATCH' if rj['match'] else 'MISMATCH'} exit {r.returncode}\t{'GREW' if g else 'ok'}", flush=True)
    print(f"SUMMARY {m}/{v}: {len(failing)} failing seeds shrunk, {grew} grew", flush=True)
