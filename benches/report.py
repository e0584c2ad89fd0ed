#!/usr/bin/env python3
"""Ratio tables from one benchmark run, for BENCHMARKS.md.

    python3 benches/report.py                 # criterion groups + targets, markdown on stdout
    python3 benches/report.py --csv target/throughput.csv

Reads every `target/criterion/**/new/benchmark.json` (+ `estimates.json` beside it) and prints,
for each group, each peer's median time and the ratio genreg / peer (below 1: genreg is
faster). With the throughput CSV (written by the throughput harness, `cargo run --release -p
genreg-bench --bin throughput` from the repository root) it also checks the throughput targets
and tabulates the harness's lookup modes (`handle`, `read`, `get`: the CSV's `mode` column; a
CSV written before that column is all `handle`). Ratios only: absolute times on a shared machine
mean little.
"""
import argparse
import csv
import json
import os
import sys
from collections import defaultdict

PEER_ORDER = [
    "genreg", "papaya", "scc-HashIndex", "scc-HashMap", "dashmap", "RwLock<HashMap>",
    "Mutex<HashMap<Weak>>", "arc-swap<HashMap>", "ceiling (unsync, inline keys)",
]


# The harness's lookup modes (benches/src/throughput.rs, `Mode`) and the workloads that run in
# each of them; the other workloads read through the handle only.
MODES = ["handle", "read", "get"]
MODE_WORKLOADS = ["read-hit", "read-halfmiss", "registry-98/1/1"]


def load_harness(path):
    """{(workload, mode, names, dist, threads): {peer: Mops/s}} from the harness's CSV, or {}."""
    cells = defaultdict(dict)
    if not path or not os.path.exists(path):
        return cells
    with open(path) as f:
        for r in csv.DictReader(f):
            mode = r.get("mode") or "handle"
            cells[(r["workload"], mode, r["names"], r["dist"], r["threads"])][r["peer"]] = float(r["mops"])
    return cells


def load_criterion(root):
    groups = defaultdict(dict)  # group -> function -> median ns
    for dirpath, _, files in os.walk(root):
        if os.path.basename(dirpath) != "new" or "benchmark.json" not in files:
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            b = json.load(f)
        with open(os.path.join(dirpath, "estimates.json")) as f:
            e = json.load(f)
        groups[b["group_id"]][b["function_id"]] = e["median"]["point_estimate"]
    return groups


def fmt_ns(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.1f} ns"


def order_key(fn):
    base = fn.split("/")[0]
    return (PEER_ORDER.index(base) if base in PEER_ORDER else 99, fn)


def group_table(name, funcs, per=None):
    """One markdown table: peer, median, genreg/peer."""
    out = [f"\n**{name}**" + (f" (per entry: median / {per})" if per else "") + "\n",
           "| peer | median | genreg / peer |", "| --- | --- | --- |"]
    # Mode groups compare like with like: genreg/get vs papaya/get, ...
    for fn in sorted(funcs, key=order_key):
        t = funcs[fn] / (per or 1)
        mode = fn.split("/", 1)[1] if "/" in fn else None
        gkey = f"genreg/{mode}" if mode else "genreg"
        ratio = f"{funcs[gkey] / funcs[fn]:.2f}" if gkey in funcs else "-"
        label = f"**{fn}**" if fn.startswith("genreg") else fn
        out.append(f"| {label} | {fmt_ns(t)} | {ratio} |")
    return "\n".join(out)


def ratio(groups, group, a, b):
    g = groups.get(group, {})
    if a in g and b in g:
        return g[a] / g[b]
    return None


def verdict(r, goal, lower_is_better=True):
    if r is None:
        return "n/a", "not measured"
    ok = r <= goal if lower_is_better else r >= goal
    return f"{r:.2f}", "met" if ok else "**missed**"


def read_extras(path):
    """{peer: {"p999": ns, "bytes": b}} from the throughput harness's markdown."""
    out = defaultdict(dict)
    if not path or not os.path.exists(path):
        return out
    section = None
    for line in open(path):
        if line.startswith("#### Insert latency"):
            section = "lat"
        elif line.startswith("#### Memory"):
            section = "mem"
        elif line.startswith("| ") and not line.startswith("| peer") and not line.startswith("| ---"):
            f = [x.strip() for x in line.strip().strip("|").split("|")]
            if section == "lat":
                out[f[0]]["p999"] = float(f[4])
                out[f[0]]["p99"] = float(f[3])
            elif section == "mem":
                out[f[0]]["bytes"] = float(f[1])
    return out


