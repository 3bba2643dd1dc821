"""Does attention keep quality up on long sentences?  The experiment of issue 4, reproducible.

    python experiments/attention_and_length.py synthetic [--minutes 2]
    ATTNMT_DATA=../shared/data python experiments/attention_and_length.py tatoeba --name tatoeba-30min \
        runs/tatoeba-gru-attention runs/tatoeba-gru-baseline
    ATTNMT_DATA=../shared/data bash experiments/tatoeba_variants.sh 10   # trains the five, then scores them

``synthetic`` trains the no-attention baseline and the four attention variants with one shared
training-time budget each on reversing sequences of 5–60 symbols, then measures exact match per
length bucket on 1,000 new sequences.  ``tatoeba`` scores trained model directories (beam 5) on the
Tatoeba test split and on its long version (``long:tatoeba:test``), per source-length bucket.
Each writes a Markdown table and a picture into docs/lab/.
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from attnmt.config import config_from_dict
from attnmt.corpora import group_references, load_pairs
from attnmt.data import TranslationDataset
from attnmt.files import atomic_write_text
from attnmt.metrics import corpus_scores, scores_by_length
from attnmt.modeldir import load_model
from attnmt.plotting import plot_bleu_by_length, save_figure
from attnmt.synthetic import reversal_pairs
from attnmt.training import mean_loss, train

DOCS = Path(__file__).resolve().parent.parent / "docs" / "experiments"
VARIANTS = ("none", "dot", "general", "additive", "scaled_dot")
BUCKETS = ((5, 10), (11, 20), (21, 30), (31, 40), (41, 50), (51, 60))


def synthetic(minutes: float) -> None:
    train_pairs, test = reversal_pairs(50_000, seed=0, max_len=60), reversal_pairs(1_000, seed=1, max_len=60)
    rows, curves = [], {}
    for attention in VARIANTS:
        config = config_from_dict(
            {
                "model": {"attention": attention, "embed_size": 32, "hidden_size": 128, "dropout": 0.0},
                "train": {
                    "epochs": None,
                    "max_minutes": minutes,
                    "batch_tokens": 3000,
                    "lr": 0.003,
                    "seed": 0,
                },
            }
        )
        started = time.perf_counter()
        model = train(config, pairs=train_pairs, progress=False)
        outputs = model.translate([src for src, _ in test], batch_size=100)
        correct = [out.text == ref for out, (_, ref) in zip(outputs, test, strict=True)]
        by_bucket = []
        for low, high in BUCKETS:
            hits = [c for c, (src, _) in zip(correct, test, strict=True) if low <= len(src.split()) <= high]
            by_bucket.append(100 * sum(hits) / len(hits))
        rows.append((attention, 100 * sum(correct) / len(correct), by_bucket))
        curves[attention] = by_bucket
        print(
            f"{attention}: {rows[-1][1]:.1f}% exact, {time.perf_counter() - started:.0f} s", file=sys.stderr
        )
    header = "| attention | exact match | " + " | ".join(f"{lo}–{hi}" for lo, hi in BUCKETS) + " |"
    lines = [
        f"Reversal of 5–60 symbols: exact match (%) on 1,000 new sequences, by length; {minutes:g} min of "
        f"training each on {torch.get_num_threads()} CPU threads (`python experiments/attention_and_length.py "
        f"synthetic --minutes {minutes:g}`).",
        "",
        header,
        "|" + "---|" * (len(BUCKETS) + 2),
        *(f"| {a} | {total:.1f} | " + " | ".join(f"{x:.1f}" for x in b) + " |" for a, total, b in rows),
    ]
    DOCS.mkdir(parents=True, exist_ok=True)
    atomic_write_text(DOCS / "synthetic-by-length.md", "\n".join(lines) + "\n")
    save_figure(_exact_match_figure(curves), DOCS / "synthetic-by-length.png")
    print("\n".join(lines))


def _exact_match_figure(curves: dict[str, list[float]]):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.0), layout="constrained")
    ax = fig.subplots()
    for name, values in curves.items():
        ax.plot(range(len(BUCKETS)), values, marker="o", label=name)
    ax.set_xticks(range(len(BUCKETS)), [f"{lo}–{hi}" for lo, hi in BUCKETS])
    ax.set(xlabel="sequence length (symbols)", ylabel="exact match (%)", title="Reversing sequences")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def tatoeba(model_dirs: list[Path], beam: int, name: str) -> None:
    results, lines = {}, []
    translators = {model_dir: load_model(model_dir) for model_dir in model_dirs}  # each loaded once
    for spec in ("tatoeba:test", "long:tatoeba:test"):
        pairs = load_pairs(spec)
        sources, references = group_references(pairs)
        lines += [
            f"### {spec}",
            "",
            "| model | sentences | BLEU | chrF | perplexity | BLEU by source length (words) |",
            "|---|---|---|---|---|---|",
        ]
        for model_dir, translator in translators.items():
            hypotheses = [t.text for t in translator.translate(sources, beam_size=beam)]
            scores = corpus_scores(hypotheses, references)
            buckets = scores_by_length(sources, hypotheses, references)
            results[f"{model_dir.name} ({spec})"] = buckets
            t = translator
            dataset = TranslationDataset(pairs, t.src_vocab, t.tgt_vocab, src_tokenizer=t.src_tokenizer,
                                         tgt_tokenizer=t.tgt_tokenizer)  # fmt: skip
            perplexity = math.exp(mean_loss(t.model, dataset))
            detail = ", ".join(f"{b.label}: {b.bleu:.1f} ± {b.bleu_ci:.1f} ({b.sentences})" for b in buckets)
            lines.append(
                f"| {model_dir.name} | {len(sources):,} | {scores.bleu:.2f} | {scores.chrf:.2f} | "
                f"{perplexity:.1f} | {detail} |"
            )
            print(lines[-1], file=sys.stderr)
        lines.append("")
    signature = corpus_scores(["a"], [["a"]]).bleu_signature
    lines.append(
        f"Beam {beam}, sacrebleu {signature}; ± is the 95 % bootstrap interval, (n) the sentences; "
        "perplexity: teacher-forced, per target subword, over every reference."
    )
    DOCS.mkdir(parents=True, exist_ok=True)
    atomic_write_text(DOCS / f"{name}-by-length.md", "\n".join(lines) + "\n")
    atomic_write_text(
        DOCS / f"{name}-by-length.json",
        json.dumps({k: [b.__dict__ for b in v] for k, v in results.items()}, indent=1),
    )
    merged = {}  # one line per model: its short-sentence buckets from the test set, long ones from the long set
    for model_dir in model_dirs:
        short, long = (
            results[f"{model_dir.name} (tatoeba:test)"],
            results[f"{model_dir.name} (long:tatoeba:test)"],
        )
        merged[model_dir.name] = [b for b in short if b.high is not None and b.high <= 10] + [
            b for b in long if b.low > 10
        ]
    plot_bleu_by_length(merged, DOCS / f"{name}-bleu-by-length.png")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    tasks = parser.add_subparsers(dest="task", required=True)
    syn = tasks.add_parser("synthetic")
    syn.add_argument("--minutes", type=float, default=2.0, help="training budget per model")
    tat = tasks.add_parser("tatoeba")
    tat.add_argument("model_dirs", type=Path, nargs="+")
    tat.add_argument("--beam", type=int, default=5)
    tat.add_argument("--name", default="tatoeba", help="docs/lab/NAME-by-length.md, .json, .png")
    args = parser.parse_args()
    if args.task == "synthetic":
        synthetic(args.minutes)
    else:
        tatoeba(args.model_dirs, args.beam, args.name)


if __name__ == "__main__":
    main()
