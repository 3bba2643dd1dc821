"""attnmt in the side-by-side benchmark: trained and run through its command line like the others.

attnmt reads the raw Tatoeba text and trains its own joint 8k SentencePiece model, the very model
``bench/prepare.py`` wrote (the harness checks the bytes), so all toolkits see the same pieces.
"""

import itertools
import json
from pathlib import Path

import yaml

import attnmt

NAME = f"attnmt {attnmt.__version__}"
READS = "text"  # attnmt translates plain text and writes plain text
CTRANSLATE2_ARCHS = ("transformer",)  # CTranslate2 has no recurrent layers
BEST = {  # attnmt's best 12-minute recipes (issue 15, docs/lab/recipes.md): the budget configs users get
    arch: Path(__file__).parents[2] / "configs" / f"tatoeba-{arch}-12min.yaml"
    for arch in ("gru", "transformer")
}


def best_recipe(arch: str) -> dict:
    """The budget config of ``arch`` as a dict."""
    return yaml.safe_load(BEST[arch].read_text(encoding="utf-8"))


def write_config(arch: str, data: Path, run: Path, steps: int | None, s: dict) -> Path:
    """The config for ``steps`` updates (or, with ``steps`` None, ``s["minutes"]`` of training): the
    matched settings ``s``, or with ``s["recipe"] == "best"`` the budget config (``BEST``)."""
    if s.get("recipe") == "best":
        config = best_recipe(arch)
        config["data"] |= {"dev": None, "test": None}
        config["train"] |= {
            "epochs": None, "max_steps": steps, "max_minutes": None if steps else s["minutes"],
            "validate_every": s["report_every"], "keep_checkpoints": 1, "device": "cpu",
        }  # fmt: skip
        return _write(config, run)
    model = (
        {"architecture": "gru", "attention": "additive", "embed_size": s["embed"], "hidden_size": s["hidden"]}
        if arch == "gru"
        else {
            "architecture": "transformer",
            "hidden_size": s["hidden"],
            "heads": s["heads"],
            "ff_size": s["ff"],
        }
    )
    config = {
        "data": {"train": "tatoeba:train", "tokenizer": "bpe", "vocab_size": 8000, "joint_vocab": True},
        "model": model | {"layers": s["layers"], "dropout": s["dropout"]},
        "train": {
            "epochs": None,
            "max_steps": steps,
            "max_minutes": None if steps else s["minutes"],
            "batch_tokens": s["batch_tokens"],
            "lr": s["lr"],
            "schedule": "inverse_sqrt" if s["warmup"] else "constant",
            "warmup_steps": max(1, s["warmup"]),
            "label_smoothing": s["label_smoothing"],
            "clip_norm": s["clip_norm"],
            "validate_every": s["report_every"],
            "keep_checkpoints": 1,
            "seed": s["seed"],
            "device": "cpu",
            "precision": "auto",  # as a user runs it: bf16 where the CPU trains faster in it (OpenNMT-py: fp32)
        },
    }
    return _write(config, run)


def _write(config: dict, run: Path) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    path = run / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def train_command(venv: Path, config: Path) -> list[str]:
    return [str(venv / "bin" / "attnmt"), "train", str(config), "--model-dir", str(config.parent / "model")]


def parse_train_log(run: Path) -> list[dict]:
    """One report per logged checkpoint: training seconds so far, and source and target tokens per
    second of training time since the previous one."""
    records = [json.loads(line) for line in (run / "model" / "train.jsonl").read_text().splitlines()]
    reports = []
    for before, after in itertools.pairwise(records):
        seconds = after["seconds"] - before["seconds"]
        reports.append(
            {
                "step": after["step"],
                "seconds": after["seconds"],
                "src_tok_s": (after["src_tokens"] - before["src_tokens"]) / seconds,
                "tgt_tok_s": (after["tgt_tokens"] - before["tgt_tokens"]) / seconds,
            }
        )
    return reports


def final_model(run: Path) -> Path:
    return run / "model"


def translate_command(
    venv: Path, run: Path, beam: int, src: Path, out: Path, batch: int = 64, alpha: float = 1.0
) -> list[str]:
    """Reads sentences on stdin, writes translations on stdout (the harness connects src and out)."""
    return [
        str(venv / "bin" / "attnmt"), "translate", str(final_model(run)),
        "--beam", str(beam), "--alpha", str(alpha), "--batch-size", str(batch), "--device", "cpu",
    ]  # fmt: skip


def ctranslate2_model(run: Path, quantization: str) -> Path:
    return run / f"ctranslate2-{quantization}"


def ctranslate2_export_command(venv: Path, run: Path, quantization: str) -> list[str]:
    """``attnmt export --to ctranslate2`` of the trained model (into a new directory)."""
    return [
        str(venv / "bin" / "attnmt"), "export", str(final_model(run)), "--to", "ctranslate2",
        "-o", str(ctranslate2_model(run, quantization)), "--quantization", quantization,
    ]  # fmt: skip


def ctranslate2_translate_command(
    venv: Path, run: Path, quantization: str, beam: int, src: Path, out: Path, batch: int = 64
) -> list[str]:
    """``attnmt translate`` of the export: the same command, the same stdin and stdout, through
    CTranslate2 (attnmt's length bound and GNMT penalty kept, see attnmt/ctranslate2_model.py)."""
    command = translate_command(venv, run, beam, src, out, batch)
    command[command.index(str(final_model(run)))] = str(ctranslate2_model(run, quantization))
    return command
