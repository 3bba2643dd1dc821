"""OpenNMT-py 3.5.1 as a benchmark peer: training configs matched to attnmt's, commands, log parsing.

Runs in attnmt's venv; OpenNMT itself only ever runs as a subprocess from its own venv (it pins
torch<2.3 in its metadata, hence ``--no-deps`` and its other requirements listed one by one).

Data: the pre-encoded pieces are read as words (no transforms).  ``write_config`` puts into the run
directory a copy of the vocabulary in OpenNMT's format (one token per line; OpenNMT adds ``<unk>``,
``<blank>``, ``<s>``, ``</s>`` itself, so ``<unk>`` is left out of the copy: 8,003 entries) and a copy of
the training pairs shuffled once with the seed.  The shuffle matters: OpenNMT reads its corpus in file
order, and its batcher silently drops a training example whose source string is already in the batch
being filled (``DynamicDatasetIter.batch_iter``).  Tatoeba repeats sources (41,844 of 135,626 pairs
share an English side with another pair); in file order, length-sorted, 19 % of the pairs are dropped
every epoch, shuffled 2.4 % (batch_tokens 2000) to 5.7 % (6000).

Batching by tokens.  attnmt: a batch of n pairs costs n × (longest source + longest target), counting
the source's ``<eos>`` and the target's ``<sos>``/``<eos>``; it sorts pools of ~50 batches.  OpenNMT
(``batch_type: tokens``): n × max over the batch of max(source, target + 2) — source without specials,
target with ``<s>`` and ``</s>``, no rounding to multiples of 8 (``batch_size_multiple`` 1, fp32) — and a
batch is closed when the next pair would push it past ``batch_size``.  Its bucket (``bucket_size``, set
here to the corpus size: one bucket = one epoch) is sorted by (source, target) length, cut into batches,
and the batches shuffled; so padding is small (1–3 % of the padded size, against 7–8 % for attnmt) and
every epoch has the same batches in a new order.  Counting the larger side only, a unit of OpenNMT's
``batch_size`` buys about twice the pieces of a unit of attnmt's ``batch_tokens``: ``write_config`` runs
both batchers over the training pairs and picks the ``batch_size`` whose batches hold, on average, as many real source + target
pieces (no specials, no padding) as attnmt's with ``batch_tokens`` (2000 → 1,050: 1,589 pieces;
6000 → 3,183: 4,726 pieces, seed 1).  It takes 3–7 s.
"""

import json
import math
import random
import re
from datetime import datetime
from pathlib import Path

NAME = "OpenNMT-py 3.5.1"
READS = "pieces"  # reads and writes space-separated pieces
CTRANSLATE2_ARCHS = ("transformer",)  # CTranslate2 converts OpenNMT-py's Transformers, not its RNNs
INSTALL: list[list[str]] = [
    ["--no-deps", "OpenNMT-py==3.5.1"],
    [
        "torch==2.13.0", "ctranslate2>=4,<5", "tensorboard>=2.3", "flask", "waitress",
        "fasttext-wheel", "spacy", "pyonmttok>=1.37,<2", "rapidfuzz", "pyahocorasick", "configargparse",
        "pyyaml", "sacrebleu", "six", "sentencepiece",
    ],
]  # fmt: skip

BEST = {  # OpenNMT-py's own usual recipe (issue 15), for the best-recipe race, over the matched options
    "gru": {
        "batch_type": "sents", "batch_size": 64, "label_smoothing": 0.1, "input_feed": 1, "bridge": True,
        "param_init": 0.1,
        "share_decoder_embeddings": True,  # adopted by attnmt (model.tie_embeddings), so given here too
    },
    # Its documented Transformer recipe (6 layers of 512, 4,096-token batches × 8 accumulated, noam at
    # learning_rate 2 warming up over 8,000 of 500,000 updates, so peaking near 1e-3) is sized for GPUs
    # and days: in 12 CPU minutes it would not leave warm-up.  Scaled to the budget as a competent user
    # would: the matched model and batches, its optimizer options, and warm-up over the first tenth of
    # the updates the budget gives (WARMUP_SHARE), peaking at the race's learning rate.
    "transformer": {"adam_beta2": 0.998, "max_grad_norm": 0.0, "attention_dropout": [0.1]},
}  # fmt: skip
WARMUP_SHARE = {"transformer": 0.1}  # the best recipe's warm-up, as a share of the budget's updates
_REPORT = re.compile(
    r"^\[(\S+ \S+) INFO\] Step\s+(\d+)(?:/\s*\d+)?;.*?;\s*([\d.]+)/\s*([\d.]+) tok/s;", re.MULTILINE
)


