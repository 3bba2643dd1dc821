"""A peer's best recipe screened on ``tatoeba:dev`` at the updates a race gave it (issue 33): what a
competent user of that toolkit would try before racing it.

Each ``--variant`` overrides settings of ``bench/compare.py --best`` for that toolkit and architecture
(``lr``: the peak learning rate; ``warmup_share``: warm-up as a share of the updates, 0 for none;
``max_grad_norm``: OpenNMT-py's gradient clipping, 0 for none, as its recipe), trains
``--updates`` updates on the best race's training data and pieces (under ``--work``, where the race
keeps them), and is scored with beam 5, α 1 on ``tatoeba:dev`` (cased sacreBLEU, all references). One
JSON line per variant is appended to ``--out``; a variant already there is skipped.

    python bench/peer_screen.py opennmt transformer --updates 1350 --work runs/best12 \\
        --variant lr=0.001 --variant lr=0.002 --variant lr=0.001,warmup_share=0 \\
        --variant lr=0.0005 --variant max_grad_norm=1 \\
        --out docs/lab/peer-screen-opennmt-transformer-1350upd.jsonl
"""

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from compare import (
    BEST_ALPHA,
    SETTINGS,
    TOOLKITS,
    _cpu,
    _cpu_flags,
    best_settings,
    decode_pieces,
    train,
    translate,
    venv_of,
)
from prepare import DATA, write_tests

from attnmt.metrics import corpus_scores

DEV = {"dev_scored": DATA.dev}  # unique dev sources and all their references (dev.en holds every pair)
KNOWN = {"lr": float, "warmup_share": float, "max_grad_norm": float}


def variant(text: str) -> dict:
    """``lr=0.002,warmup_share=0`` → {"lr": 0.002, "warmup_share": 0.0}."""
    settings = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        if key not in KNOWN:
            raise argparse.ArgumentTypeError(f"{key}: unknown setting; choose from {', '.join(KNOWN)}")
        settings[key] = KNOWN[key](value)
    return settings


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("toolkit", choices=[name for name in TOOLKITS if name != "attnmt"])
    parser.add_argument("arch", choices=list(SETTINGS))
    parser.add_argument("--updates", type=int, required=True, help="the updates the race gave the peer")
    parser.add_argument("--variant", type=variant, action="append", required=True)
    parser.add_argument("--work", type=Path, default=Path("runs/best12"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    work = args.work.resolve()
    spec, data, race = best_settings(args.arch, work)
    write_tests(data, DEV)
    references = json.loads((data / "dev_scored.refs.json").read_text(encoding="utf-8"))
    done = [json.loads(line) for line in args.out.read_text().splitlines()] if args.out.is_file() else []
    module = TOOLKITS[args.toolkit]
    for overrides in args.variant:
        s = race | {"report_every": 1_000_000} | overrides
        if any(row["settings"] == s and row["updates"] == args.updates for row in done):
            continue
        label = "-".join(f"{k}{v:g}" for k, v in overrides.items())
        run = work / "screen" / args.arch / f"{args.toolkit}-{args.updates}-{label}"
        trained = train(args.toolkit, args.arch, run, data, work, args.updates, s)
        out = run / "dev.out"
        command = module.translate_command(
            venv_of(work, args.toolkit), run, 5, data / "dev_scored.en", out, alpha=BEST_ALPHA
        )
        translate(args.toolkit, command, data / "dev_scored.en", out)
        scores = corpus_scores(decode_pieces(out, data / "spm.model", module.READS), references)
        row = {
            "toolkit": module.NAME, "arch": args.arch, "updates": args.updates, "overrides": overrides,
            "settings": s, "data": spec, "dev_bleu": scores.bleu, "dev_chrf": scores.chrf,
            "train_wall_s": trained["seconds"], "cpu": _cpu(), "cpu_flags": _cpu_flags(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
            "command": " ".join(["python", *sys.argv]),
        }  # fmt: skip
        with args.out.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        done.append(row)
        print(f"{args.toolkit} {args.arch} {overrides}: dev BLEU {scores.bleu:.2f}", flush=True)


if __name__ == "__main__":
    main()
