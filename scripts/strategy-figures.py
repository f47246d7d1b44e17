#!/usr/bin/env python3
"""Seeds to bug, det mode: random vs PCT, for every race variant of every model.

For each race variant (its default cell) and each strategy, hunts seeds 1..N
(`hunt --mode det`, THREADS workers, OPS ops each) and prints how many of the N seeds
fail and the first that does; when none of the N fails, it goes on to seed 1000 and
stops at the first failure. The README's "Random vs PCT" table is this script's
output.

Usage: scripts/strategy-figures.py [N] [--threads T] [--ops K] [--pct-depth D ...]
  BIN overrides the binary (default: the release build cargo names, see bin.sh).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile


def binary():
    if os.environ.get("BIN"):
        return os.environ["BIN"]
    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run(
        ["bash", "-c", f". {here}/bin.sh && echo $BIN"],
        check=True, capture_output=True, text=True, cwd=os.path.dirname(here),
    )
    return out.stdout.strip()


def hunt(bin_, model, variant, strategy, seeds, stop, threads, ops, extra):
    res = tempfile.mkdtemp(prefix="kt-figures-")
    try:
        cmd = [bin_, "hunt", "--model", model, "--variant", variant, "--mode", "det",
               "--strategy", strategy, "--threads", str(threads), "--ops", str(ops),
               "--seeds", seeds, "--format", "json", "--quiet", "--results-dir", res] + extra
        if stop:
            cmd.append("--stop-on-first")
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode not in (0, 1, 3):
            sys.exit(f"{' '.join(cmd)}: exit {out.returncode}\n{out.stderr}")
        j = json.loads(out.stdout)
        return sorted(f["seed"] for f in j["failing"])
    finally:
        shutil.rmtree(res, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("n", nargs="?", type=int, default=100)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--ops", type=int, default=100)
    ap.add_argument("--pct-depth", type=int, action="append")
    a = ap.parse_args()
    depths = a.pct_depth or [3]
    bin_ = binary()
    listing = json.loads(subprocess.run([bin_, "list", "--format", "json"], check=True,
                                        capture_output=True, text=True).stdout)
    cols = ["random"] + [f"pct d={d}" for d in depths]
    print(f"Det mode, {a.threads} threads x {a.ops} ops: failing seeds of 1..{a.n}, "
          f"first failing seed (beyond {a.n}: searched to 1000)\n")
    print("| model | variant | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for m in listing["models"]:
        for v in m["variants"]:
            if v["kind"] != "race":
                continue
            cells = []
            for col, (strategy, extra) in zip(
                    cols, [("random", [])] + [("pct", ["--pct-depth", str(d)]) for d in depths]):
                f = hunt(bin_, m["name"], v["name"], strategy, f"1..{a.n}", False,
                         a.threads, a.ops, extra)
                if f:
                    cells.append(f"{len(f)}/{a.n}, first {f[0]}")
                else:
                    g = hunt(bin_, m["name"], v["name"], strategy, f"{a.n + 1}..1000", True,
                             a.threads, a.ops, extra)
                    cells.append(f"0/{a.n}, first {g[0]}" if g else "none in 1000")
            print(f"| {m['name']} | {v['name']} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
