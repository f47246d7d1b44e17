#!/usr/bin/env python3
"""Rarest race window entries/s of each model's fixed variant under several stress
injections, side by side: the figure of merit of issue 17, used to pick each model's
default injection policy (its descriptor's `injection`, `kvmtorture list`).

Each run is one `kvmtorture bench --one SPEC` child (the bench's own measurement, in a
process of its own); the injections alternate within each seed, so they share the
machine's load.

usage: scripts/injection_sweep.py BIN THREADS DURATION_MS SEEDS "P,B,POLICY;P,B,POLICY;..." [MODELS]
e.g.   scripts/injection_sweep.py target/release/kvmtorture 16 2000 3 \
           "0.01,20,uniform;0.01,20,targeted;0.001,20,uniform"
"""
import json
import statistics
import subprocess
import sys

FIXED = {"memslot": "skip-invalid"}


def main():
    if len(sys.argv) < 6:
        sys.exit(__doc__)
    binary, threads, dur_ms, seeds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    injections = sys.argv[5].split(";")
    models = sys.argv[6].split(",") if len(sys.argv) > 6 else ["hpt", "pfncache", "vpa", "memslot", "hash-protect"]
    runs = {}
    for m in models:
        for seed in range(1, seeds + 1):
            for inj in injections:
                prob, boost, policy = inj.split(",")
                spec = {"model": m, "variant": FIXED.get(m, "fixed"), "threads": threads, "seed": seed,
                        "budget_ms": dur_ms,
                        "injection": {"delay_prob": float(prob), "window_boost": float(boost), "policy": policy},
                        "params": [], "det": None}
                r = subprocess.run([binary, "bench", "--one", json.dumps(spec)], capture_output=True, text=True)
                if r.returncode != 0:
                    sys.exit(f"{m} seed {seed} {inj}: exit {r.returncode}: {r.stderr}")
                runs.setdefault((m, inj), []).append(json.loads(r.stdout))
    print(f"threads {threads}, {dur_ms} ms runs, seeds 1..{seeds}: medians over seeds")
    print("| model | injection | ops/s | rarest window | entries/s | vs first |")
    print("|---|---|---:|---|---:|---:|")
    for m in models:
        base = None
        for inj in injections:
            rs = runs[(m, inj)]
            per_s = {}
            for v in rs:
                for name, n in v["coverage"]:
                    per_s.setdefault(name, []).append(n / v["elapsed_s"])
            rarest = min(per_s, key=lambda k: statistics.median(per_s[k]))
            r = statistics.median(per_s[rarest])
            ops = statistics.median(v["ops_total"] / v["elapsed_s"] for v in rs)
            base = r if base is None else base
            ratio = f"{r / base:.2f}x" if base > 0 else "-"
            print(f"| {m} | {inj} | {ops:.0f} | {rarest} | {r:.1f} | {ratio} |")


if __name__ == "__main__":
    main()
