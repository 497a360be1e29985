#!/usr/bin/env python3
"""Plots a soak run's samples (soak.sh's soak-samples.csv: t_s,rss_bytes,open_fds,delivered):
the server's resident memory and open file descriptors, and the delivery rate between two
samples, against time.

  python3 -m pip install matplotlib    # once
  plot_soak.py SAMPLES.csv OUT.png"""

import csv
import sys

try:
    import matplotlib
except ImportError:
    sys.exit("matplotlib is missing: python3 -m pip install matplotlib")

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    if len(rows) < 2:
        sys.exit(f"fewer than two samples in {sys.argv[1]}")
    minutes = [r["t_s"] / 60.0 for r in rows]
    fig, (mem, fds, rate) = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
    mem.plot(minutes, [r["rss_bytes"] / 2**20 for r in rows], color="tab:blue")
    mem.set_ylabel("server RSS (MiB)")
    mem.set_ylim(bottom=0)
    fds.plot(minutes, [r["open_fds"] for r in rows], color="tab:green")
    fds.set_ylabel("open descriptors")
    fds.set_ylim(bottom=0)
    per_s = [
        (b["delivered"] - a["delivered"]) / max(b["t_s"] - a["t_s"], 1e-9)
        for a, b in zip(rows, rows[1:])
    ]
    rate.plot(minutes[1:], per_s, color="tab:gray")
    rate.set_ylabel("delivered msgs/s")
    rate.set_ylim(bottom=0)
    rate.set_xlabel("minutes into the soak")
    for ax in (mem, fds, rate):
        ax.grid(True, alpha=0.3)
    fig.suptitle("commucat bench soak: server resident memory and descriptors")
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=100)


if __name__ == "__main__":
    main()