def _read_pairs(data: Path) -> tuple[list[str], list[str]]:
    src = (data / "train.en").read_text(encoding="utf-8").splitlines()
    tgt = (data / "train.fr").read_text(encoding="utf-8").splitlines()
    if len(src) != len(tgt):
        raise ValueError(f"{data}: train.en has {len(src)} lines, train.fr {len(tgt)}")
    return src, tgt


def _attnmt_pieces_per_batch(lengths: list[tuple[int, int]], batch_tokens: int, seed: int) -> float:
    """Mean real source + target pieces per batch of attnmt's own batcher (ids: src + <eos>,
    <sos> + tgt + <eos>)."""
    from attnmt.data import bucketed_batches

    ids = [(s + 1, t + 2) for s, t in lengths]
    batches = bucketed_batches(ids, batch_tokens, shuffle=True, seed=seed)
    return sum(sum(lengths[i]) for batch in batches for i in batch) / len(batches)


def _onmt_pieces_per_batch(sources: list[str], lengths: list[tuple[int, int]], batch_size: int) -> float:
    """The same for OpenNMT 3.5.1's ``batch_iter`` over one bucket holding the whole corpus, its
    duplicate-source dropping and overflow handling included."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i][0], lengths[i][1] + 2))
    cost = [max(s, t + 2) for s, t in lengths]
    batches: list[list[int]] = []
    batch: list[int] = []
    longest, seen = 0, set()
    for i in order:
        if sources[i] in seen:
            continue
        seen.add(sources[i])
        batch.append(i)
        longest = max(longest, cost[i])
        if len(batch) * longest >= batch_size:
            if len(batch) * longest == batch_size:
                batches.append(batch)
                batch, longest = [], 0
                seen = set()
            elif len(batch) > 1:
                batches.append(batch[:-1])
                batch, longest, seen = batch[-1:], cost[i], set()
    if batch:
        batches.append(batch)
    return sum(sum(lengths[i]) for batch in batches for i in batch) / len(batches)


def _matched_batch_size(
    sources: list[str], lengths: list[tuple[int, int]], batch_tokens: int, seed: int
) -> int:
    """OpenNMT ``batch_size`` (tokens) whose batches hold as many real pieces as attnmt's."""
    target = _attnmt_pieces_per_batch(lengths, batch_tokens, seed)
    size = max(1, batch_tokens // 2)
    for _ in range(3):  # pieces per batch grow almost linearly with batch_size
        size = max(1, round(size * target / _onmt_pieces_per_batch(sources, lengths, size)))
    return size


def _model_options(arch: str, s: dict) -> dict:
    if arch == "gru":
        return {
            "encoder_type": "brnn", "decoder_type": "rnn", "rnn_type": "GRU",
            "layers": s["layers"], "hidden_size": s["hidden"], "word_vec_size": s["embed"],
            "global_attention": "mlp", "input_feed": 0, "bridge": False,
            "param_init": 0.1,  # OpenNMT's RNN default (uniform ±0.1); it has no "PyTorch default" choice
        }  # fmt: skip
    if arch == "transformer":
        return {
            "encoder_type": "transformer", "decoder_type": "transformer",
            "layers": s["layers"], "hidden_size": s["hidden"], "word_vec_size": s["embed"],
            "heads": s["heads"], "transformer_ff": s["ff"],
            "position_encoding": True, "position_encoding_type": "SinusoidalInterleaved",
            "max_relative_positions": 0,
            "share_embeddings": True, "share_decoder_embeddings": True,
            "add_qkvbias": True, "add_ffnbias": True,  # attnmt's linear layers have biases
            "layer_norm": "standard", "norm_eps": 1e-5,  # torch's LayerNorm default, as attnmt
            "param_init": 0.0, "param_init_glorot": True,
        }  # fmt: skip
    raise ValueError(f"unknown arch {arch!r}; choose gru or transformer")


def write_config(arch: str, data: Path, run: Path, steps: int, s: dict) -> Path:
    """Write the training config for arch 'gru' or 'transformer' into run/ and return its path."""
    run.mkdir(parents=True, exist_ok=True)
    src, tgt = _read_pairs(data)
    order = list(range(len(src)))
    random.Random(s["seed"]).shuffle(order)
    src, tgt = [src[i] for i in order], [tgt[i] for i in order]
    (run / "train.en").write_text("".join(line + "\n" for line in src), encoding="utf-8")
    (run / "train.fr").write_text("".join(line + "\n" for line in tgt), encoding="utf-8")
    pieces = (data / "vocab.txt").read_text(encoding="utf-8").splitlines()
    (run / "vocab.txt").write_text("".join(p + "\n" for p in pieces if p != "<unk>"), encoding="utf-8")
    best = BEST[arch] if s.get("recipe") == "best" else {}
    if best and "max_grad_norm" in s:  # a screen may set its own clipping
        best = best | {"max_grad_norm": s["max_grad_norm"]}
    share = s.get("warmup_share", WARMUP_SHARE.get(arch)) if best else None  # a screen may set its own
    if share is not None:  # 0: no warm-up, so a constant rate (and the step decay), OpenNMT-py's other way
        s = s | {"warmup": max(1, round(share * steps)) if share > 0 else 0}
    lengths = [(len(a.split(" ")), len(b.split(" "))) for a, b in zip(src, tgt, strict=True)]
    batch_size = best.get("batch_size") or _matched_batch_size(src, lengths, s["batch_tokens"], s["seed"])
    if s["warmup"] > 0:
        # noam: lr × hidden^-0.5 × min(step^-0.5, step × warmup^-1.5), steps from 1; this learning_rate
        # makes it attnmt's s["lr"] × min(step / warmup, (warmup / step)^0.5), peaking at s["lr"].
        schedule = {
            "decay_method": "noam", "warmup_steps": s["warmup"],
            "learning_rate": s["lr"] * math.sqrt(s["hidden"] * s["warmup"]),
        }  # fmt: skip
    else:
        schedule = {"decay_method": "none", "learning_rate": s["lr"]}
    if s.get("decay_share"):
        # attnmt's budget schedule (lr falls to 0 over the last share of the updates) in OpenNMT-py's own
        # terms: its step decay, halving the rate 6 times over the same last share (to 1/64 of it)
        schedule |= {
            "start_decay_steps": round(steps * (1 - s["decay_share"])), "learning_rate_decay": 0.5,
            "decay_steps": max(1, round(steps * s["decay_share"] / 6)),
        }  # fmt: skip
        if schedule["decay_method"] == "noam":
            schedule["decay_method"] = "noamwd"  # noam × the step decay
    config = {
        "data": {
            "corpus_1": {
                "path_src": str(run / "train.en"), "path_tgt": str(run / "train.fr"),
                "transforms": [], "weight": 1,
            }
        },
        "src_vocab": str(run / "vocab.txt"), "share_vocab": True, "vocab_size_multiple": 1,
        "src_vocab_size": len(pieces) + 8, "tgt_vocab_size": len(pieces) + 8,
        **_model_options(arch, s),
        "model_dtype": "fp32", "dropout": [s["dropout"]], "attention_dropout": [0.0],
        "optim": "adam", "adam_beta1": 0.9, "adam_beta2": s["adam_beta2"], **schedule,
        "max_grad_norm": s["clip_norm"], "label_smoothing": s["label_smoothing"],
        "batch_type": "tokens", "batch_size": batch_size, "batch_size_multiple": 1,
        "normalization": "tokens", "accum_count": [1],
        "bucket_size": len(src), "num_workers": 0,
        "train_steps": steps, "valid_steps": steps + 1, "save_checkpoint_steps": steps,
        "keep_checkpoint": -1, "save_model": str(run / "model"),
        "seed": s["seed"], "report_every": s["report_every"],
    } | best  # fmt: skip
    path = run / "config.yaml"
    # JSON is YAML: one "key: json" line per option.
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in config.items()), encoding="utf-8")
    return path


