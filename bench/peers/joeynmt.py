"""JoeyNMT 2.3.0 as a benchmark peer: configs matched to attnmt's, launched through its own venv.

Read against joeynmt 2.3.0's source (config.py, training.py, datasets.py, decoders.py, prediction.py).
Data are the pre-encoded pieces of ``bench/prepare.py``: Joey reads them as words (``level: word``,
``split(" ")``), no lowercasing, normalisation, pretokenizer or subword model, and joins its output
pieces with single spaces.  ``vocab.txt`` is used as is for both sides: Joey's Vocabulary puts
``<unk> <pad> <s> </s>`` first and skips the file's own ``<unk>`` (8,003 entries, ids 0-3 specials).

Model dir: ``run/model``, created by Joey with ``overwrite: True`` (Joey refuses an existing model dir
otherwise, and with it deletes the whole dir first — hence a subdirectory, never ``run`` itself).
The log of a training run is ``run/model/train.log`` (also on stderr); the one checkpoint is
``run/model/{steps}.ckpt`` (plus a ``latest.ckpt`` symlink), written when training ends (also on
SIGINT, not on SIGTERM/SIGKILL).

Left different from attnmt (Joey has no switch for them): the GRU decoder runs a Python loop over
time steps even when teacher-forced; its output layer has no bias and its dropout sits before
tanh(W_c[h; c]) rather than after; weights are Xavier-initialised (embeddings as attnmt's); label
smoothing spreads ε over V - 2 classes (not V); LayerNorm eps 1e-6; one decoding length cap per file;
``min_output_length`` is ignored by ``predict`` (never an empty output: at least one token); and
Joey's random, unsorted token batches hold about twice attnmt's padded positions for the same pieces.
"""

import json
import random
import shutil
from datetime import datetime
from pathlib import Path

import yaml

NAME = "JoeyNMT 2.3.0"
READS = "pieces"  # reads and writes space-separated pieces
# joeynmt 2.3.0's helpers.py imports importlib_metadata without declaring it
INSTALL: list[list[str]] = [["joeynmt==2.3.0", "torch==2.13.0", "importlib-metadata==10.2.0"]]

MODEL_DIR = "model"
BEST = {  # Joey's own documented recipes (issue 33), for the best-recipe race, over the matched options
    # configs/iwslt14_deen_bpe.yaml, its recurrent recipe: input feeding and a bridge to the decoder's
    # first state (its width, dropout and plateau schedule are sized for days on a GPU)
    "gru": {"model": {"decoder": {"input_feeding": True, "init_hidden": "bridge"}}},
    # configs/transformer_iwslt14_deen_sp.yaml trains 6 layers with dropout 0.3 at a constant 3e-4 that
    # its plateau schedule lowers after validations, sized for days on GPUs (not tried at a CPU budget).
    # Its best here is the matched model and label smoothing 0.1, warming up over the first tenth of
    # the updates the budget gives (WARMUP_SHARE), as OpenNMT-py's in bench/peers/opennmt.py.
    "transformer": {},
}
WARMUP_SHARE = {"transformer": 0.1}  # the best recipe's warm-up, as a share of the budget's updates


def _lengths(data: Path) -> tuple[list[int], list[int]]:
    def count(path: Path) -> list[int]:
        return [line.count(" ") + 1 for line in path.read_text(encoding="utf-8").splitlines()]

    return count(data / "train.en"), count(data / "train.fr")


def _joey_batches(src: list[int], tgt: list[int], batch_size: int, seed: int) -> list[list[int]]:
    """joeynmt.datasets.TokenBatchSampler: examples in random order (no sorting, no bucketing), a
    batch closes as soon as rows × max(src + 1, trg + 1) reaches ``batch_size`` (it keeps the row that
    crossed it): one side's padded length with EOS, not source + target."""
    order = list(range(len(src)))
    random.Random(seed).shuffle(order)
    batches, batch, longest = [], [], 0
    for i in order:
        batch.append(i)
        longest = max(longest, src[i] + 1, tgt[i] + 1)
        if longest * len(batch) >= batch_size:
            batches.append(batch)
            batch, longest = [], 0
    return [*batches, batch] if batch else batches


