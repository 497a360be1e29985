#!/usr/bin/env python3
"""Plots relay and echo latency (p50, p99) and delivered rate against offered load from
baseline.sh's relay-rate-*.json files:

  python3 -m pip install matplotlib    # once
  plot_latency.py RESULTS_DIR OUT.png

Every offered message is in the percentiles: one that was lost or never sent counts as
arriving at the end of the run (see docs/BENCHMARKS.md), so a saturated point shows its queue
and its losses instead of hiding them."""

import glob
import json
import os
import sys

try:
    import matplotlib
except ImportError:
    sys.exit("matplotlib is missing: python3 -m pip install matplotlib")

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PHASES = (("plain", "tab:blue", "relay (plain)"), ("echo", "tab:gray", "TLS+HTTP/2 echo"))


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    results, out = sys.argv[1], sys.argv[2]
    runs = []
    for path in glob.glob(os.path.join(results, "relay-rate-*.json")):
        with open(path) as f:
            runs.append(json.load(f))
    runs.sort(key=lambda r: r["offered_rate"])
    if not runs:
        sys.exit(f"no relay-rate-*.json in {results}")
    first = runs[0]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 8), sharex=True)
    for phase, color, label in PHASES:
        points = [r for r in runs if r.get(phase)]
        x = [r["offered_rate"] for r in points]
        for pct, style in (("p50_us", "-"), ("p99_us", "--")):
            y = [r[phase]["latency"][pct] / 1000.0 for r in points]
            top.plot(x, y, style, marker="o", color=color, label=f"{label} {pct[:3]}")
        delivered = [r[phase]["msgs_per_s"] for r in points]
        bottom.plot(x, delivered, "-", marker="o", color=color, label=f"{label} delivered/s")
        undelivered = [
            100.0 * (r[phase]["lost"] + r[phase]["unsent"]) / max(r[phase]["scheduled"], 1)
            for r in points
        ]
        for xi, yi, li in zip(x, delivered, undelivered):
            if li >= 0.05:
                bottom.annotate(f"{li:.0f} % undelivered", (xi, yi), textcoords="offset points",
                                xytext=(4, -12 if phase == "plain" else 6), fontsize=8,
                                color=color)
    top.set_ylabel("end-to-end latency (ms, log)")
    top.set_yscale("log")
    top.grid(True, which="both", alpha=0.3)
    top.legend(fontsize=8)
    top.set_title(
        f"commucat bench relay: {first['connections']} senders, {first['size']}-byte MSG, "
        f"{first['duration_s']} s per point, open loop"
    )
    x = [r["offered_rate"] for r in runs]
    bottom.plot(x, x, ":", color="black", label="offered")
    bottom.set_xlabel("offered load (msgs/s)")
    bottom.set_ylabel("delivered msgs/s (sending phase)")
    bottom.grid(True, alpha=0.3)
    bottom.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