def train_command(venv: Path, config: Path) -> list[str]:
    """onmt_train on CPU with the written config.  Its log goes to stderr only (stdout stays empty;
    ``log_file`` would stop receiving lines once the data iterator re-initialises the logger)."""
    return [str(venv / "bin" / "onmt_train"), "-config", str(config)]


def parse_train_log(run: Path) -> list[dict]:
    """One dict per progress report in the training log (``train.stderr``, where the harness puts
    stderr): {"step", "seconds" (the line's timestamp), "src_tok_s", "tgt_tok_s"}, as OpenNMT
    reports them (non-padding tokens per second over the report window): source pieces without
    specials, target pieces + ``</s>``.  The first window includes loading the corpus into the first
    bucket."""
    text = (run / "train.stderr").read_text(encoding="utf-8")
    return [
        {
            "step": int(m[2]),
            "seconds": datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f").timestamp(),
            "src_tok_s": float(m[3]),
            "tgt_tok_s": float(m[4]),
        }
        for m in _REPORT.finditer(text)
    ]


def final_model(run: Path) -> Path:
    """The checkpoint written after the last step (the only one)."""
    return max(run.glob("model_step_*.pt"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))


def translate_command(
    venv: Path, run: Path, beam: int, src: Path, out: Path, batch_sentences: int = 64, alpha: float = 1.0
) -> list[str]:
    """onmt_translate on CPU: greedy (argmax) for beam 1, else beam search ranked like attnmt's (GNMT
    length penalty, α); outputs at most 2 × source + 5 pieces (attnmt: 2 × (source + 1) + 10)."""
    command = [
        "env", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1",  # OpenNMT 3.5.1 checkpoints pickle argparse.Namespace
        str(venv / "bin" / "onmt_translate"), "-model", str(final_model(run)), "-src", str(src), "-output", str(out),
        "-gpu", "-1", "-batch_type", "sents", "-batch_size", str(batch_sentences), "-beam_size", str(beam),
        "-length_penalty", "wu", "-alpha", str(alpha), "-max_length_ratio", "2", "-max_length", "250",
    ]  # fmt: skip
    if beam == 1:
        command += ["-random_sampling_topk", "1"]  # OpenNMT's GreedySearch, argmax
    return command