def overview(groups, args):
    """One matrix: every target, genreg against each peer, all as 'genreg ahead by' (> 1: ahead)."""
    peers = [p for p in PEER_ORDER if p != "genreg"]
    short = {p: p.split(" ")[0] for p in peers}
    rows = []
    def time_row(label, group, mode=None):
        g = groups.get(group, {})
        key = lambda p: f"{p}/{mode}" if mode else p
        gk = key("genreg")
        rows.append((label, [f"{g[key(p)] / g[gk]:.2f}" if gk in g and key(p) in g else "" for p in peers]))
    time_row("lookup hit 1k, reused guard/handle (crit.)", "lookup_hit/1024/16B")
    time_row("lookup hit 1k, per-call get + clone (crit.)", "lookup_mode/1024/16B", "get")
    time_row("lookup hit 1k, per-call borrowed read (crit.)", "lookup_mode/1024/16B", "peek")
    time_row("lookup hit 1M (crit.)", "lookup_hit/1048576/16B")
    time_row("lookup hit 1M, per-call get + clone (crit.)", "lookup_mode/1048576/16B", "get")
    time_row("lookup hit 1M, per-call borrowed read (crit.)", "lookup_mode/1048576/16B", "peek")
    time_row("lookup miss 1M (crit.)", "lookup_miss/1048576/16B")
    time_row("unregister_if_same, succeeds (crit.)", "unregister_if_same/1024")
    time_row("unregister_if_same, stale tag (crit.)", "unregister_stale/1024")
    time_row("register + unregister cycle (crit.)", "cycle/1024")
    time_row("replace_if_same (crit.)", "replace_if_same/1024")
    time_row("iteration per entry, 64k (crit.)", "iterate/65536")
    cell = load_harness(args.csv)
    if cell:
        for wl in ("registry-98/1/1", "churn-80/10/10"):
            for mode in MODES:
                for n in ("1000", "1000000"):
                    for t in ("1", "2"):
                        c = cell.get((wl, mode, n, "uniform", t))
                        if not c:
                            continue
                        g = c.get("genreg")
                        rows.append((f"{wl}·{mode}, {n} names, uniform, {t} thr (harness)",
                                     [f"{g / c[p]:.2f}" if g and c.get(p) else "" for p in peers]))
    ex = read_extras(args.extras)
    if ex.get("genreg"):
        rows.append(("insert p99.9 while growing to 1M (harness)",
                     [f"{ex[p]['p999'] / ex['genreg']['p999']:.2f}" if ex.get(p, {}).get("p999") else "" for p in peers]))
        rows.append(("memory per entry at 1M (harness)",
                     [f"{ex[p]['bytes'] / ex['genreg']['bytes']:.2f}" if ex.get(p, {}).get("bytes") else "" for p in peers]))
    print("\n### genreg against each peer, every target (> 1: genreg ahead by that factor; < 1: behind)\n")
    print("| target | " + " | ".join(short[p] for p in peers) + " |")
    print("| --- |" + " --- |" * len(peers))
    for label, vals in rows:
        print(f"| {label} | " + " | ".join(vals) + " |")


