"""BLEU against CPU minutes: the plot a user picks a budget config by (issue 33).

Reads the measured points of docs/lab/budget.jsonl, one JSON object per line: toolkit, architecture,
minutes of training, test set, beam-5 BLEU, the CPU and seed, and where the figure and its command are
written down. Draws one panel per test set, a line per toolkit and architecture; only what is in the
file is drawn; where the file holds more than one CPU, each line names its CPU, each CPU has its own
marker, and the CPU with the most points is drawn solid, the others faded.

    python bench/budget_plot.py [docs/lab/budget.jsonl] [-o docs/budget.png]
"""

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

from matplotlib.figure import Figure

ROOT = Path(__file__).parents[1]
SETS = ("tatoeba:test", "long:tatoeba:test", "multi30k:test_2016_flickr")
STYLE = {"attnmt": "-", "opennmt": "--", "joeynmt": ":"}
MARKERS = ("o", "^", "D", "v")  # one per CPU, the CPU with the most points first
NAMES = {"attnmt": "attnmt", "opennmt": "OpenNMT-py, best recipe", "joeynmt": "JoeyNMT, best recipe"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("points", type=Path, nargs="?", default=ROOT / "docs/lab/budget.jsonl")
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "docs/budget.png")
    args = parser.parse_args()
    points = [json.loads(line) for line in args.points.read_text(encoding="utf-8").splitlines() if line]
    sets = [s for s in SETS if any(p["data"] == s for p in points)]
    cpus = [cpu for cpu, _ in Counter(p["cpu"] for p in points).most_common()]  # most points first
    figure = Figure(figsize=(4.2 * len(sets), 4.3), layout="constrained")
    for ax, data in zip(figure.subplots(1, len(sets), squeeze=False)[0], sets, strict=True):
        lines = defaultdict(list)  # a line per toolkit, architecture and CPU: budgets differ by CPU
        for p in points:
            if p["data"] == data:
                lines[p["toolkit"], p["architecture"], p["cpu"]].append((p["minutes"], p["bleu"]))
        for (toolkit, architecture, cpu), xy in sorted(lines.items()):
            minutes, bleu = zip(*sorted(xy), strict=True)
            label = f"{NAMES[toolkit]} {architecture.upper() if architecture == 'gru' else 'Transformer'}"
            ax.plot(minutes, bleu, STYLE[toolkit], marker=MARKERS[cpus.index(cpu) % len(MARKERS)],
                    color="C0" if architecture == "gru" else "C1", alpha=1.0 if cpu == cpus[0] else 0.5,
                    markerfacecolor=None if toolkit == "attnmt" else "white",
                    label=label if len(cpus) == 1 else f"{label}, {cpu}")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xticks([4, 12, 30, 90], ["4", "12", "30", "90"])
        ax.set_xlim(3, 110)
        ax.set_xlabel("CPU minutes of training (2 cores)")
        ax.set_ylabel("BLEU, beam 5")
        ax.set_title(data)
        ax.grid(alpha=0.3)
    handles, labels = [], []  # each line once, whichever panels it is in
    for ax in figure.axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    figure.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=8)
    figure.suptitle(f"Test BLEU against training budget ({'; '.join(cpus)})", fontsize=10)
    figure.savefig(args.output, dpi=110)
    print(f"{args.output}: {len(points)} points")


if __name__ == "__main__":
    main()
