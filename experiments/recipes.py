"""Issue 15: which recipe trains the best Tatoeba GRU in a fixed CPU budget — one change at a time.

Every run starts from the matched race recipe of ``bench/compare.py`` (joint 8k BPE, GRU 256/256 with
additive attention, 2,000-token batches, Adam 1e-3, no label smoothing, seed 1), applies its overrides,
trains for ``--minutes`` of training time or for ``--updates`` updates, then translates ``tatoeba:dev``
and ``long:tatoeba:dev`` with beam 5.  Recipes are compared on the dev splits; the test splits are for
the winners only.

    ATTNMT_DATA=../shared/data python experiments/recipes.py --minutes 4 \\
        base ls=train.label_smoothing=0.1 feed=model.input_feeding=true ...

``--base CONFIG`` starts every variant from a config file instead (a budget config of ``configs/``; its
results go to ``recipes-<config>-<budget>``).  A variant is NAME=KEY=VALUE[,KEY=VALUE...]; ``base`` is the
recipe unchanged.  Each finished run adds a
line to ``docs/lab/recipes-<budget>.jsonl`` (kept: a rerun skips what is done) and the table
beside it is written anew, with each run's training seconds per update.  A minutes budget needs the CPU
to itself; an updates budget gives the same model on a shared CPU (``--threads 1`` beside other work),
and the per-update times, measured on a quiet CPU, say what a time budget would allow.
"""

import argparse
import json
import platform
from pathlib import Path

import torch
import yaml

from attnmt.config import config_from_dict
from attnmt.corpora import group_references, load_pairs
from attnmt.metrics import corpus_scores
from attnmt.modeldir import load_model
from attnmt.training import train
from attnmt.translator import DecodeOptions

BASE = {
    "data": {"train": "tatoeba:train", "tokenizer": "bpe", "vocab_size": 8000, "joint_vocab": True},
    "model": {"attention": "additive", "embed_size": 256, "hidden_size": 256, "layers": 1, "dropout": 0.1},
    "train": {
        "epochs": None, "batch_tokens": 2000, "lr": 1e-3, "schedule": "constant", "label_smoothing": 0.0,
        "clip_norm": 1.0, "validate_every": 1_000_000, "keep_checkpoints": 1, "seed": 1, "device": "cpu",
    },
}  # fmt: skip
DEV = ("tatoeba:dev", "long:tatoeba:dev")


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, _, overrides = text.partition("=")
    return name, [o for o in overrides.split(",") if o]


def run(
    base: dict, name: str, overrides: list[str], budget: list[str], runs: Path, splits: tuple[str, ...]
) -> dict:
    """Train one variant of ``base`` for ``budget`` (``train.max_minutes=…`` or ``train.max_steps=…``
    overrides; a stopped run resumes), then score it with beam 5."""
    fixed = ["train.validate_every=1000000", "train.device=cpu"]  # the runs only validate at the end
    config = config_from_dict(base, [*fixed, *overrides, *budget])
    model_dir = runs / name
    resume = (model_dir / "checkpoints").is_dir()
    train(config, model_dir=model_dir, resume=resume, progress=False)
    log = [json.loads(line) for line in (model_dir / "train.jsonl").read_text().splitlines()]
    translator = load_model(model_dir)
    row = {
        "name": name,
        "overrides": overrides,
        "budget": budget[0],
        "updates": log[-1]["step"],
        "seconds_per_update": round(log[-1]["seconds"] / log[-1]["step"], 4),
        "threads": torch.get_num_threads(),
        "epochs": log[-1]["epoch"],
        "precision": log[-1]["precision"],
    }
    for spec in splits:
        sources, references = group_references(load_pairs(spec))
        hypotheses = [t.text for t in translator.translate(sources, DecodeOptions(beam_size=5))]
        scores = corpus_scores(hypotheses, references)
        row[spec] = round(scores.bleu, 2)
    return row


def table(rows: list[dict], splits: tuple[str, ...]) -> str:
    base = next((r for r in rows if r["name"] == "base"), None)
    lines = [
        f"| recipe | overrides | CPU (torch capability), precision | updates | s/update | "
        f"{' | '.join(f'{s} BLEU (beam 5)' for s in splits)} |",
        "|---|---|---|---|---|" + "---|" * len(splits),
    ]
    for r in rows:
        cells = []
        for s in splits:
            delta = f" ({r[s] - base[s]:+.2f})" if base and r is not base and s in base else ""
            cells.append(f"{r[s]:.2f}{delta}")
        lines.append(
            f"| {r['name']} | `{', '.join(r['overrides']) or '—'}` | {r.get('cpu', '?')}, {r.get('precision', '?')} "
            f"| {r['updates']:,} | {r.get('seconds_per_update', '')} | {' | '.join(cells)} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("variants", nargs="+", help="NAME=KEY=VALUE[,KEY=VALUE...], or base")
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument("--minutes", type=float, help="training minutes per run")
    budget.add_argument("--updates", type=int, help="updates per run")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--base", type=Path, help="config file the variants start from (default: BASE)")
    parser.add_argument("--runs", type=Path, default=Path("runs/recipes"))
    parser.add_argument("--splits", nargs="+", default=list(DEV))
    parser.add_argument("--out", type=Path, default=Path("docs/lab"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.minutes:
        tag, budget = f"{args.minutes:g}min", [f"train.max_minutes={args.minutes}", "train.max_steps=null"]
    else:
        tag, budget = f"{args.updates}upd", [f"train.max_steps={args.updates}", "train.max_minutes=null"]
    tag = f"recipes-{args.base.stem}-{tag}" if args.base else f"recipes-{tag}"
    base = yaml.safe_load(args.base.read_text(encoding="utf-8")) if args.base else BASE
    results = args.out / f"{tag}.jsonl"
    done = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    splits = tuple(args.splits)
    for text in args.variants:
        name, overrides = parse_variant(text)
        if any(r["name"] == name for r in done):
            continue
        row = run(base, name, overrides, budget, args.runs / tag, splits)
        row["cpu"] = (
            f"{platform.processor() or platform.machine()}, {torch.backends.cpu.get_cpu_capability()}"
        )
        print(json.dumps(row), flush=True)
        done.append(row)
        with results.open("a") as f:
            f.write(json.dumps(row) + "\n")
    if results.exists():  # every run's row, also those a run beside this one added meanwhile
        done = [json.loads(line) for line in results.read_text().splitlines()]
    (args.out / f"{tag}.md").write_text(table(done, splits))


if __name__ == "__main__":
    main()
