"""BLEU against CPU minutes: the plot a user picks a budget config by (issue 33).

Reads the measured points of docs/lab/budget.jsonl, one JSON object per line: toolkit, architecture,
minutes of training, test set, beam-5 BLEU, the CPU and seed, and where the figure and its command are
written down. Draws one panel per test set, a line per toolkit and architecture; only what is in the
file is drawn.

    python bench/budget_plot.py [docs/lab/budget.jsonl] [-o docs/budget.png]
"""

import argparse
import json
from collections import defaultdict
from pathlib import Path

from matplotlib.figure import Figure

ROOT = Path(__file__).parents[1]
SETS = ("tatoeba:test", "long:tatoeba:test", "multi30k:test_2016_flickr")
STYLE = {"attnmt": "-", "opennmt": "--", "joeynmt": ":"}
NAMES = {"attnmt": "attnmt", "opennmt": "OpenNMT-py, best recipe", "joeynmt": "JoeyNMT, best recipe"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("points", type=Path, nargs="?", default=ROOT / "docs/lab/budget.jsonl")
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "docs/budget.png")
    args = parser.parse_args()
    points = [json.loads(line) for line in args.points.read_text(encoding="utf-8").splitlines() if line]
    sets = [s for s in SETS if any(p["data"] == s for p in points)]
    cpus = sorted({p["cpu"] for p in points})
    figure = Figure(figsize=(4.2 * len(sets), 4.3), layout="constrained")
    for ax, data in zip(figure.subplots(1, len(sets), squeeze=False)[0], sets, strict=True):
        lines = defaultdict(list)
        for p in points:
            if p["data"] == data:
                lines[p["toolkit"], p["architecture"]].append((p["minutes"], p["bleu"]))
        for (toolkit, architecture), xy in sorted(lines.items()):
            minutes, bleu = zip(*sorted(xy), strict=True)
            ax.plot(minutes, bleu, STYLE[toolkit], marker="o" if architecture == "gru" else "s",
                    color="C0" if architecture == "gru" else "C1",
                    markerfacecolor=None if toolkit == "attnmt" else "white",
                    label=f"{NAMES[toolkit]} {architecture.upper() if architecture == 'gru' else 'Transformer'}")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xticks([4, 12, 30, 90], ["4", "12", "30", "90"])
        ax.set_xlim(3, 110)
        ax.set_xlabel("CPU minutes of training (2 cores)")
        ax.set_ylabel("BLEU, beam 5")
        ax.set_title(data)
        ax.grid(alpha=0.3)
    handles, labels = figure.axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=8)
    figure.suptitle(f"Test BLEU against training budget ({'; '.join(cpus)})", fontsize=10)
    figure.savefig(args.output, dpi=110)
    print(f"{args.output}: {len(points)} points")


if __name__ == "__main__":
    main()