def _batch_size(data: Path, batch_tokens: int, seed: int) -> tuple[int, str]:
    """Joey's token ``batch_size`` whose batches hold, on average over an epoch, as many real pieces
    (source + target, specials and padding excluded) as attnmt's batches of ``batch_tokens``; and a
    note saying so.

    attnmt counts rows × (longest source + longest target) with source ``w… <eos>`` and target
    ``<sos> w… <eos>``, and sorts by length inside pools, so its batches are dense; Joey counts rows ×
    max(src, trg) + 1 over randomly ordered rows, so its batches carry much padding and the ratio
    grows with the batch (Tatoeba: 2,000 → 2,140; 4,000 → 4,765; 6,000 → 7,553; 12,000 → 16,602).
    Both are simulated on train.{en,fr}: attnmt with its own ``bucketed_batches``, Joey with a copy of
    its sampler (checked against Joey's own: 1,574 batches of 1,591 pieces at 2,140)."""
    from attnmt.data import bucketed_batches  # the project venv runs this adapter

    src, tgt = _lengths(data)
    real = [s + t for s, t in zip(src, tgt, strict=True)]
    ours = bucketed_batches(
        [(s + 1, t + 2) for s, t in zip(src, tgt, strict=True)], batch_tokens, shuffle=True, seed=seed
    )
    target = sum(real) / len(ours)
    size = batch_tokens
    for _ in range(10):  # fixed point of size ← size × target / pieces(size); pieces grows with size
        joey = _joey_batches(src, tgt, size, seed + 1)
        pieces = sum(real) / len(joey)
        new = max(1, round(size * target / pieces))
        if abs(new - size) <= max(1, size // 200):
            break
        size = new
    joey = _joey_batches(src, tgt, size, seed + 1)
    note = (
        f"batch_size {size} (Joey tokens: rows x max(src+1, trg+1), random order) ~ attnmt batch_tokens "
        f"{batch_tokens} (rows x (src+1 + trg+2), length-sorted pools): real source+target pieces per batch "
        f"{sum(real) / len(joey):.0f} (Joey, {len(joey)} batches/epoch) vs {target:.0f} (attnmt, "
        f"{len(ours)} batches/epoch); rows per batch {len(src) / len(joey):.1f} vs {len(src) / len(ours):.1f}"
    )
    return size, note


def _model(arch: str, s: dict) -> dict:
    if arch == "gru":
        return {
            "initializer": "xavier_uniform",  # Joey's default (GRU matrices per gate); attnmt: torch defaults
            "embed_initializer": "normal",  # N(0, 1), nn.Embedding's default, as attnmt's GRU model
            "embed_init_weight": 1.0,
            "bias_initializer": "zeros",
            "tied_embeddings": False,
            "tied_softmax": False,
            "encoder": {
                "type": "recurrent",
                "rnn_type": "gru",
                "bidirectional": True,
                "hidden_size": s["hidden"] // 2,  # per direction: states and final state are s["hidden"] wide
                "num_layers": s["layers"],
                "dropout": s["dropout"],  # between layers only (none with 1 layer)
                "embeddings": {"embedding_dim": s["embed"], "scale": False, "dropout": s["dropout"]},
            },
            "decoder": {
                "type": "recurrent",
                "rnn_type": "gru",
                "hidden_size": s["hidden"],
                "num_layers": s["layers"],
                "attention": "bahdanau",  # additive score; query = the GRU state after the step (Luong order)
                "init_hidden": "last",  # [forward final; backward final] as is, no bridge layer: attnmt's
                "input_feeding": False,
                "dropout": s["dropout"],
                "hidden_dropout": s["dropout"],  # on [h; c] before tanh(W_c ·); attnmt: after it
                "embeddings": {"embedding_dim": s["embed"], "scale": False, "dropout": s["dropout"]},
            },
        }
    if arch == "transformer":

        def stack() -> dict:
            return {
                "type": "transformer",
                "num_layers": s["layers"],
                "num_heads": s["heads"],
                "hidden_size": s["hidden"],
                "ff_size": s["ff"],
                "dropout": s["dropout"],
                "layer_norm": "pre",  # and a final LayerNorm per stack, as attnmt
                "activation": "relu",
                "embeddings": {"embedding_dim": s["hidden"], "scale": True, "dropout": s["dropout"]},
            }

        return {
            "initializer": "xavier_uniform",
            "embed_initializer": "normal",  # N(0, d^-0.5) like attnmt's shared embedding
            "embed_init_weight": s["hidden"] ** -0.5,
            "bias_initializer": "zeros",
            "tied_embeddings": True,
            "tied_softmax": True,
            "encoder": stack(),
            "decoder": stack(),
        }
    raise ValueError(f"unknown arch {arch!r}: gru or transformer")


def _schedule(arch: str, s: dict) -> dict:
    """Joey has no constant scheduler (``scheduling`` unset raises, and ``plateau`` passes ``verbose``,
    which torch 2.13 rejects), so constant = ``exponential`` with gamma (``decrease_factor``) 1.0.
    Warmup: ``noam`` with factor lr·√(d·warmup) is lr·min(t/warmup, √(warmup/t)), attnmt's formula;
    the optimizer's initial lr (the first update's) is set to its step-1 value.  Joey steps the
    schedule after each update with the count before it, so update t ≥ 2 gets attnmt's value for t - 1.
    ``learning_rate_min`` 0: Joey stops training once lr falls below it."""
    if s["warmup"] <= 0:
        return {"scheduling": "exponential", "decrease_factor": 1.0, "learning_rate": s["lr"]}
    d = 2 * (s["hidden"] // 2) if arch == "gru" else s["hidden"]  # encoder output size, Joey's "hidden_size"
    return {
        "scheduling": "noam",
        "learning_rate_warmup": s["warmup"],
        "learning_rate_factor": s["lr"] * (d * s["warmup"]) ** 0.5,
        "learning_rate": s["lr"] / s["warmup"],
    }


def write_config(arch: str, data: Path, run: Path, steps: int, s: dict) -> Path:
    """Write the training config for arch 'gru' or 'transformer' into run/ and return its path."""
    data, run = Path(data).absolute(), Path(run).absolute()
    run.mkdir(parents=True, exist_ok=True)
    batch_size, note = _batch_size(data, s["batch_tokens"], s["seed"])
    if s.get("recipe") == "best" and arch in WARMUP_SHARE:
        s = s | {"warmup": max(1, round(WARMUP_SHARE[arch] * steps))}

    def side(code: str) -> dict:
        return {
            "lang": code,
            "level": "word",  # split on " " only; the pieces are the words
            "voc_file": str(data / "vocab.txt"),
            "lowercase": False,
            "normalize": False,
            "max_length": 200,  # the training filter (longest Tatoeba pair: 69 / 88 pieces)
            "min_length": -1,
            "tokenizer_cfg": {"pretokenizer": "none"},
        }

    validation_freq = s["report_every"] * (steps // s["report_every"] + 1)  # > steps: never validates
    config = {
        "name": f"joeynmt-{arch}",
        "joeynmt_version": "2.3.0",
        "model_dir": str(run / MODEL_DIR),
        "use_cuda": False,
        "fp16": False,
        "num_workers": 0,
        "random_seed": s["seed"],
        "data": {
            "train": str(data / "train"),
            "dev": str(data / "dev"),  # required by Joey's training loop, never decoded here
            "dataset_type": "plain",
            "src": side("en"),
            "trg": side("fr"),
        },
        "testing": {"batch_size": 64, "batch_type": "sentence", "beam_size": 1, "beam_alpha": 1.0},
        "training": {
            "overwrite": True,
            "optimizer": "adam",
            "adam_betas": [0.9, s["adam_beta2"]],
            **_schedule(arch, s),
            "learning_rate_min": 0.0,
            "weight_decay": 0.0,
            "clip_grad_norm": s["clip_norm"],
            "loss": "crossentropy",
            "label_smoothing": s["label_smoothing"],
            "normalization": "tokens",  # loss per target token, as attnmt
            "batch_type": "token",
            "batch_size": batch_size,
            "batch_multiplier": 1,
            "shuffle": True,
            "epochs": max(1, steps),  # every epoch makes at least one update: `updates` always ends it
            "updates": steps,  # Joey's step limit (TrainConfig.max_updates)
            "logging_freq": s["report_every"],
            "validation_freq": validation_freq,
            "early_stopping_metric": "loss",
            "keep_best_ckpts": 1,
            "print_valid_sents": [],
        },
        "model": _model(arch, s),
    }
    if s.get("recipe") == "best":
        config = _merged(config, BEST[arch])
    path = run / f"joeynmt-{arch}.yaml"
    header = f"# {NAME}, {arch}, {steps} updates; settings {json.dumps(s, sort_keys=True)}\n# {note}\n"
    path.write_text(header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def _merged(base: dict, over: dict) -> dict:
    """``base`` with the values of ``over`` in place, nested dicts merged key by key."""
    merged = dict(base)
    for key, value in over.items():
        merged[key] = _merged(base[key], value) if isinstance(value, dict) else value
    return merged


def train_command(venv: Path, config: Path) -> list[str]:
    """Train with Joey's CLI; ``--skip-test`` because its after-training test loads ``best.ckpt``,
    which only a validation writes."""
    python = Path(venv).absolute() / "bin" / "python"  # not resolve(): the venv's symlink is the venv
    return [str(python), "-m", "joeynmt", "train", str(Path(config).absolute()), "--skip-test"]


def parse_train_log(run: Path) -> list[dict]:
    """One dict per progress report in ``model/train.log``: {"step", "seconds" (the line's timestamp),
    "src_tok_s": None (Joey does not report source tokens), "tgt_tok_s"}.

    Joey's line: ``… - INFO - joeynmt.training - Epoch 1, Step: 20, Batch Loss: …, Tokens per Sec:
    1234, Lr: …``; its tokens are target tokens + EOS (``Batch.ntokens``) over the time since the
    previous report (data loading included; an epoch start restarts the window)."""
    text = (Path(run) / MODEL_DIR / "train.log").read_text(encoding="utf-8")
    reports = []
    for line in text.splitlines():
        if "Step:" not in line or "Tokens per Sec:" not in line:
            continue
        step = int(line.split("Step:", 1)[1].split(",", 1)[0])
        tgt = float(line.split("Tokens per Sec:", 1)[1].split(",", 1)[0])
        stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        reports.append({"step": step, "seconds": stamp, "src_tok_s": None, "tgt_tok_s": tgt})
    return reports


def final_model(run: Path) -> Path:
    """The checkpoint written after the last step (the only numbered one)."""
    checkpoints = (Path(run) / MODEL_DIR).glob("[0-9]*.ckpt")
    return max(checkpoints, key=lambda p: int(p.stem))


def translate_command(
    venv: Path, run: Path, beam: int, src: Path, out: Path, batch_sentences: int = 64, alpha: float = 1.0
) -> list[str]:
    """Translate ``src`` (pieces, one sentence a line) into ``out`` with ``joeynmt translate``.

    Joey takes decoding settings only from the config's ``testing`` section, so a derived config is
    written next to the model (``{model dir}/translate-beam{beam}-batch{n}.yaml``): the training config
    with ``load_model`` = ``model``, beam size (1 = greedy), GNMT length penalty ``alpha`` (as attnmt's
    beam), batches of ``batch_sentences`` sentences in input order, and one length cap for the whole
    file, 2 × (longest source + EOS) + 10 - 1 pieces: attnmt's cap for that sentence (it caps each
    sentence at 2 × (its length + EOS) + 10 tokens, <eos> included; Joey's default is 1.5 × the
    batch's longest source).  Joey reads stdin and prints one line per input line to stdout (its
    ``-o`` crashes in translate mode: ``args.n_best`` on BaseConfig), so the command is a ``sh -c``
    redirect; logging goes to stderr and ``{model dir}/translate.log``.  Empty input lines would be
    skipped (Joey drops them); the prepared test set has none.
    """
    model = final_model(run).absolute()
    config = next(Path(run).glob("joeynmt-*.yaml"))
    cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
    longest = max(line.count(" ") + 1 for line in Path(src).read_text(encoding="utf-8").splitlines())
    cfg["model_dir"] = str(model.parent)
    cfg["testing"] = {
        "load_model": str(model),
        "batch_size": batch_sentences,
        "batch_type": "sentence",
        "beam_size": beam,
        "beam_alpha": alpha,
        "n_best": 1,
        "max_output_length": 2 * (longest + 1) + 10 - 1,  # pieces; Joey's count has no forced <eos>
        "return_prob": "none",
        "generate_unk": True,
    }
    derived = model.parent / f"translate-beam{beam}-batch{batch_sentences}.yaml"
    derived.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), encoding="utf-8")
    python = str(Path(venv).absolute() / "bin" / "python")
    shell = shutil.which("sh") or "/bin/sh"
    script = 'exec "$0" -m joeynmt translate "$1" < "$2" > "$3"'
    return [shell, "-c", script, python, str(derived), str(Path(src).absolute()), str(Path(out).absolute())]
