"""Pictures: attention weights (and their text table) and training curves.  Takes arrays, labels and
logs; never imports a model."""

import io
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from attnmt.errors import AttnmtError
from attnmt.files import atomic_write_bytes


def attention_table(weights: np.ndarray, src_tokens: list[str], tgt_tokens: list[str]) -> str:
    """The (target × source) weights as a text table, one row per target token, two decimals."""
    width = max([4, *(len(t) for t in src_tokens)])
    label = max([0, *(len(t) for t in tgt_tokens)])
    lines = [" " * label + " " + " ".join(t.rjust(width) for t in src_tokens)]
    for token, row in zip(tgt_tokens, weights, strict=True):
        lines.append(token.ljust(label) + " " + " ".join(f"{w:.2f}".rjust(width) for w in row))
    return "\n".join(lines)


def plot_attention(
    weights: np.ndarray, src_tokens: list[str], tgt_tokens: list[str], path: Path | None = None
) -> Figure:
    """Heatmap of (target × source) weights with tokens as labels, written to ``path`` if given (the
    format follows its suffix: .png, .svg, .pdf).  Returns the figure; notebooks show it inline."""
    weights = np.asarray(weights, dtype=float)
    rows, cols = weights.shape
    cell = 0.42  # inches per token: labels stay readable for 40+ token sentences
    fig = Figure(figsize=(max(4.0, 1.5 + cell * cols), max(3.0, 1.2 + cell * rows)), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(cols), src_tokens, rotation=60, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(rows), tgt_tokens)
    if rows * cols <= 200:  # small enough to print each weight in its cell
        for (i, j), w in np.ndenumerate(weights):
            ax.text(
                j, i, f"{w:.2f}", ha="center", va="center", fontsize=8, color="black" if w > 0.6 else "white"
            )
    ax.set_xlabel("source")
    ax.set_ylabel("target")
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label="attention weight")
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_curves(logs: dict[str, list[dict]], path: Path | None = None) -> Figure:
    """Dev loss and dev BLEU against training minutes, one line per run: ``logs`` maps a run's name to
    its validation records (``train.jsonl``: ``minutes``, ``dev_loss``, ``bleu``)."""
    fig = Figure(figsize=(9.0, 3.6), layout="constrained")
    loss_ax, bleu_ax = fig.subplots(1, 2)
    for name, records in logs.items():
        records = [r for r in records if "dev_loss" in r]
        minutes = [r["minutes"] for r in records]
        loss_ax.plot(minutes, [r["dev_loss"] for r in records], marker="o", label=name)
        bleu_ax.plot(minutes, [r["bleu"] for r in records], marker="o", label=name)
    loss_ax.set(xlabel="training minutes", ylabel="dev loss (per target token)")
    bleu_ax.set(xlabel="training minutes", ylabel="dev BLEU")
    for ax in (loss_ax, bleu_ax):
        ax.grid(alpha=0.3)
    bleu_ax.legend()
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_bleu_by_length(results: dict[str, list], path: Path | None = None) -> Figure:
    """BLEU against source length, one line per model, with 95 % bootstrap intervals: ``results`` maps a
    model's name to its :class:`attnmt.metrics.BucketScores` (Bahdanau et al. 2015, fig. 2)."""
    labels = sorted({b.label: b.low for r in results.values() for b in r}.items(), key=lambda x: x[1])
    position = {label: i for i, (label, _) in enumerate(labels)}
    fig = Figure(figsize=(7.0, 4.0), layout="constrained")
    ax = fig.subplots()
    for name, buckets in results.items():
        x = [position[b.label] for b in buckets]
        ax.errorbar(
            x, [b.bleu for b in buckets], yerr=[b.bleu_ci for b in buckets], marker="o", capsize=3, label=name
        )
    ax.set_xticks(range(len(labels)), [label for label, _ in labels])
    ax.set(xlabel="source sentence length (words)", ylabel="BLEU")
    ax.grid(alpha=0.3)
    ax.legend()
    if path is not None:
        save_figure(fig, path)
    return fig


def save_figure(fig: Figure, path: Path) -> None:
    """Write ``fig`` atomically in the format ``path``'s suffix names (.png, .svg, .pdf)."""
    path = Path(path)
    formats = ("png", "svg", "pdf")
    if path.suffix.lower().lstrip(".") not in formats:
        raise AttnmtError(f"{path}: unsupported picture format; use {', '.join(formats)}")
    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.lower().lstrip("."), dpi=120)
    atomic_write_bytes(path, buffer.getvalue())