def ctranslate2_model(run: Path, quantization: str) -> Path:
    return run / f"ctranslate2-{quantization}"


def ctranslate2_export_command(venv: Path, run: Path, quantization: str) -> list[str]:
    """CTranslate2's own converter for OpenNMT-py checkpoints (``ctranslate2_convert.py``), from the peer's
    venv (which installs ctranslate2 with OpenNMT-py)."""
    script = Path(__file__).with_name("ctranslate2_convert.py")
    return [
        str(venv / "bin" / "python"), str(script), str(final_model(run)),
        str(ctranslate2_model(run, quantization)), quantization,
    ]  # fmt: skip


def ctranslate2_translate_command(
    venv: Path, run: Path, quantization: str, beam: int, src: Path, out: Path, batch_sentences: int = 64
) -> list[str]:
    """``ctranslate2.Translator.translate_file`` on CPU (``ctranslate2_translate.py``): batch 64, beam
    ``beam`` (1: greedy), at most 250 pieces as ``translate_command``; CTranslate2 has no GNMT penalty,
    so beam search ranks by its own, log p / length (α = 1), and has no length ratio cap."""
    script = Path(__file__).with_name("ctranslate2_translate.py")
    return [
        str(venv / "bin" / "python"), str(script), str(ctranslate2_model(run, quantization)),
        "--src", str(src), "--output", str(out), "--beam", str(beam), "--batch-size", str(batch_sentences),
    ]  # fmt: skip
