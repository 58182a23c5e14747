"""Draws docs/benchmarks.png from docs/benchmark-results.json (herald-bench all).

usage: python3 benchmarks/plot.py RESULTS.json OUT.png   (needs matplotlib)
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

results = json.load(open(sys.argv[1]))
fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))

ax = axes[0]
traffic = results.get("traffic", [])
if traffic:
    n = [t["services"] for t in traffic]
    for key, label in [
        ("measured_sweep10", "Herald measured (sweep 10 s)"),
        ("computed_sweep5", "Herald computed (sweep 5 s)"),
        ("xoom", "XOOM-style (all every 5 s)"),
    ]:
        ax.plot(n, [t[key]["wire_bytes_per_s"] for t in traffic], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("services")
    ax.set_ylabel("multicast bytes/s on the wire")
    ax.set_title("Steady-state traffic")
    ax.legend(fontsize=8)

ax = axes[1]
joiner = results.get("late_joiner", [])
if joiner:
    for listeners in sorted({j["listeners"] for j in joiner}):
        rows = [j for j in joiner if j["listeners"] == listeners]
        ax.plot([j["services"] for j in rows], [j["worst_ms"] for j in rows], marker="o",
                label=f"{listeners} listener(s) joining at once (slowest)")
    ax.set_xscale("log")
    ax.set_xlabel("services")
    ax.set_ylabel("ms until the whole registry is held")
    ax.set_title("Late joiner")
    ax.legend(fontsize=8)

ax = axes[2]
memory = [m for m in results.get("memory", [])]
if memory:
    ax.plot([m["services"] for m in memory], [m["rss_kib"] / 1024 for m in memory], marker="o")
    ax.set_xlabel("services")
    ax.set_ylabel("directory VmRSS, MiB")
    ax.set_title("Directory memory")

fig.suptitle("Herald benchmarks (" + results.get("machine", "") + ")", fontsize=9)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=100)
