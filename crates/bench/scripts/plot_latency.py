#!/usr/bin/env python3
"""Plots relay and echo latency (p50, p99) against offered load from baseline.sh's
relay-rate-*.json files: plot_latency.py RESULTS_DIR OUT.png"""

import glob
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    results, out = sys.argv[1], sys.argv[2]
    runs = []
    for path in glob.glob(os.path.join(results, "relay-rate-*.json")):
        with open(path) as f:
            runs.append(json.load(f))
    runs.sort(key=lambda r: r["offered_rate"])
    if not runs:
        sys.exit(f"no relay-rate-*.json in {results}")
    fig, ax = plt.subplots(figsize=(8, 5))
    for phase, color in (("plain", "tab:blue"), ("echo", "tab:gray")):
        points = [r for r in runs if r.get(phase)]
        x = [r["offered_rate"] for r in points]
        for pct, style in (("p50_us", "-"), ("p99_us", "--")):
            y = [r[phase]["latency"][pct] / 1000.0 for r in points]
            label = f"{'relay (plain)' if phase == 'plain' else 'TLS+HTTP/2 echo'} {pct[:3]}"
            ax.plot(x, y, style, marker="o", color=color, label=label)
    ax.set_xlabel("offered load (msgs/s, 16 senders, 256-byte MSG)")
    ax.set_ylabel("end-to-end latency (ms)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title("commucat bench relay: latency against offered load")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