def harness_modes(cells):
    """The harness's lookup modes side by side: genreg's Mops/s and genreg / each peer, per cell
    (workload·mode, names, dist, threads) of the workloads that run in every mode."""
    keys = [k for k in cells if k[0] in MODE_WORKLOADS]
    if not keys:
        return
    peers = [p for p in PEER_ORDER if p != "genreg"]
    print("\n### Lookup modes in the harness (genreg's Mops/s; then genreg's throughput / the peer's, > 1: genreg ahead)\n")
    print("handle = through each peer's handle re-pinned every 64 operations, borrowed (per call for peers "
          "without one); read = each lookup per call, borrowed (genreg `Registry::read`; "
          "Mutex<HashMap<Weak>> must upgrade, a clone); get = each lookup per call, an owned `Arc` clone "
          "(genreg `Registry::get`). Per-call modes hold no handle (their writes are per call too).\n")
    print("| cell | names | dist | threads | genreg | " + " | ".join(p.split(" ")[0] for p in peers) + " |")
    print("| --- | --- | --- | --- | --- |" + " --- |" * len(peers))
    order = lambda k: (MODE_WORKLOADS.index(k[0]), int(k[2]), k[3], int(k[4]), MODES.index(k[1]))
    for k in sorted(keys, key=order):
        wl, mode, n, d, t = k
        c = cells[k]
        g = c.get("genreg")
        vals = [f"{g / c[p]:.2f}" if g and c.get(p) else "" for p in peers]
        gs = f"{g:.2f}" if g else ""
        print(f"| {wl}·{mode} | {n} | {d} | {t} | {gs} | " + " | ".join(vals) + " |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--criterion", default="target/criterion")
    ap.add_argument("--csv", default=None)
    ap.add_argument("--extras", default=None, help="the markdown of latency/memory from the throughput run")
    args = ap.parse_args()
    groups = load_criterion(args.criterion)
    if not groups:
        sys.exit(f"no criterion results under {args.criterion}: run `cargo bench -p genreg-bench --bench registry`")

    print("### Targets (ratios from one run; time ratios: genreg's time / the peer's)\n")
    print("| target | goal | measured | verdict |")
    print("| --- | --- | --- | --- |")
    rows = [
        ("lookup hit, 1k names, 16 B: genreg / papaya (both with a reused guard)",
         "lookup_hit/1024/16B", "genreg", "papaya", 0.8),
        ("lookup hit, 1k names, 16 B: genreg / inline-key ceiling",
         "lookup_hit/1024/16B", "genreg", "ceiling (unsync, inline keys)", 1.5),
        ("lookup hit, 1k names, per-call `get` (clone): genreg / papaya pin-per-call",
         "lookup_mode/1024/16B", "genreg/get", "papaya/get", 0.8),
        ("lookup hit, 1M names, 16 B: genreg / papaya",
         "lookup_hit/1048576/16B", "genreg", "papaya", 0.7),
        ("lookup hit, 1M names, per-call `get` (clone): genreg / papaya pin-per-call + clone",
         "lookup_mode/1048576/16B", "genreg/get", "papaya/get", 0.7),
        ("lookup miss, 1M names: genreg / papaya",
         "lookup_miss/1048576/16B", "genreg", "papaya", 0.7),
        ("unregister_if_same (succeeds): genreg / papaya `remove_if`",
         "unregister_if_same/1024", "genreg", "papaya", 1.0),
        ("unregister_if_same (succeeds): genreg / scc HashIndex `remove_if_sync`",
         "unregister_if_same/1024", "genreg", "scc-HashIndex", 1.0),
        ("unregister_if_same (succeeds): genreg / scc HashMap `remove_if_sync`",
         "unregister_if_same/1024", "genreg", "scc-HashMap", 1.0),
        ("stale-tag unregister (fails): genreg / papaya",
         "unregister_stale/1024", "genreg", "papaya", 1.0),
        ("register + unregister_if_same cycle: genreg / papaya",
         "cycle/1024", "genreg", "papaya", 1.0),
    ]
    for label, group, a, b, goal in rows:
        m, v = verdict(ratio(groups, group, a, b), goal)
        print(f"| {label} | ≤ {goal} | {m} | {v} |")

    cells = load_harness(args.csv)
    if cells:
        print("\nThroughput targets (genreg's throughput / the best peer's; ≥ 1 means ahead of every peer):\n")
        print("| workload | mode | names | dist | threads | genreg Mops/s | best peer | genreg / best | verdict |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        order = lambda x: (x[0][0], MODES.index(x[0][1]) if x[0][1] in MODES else 9, int(x[0][2]), x[0][3], int(x[0][4]))
        for (wl, mode, n, d, t), peers in sorted(cells.items(), key=order):
            if wl not in ("registry-98/1/1", "churn-80/10/10") or t not in ("1", "2"):
                continue
            g = peers.get("genreg")
            others = {p: v for p, v in peers.items() if p != "genreg" and not p.startswith("ceiling")}
            if not g or not others:
                continue
            best = max(others, key=others.get)
            r = g / others[best]
            print(f"| {wl} | {mode} | {n} | {d} | {t} | {g:.2f} | {best} | {r:.2f} | {'met' if r >= 1 else '**missed**'} |")

    overview(groups, args)
    harness_modes(cells)

    print("\n### Every criterion group (median; genreg / peer: below 1 = genreg faster)")
    for name in sorted(groups):
        per = None
        if name.startswith("iterate/"):
            per = int(name.split("/")[1])
        print(group_table(name, groups[name], per))


if __name__ == "__main__":
    main()
