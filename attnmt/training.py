"""Step 6, training: cross-entropy over the target tokens, Adam, gradient clipping, a fixed seed —
and, for real corpora, validation with BLEU, checkpoints and bit-for-bit resume.

The batch order is a pure function of (seed, epoch): a resumed run replays exactly the batches an
uninterrupted one would have seen, from the saved position on.
"""

import contextlib
import copy
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from attnmt.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from attnmt.config import Config, DataConfig, TrainConfig
from attnmt.corpora import Pair, clean, group_references, load_pairs
from attnmt.data import (
    Batch,
    BatchPlan,
    EncodedPairs,
    TranslationDataset,
    bucketed_batches,
    collate,
    plan_batches,
)
from attnmt.device import autocast, candidate_precisions, faster_precision, reuse_freed_memory, select_device
from attnmt.distributed import ONE_PROCESS, World, init_world, local_device
from attnmt.errors import AttnmtError
from attnmt.files import atomic_write_text, check_writable_dir
from attnmt.metrics import corpus_scores
from attnmt.model import Seq2Seq, build_model
from attnmt.modeldir import CONFIG, load_model, save_model
from attnmt.prepared import PreparedDataset, ensure_prepared, tokenizer_hash
from attnmt.preprocess import Tokenizers, build_tokenizers, build_vocabularies
from attnmt.translator import DecodeOptions, Translator
from attnmt.vocab import Vocabulary

LOG = "train.jsonl"
FUSED_ADAM = ("cpu", "cuda")  # devices with a one-kernel Adam (one pass over each parameter, not six)


def loss_fn(
    model: torch.nn.Module, batch: Batch, teacher_forcing: float = 1.0, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Summed cross-entropy over the target tokens of a teacher-forced pass; the model computes no word
    distributions at padding positions.  With ``label_smoothing`` ε the target distribution puts
    1 - ε on the gold word and ε spread over all."""
    keep = batch.tgt_out != Vocabulary.pad_id
    logits, _ = model(batch.src, batch.src_pad_mask, batch.tgt_in, teacher_forcing, keep)
    return F.cross_entropy(
        logits.float(), batch.tgt_out[keep], reduction="sum", label_smoothing=label_smoothing
    )


def update(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    group: list[Batch],
    teacher_forcing: float = 1.0,
    clip_norm: float = 1.0,
    label_smoothing: float = 0.0,
    world: World = ONE_PROCESS,
) -> tuple[float, int]:
    """One optimizer update over the batches in ``group`` (gradient accumulation), with the loss
    normalised by all their target tokens: the same update as one batch holding them all.  Under
    ``torchrun``, ``model`` is the DistributedDataParallel wrapper and ``group`` this process's share;
    the normaliser counts every process's tokens.  Returns the loss per target token and the tokens."""
    model.train()
    device = group[0].src.device
    n = int(world.sum(sum(b.num_tokens for b in group), device))
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for i, batch in enumerate(group):
        sync = i == len(group) - 1 or world.size == 1  # DDP averages gradients once, after the last
        with contextlib.nullcontext() if sync else model.no_sync():
            loss = loss_fn(model, batch, teacher_forcing, label_smoothing) / n
            (loss * world.size).backward()  # DDP divides the summed gradients by the world size
        total += loss.item()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
    optimizer.step()
    return world.sum(total, device), n


@dataclass
class Progress:
    """Where a run stands; saved in every checkpoint."""

    step: int = 0  # updates done
    epoch: int = 1  # current epoch (1-based)
    batch_in_epoch: int = 0  # batches of this epoch already used
    seconds: float = 0.0  # training time so far, all sittings
    src_tokens: int = 0  # source tokens trained on so far (padding excluded), all sittings, all processes
    tgt_tokens: int = 0  # target tokens likewise
    best: list[float] | None = None  # [dev BLEU, -dev loss] of the best model: BLEU first, loss breaks ties
    bad_validations: int = 0  # in a row, without a better dev score
    decays: int = 0  # plateau: learning-rate decays so far
    precision: str | None = None  # what the run trains in (auto: timed at its start, then kept)
    history: list[dict] = field(default_factory=list)

    @classmethod
    def from_checkpoint(cls, saved: dict) -> "Progress":
        """The progress saved in a checkpoint.  Checkpoints written before ``decays`` hold the decayed
        rate itself (``lr``) and the config that decayed it: the count is derived from them."""
        progress = cls(**{k: saved[k] for k in cls.__dataclass_fields__ if k in saved})
        if "decays" not in saved and "lr" in saved:
            train = saved["config"]["train"]
            rate, factor = train["lr"], train["decay_factor"]
            while train["schedule"] == "plateau" and rate > saved["lr"] and factor < 1:
                rate, progress.decays = rate * factor, progress.decays + 1
        return progress


def learning_rate(step: int, train: TrainConfig, decays: int = 0, seconds: float = 0.0) -> float:
    """The learning rate of update ``step`` (0-based), ``seconds`` of training in, under
    ``train.schedule``: ``constant`` is ``train.lr``; ``inverse_sqrt`` warms up linearly for
    ``warmup_steps`` to ``train.lr``, then decays with the inverse square root of the step (Vaswani et
    al. 2017, eq. 3, scaled to peak at ``train.lr``); ``plateau`` is ``train.lr × decay_factor **
    decays``, ``decays`` counting the validations that decayed it; ``budget`` warms up likewise, holds
    ``train.lr``, and falls linearly to 0 over the last ``decay_share`` of the budget — ``max_steps``
    or ``max_minutes``, whichever is spent first (warmup–stable–decay, timed by the budget as in
    Geiping & Goldstein 2023)."""
    n = step + 1
    if train.schedule == "inverse_sqrt":
        return train.lr * min(n / train.warmup_steps, (train.warmup_steps / n) ** 0.5)
    if train.schedule == "budget":
        spent = max(
            step / train.max_steps if train.max_steps else 0.0,
            seconds / (60 * train.max_minutes) if train.max_minutes else 0.0,
        )
        warm = min(1.0, n / train.warmup_steps) if train.warmup_steps else 1.0
        return train.lr * warm * min(1.0, max(0.0, 1.0 - spent) / train.decay_share)
    lr = train.lr
    if train.schedule == "plateau":
        for _ in range(decays):  # one product at a time, the float a run always got
            lr *= train.decay_factor
    return lr


def train(
    config: Config,
    *,
    pairs: list[Pair] | None = None,
    model_dir: Path | None = None,
    resume: bool = False,
    progress: bool = True,
    data_root: Path | None = None,
) -> Translator:
    """Train as ``config`` says, on ``pairs`` if given (else ``config.data.train``).

    With ``model_dir``, checkpoints go to ``model_dir/checkpoints`` and the best model (by dev BLEU;
    the last one without a dev set) is kept in ``model_dir`` itself, ready for ``load_model``;
    ``resume`` continues from the newest checkpoint there.  Returns the model trained last.
    Without ``pairs``, and with ``model_dir`` or ``data.prepared``, the training data is prepared once
    into memory-mapped arrays (``data.prepared``, else ``model_dir/prepared``: see attnmt.prepared) and
    read from there; the batches and the model are those of the same pairs held in memory.
    """
    model_dir = None if model_dir is None else Path(model_dir)
    torch.manual_seed(config.train.seed)
    device, precisions, world = _device_and_world(config.train)
    progress = progress and world.is_main
    say = (lambda text: tqdm.write(text, file=sys.stderr)) if progress else (lambda text: None)
    # the data: the training pairs as ids (by the resumed model's tokenizers, else new ones), dev pairs
    given = _tokenizers_of(_resumable_model(config, model_dir)) if resume else None
    dataset, tokenizers = _training_data(config.data, pairs, model_dir, data_root, given, world, say)
    dev = None
    if config.data.dev is not None:
        dev = load_pairs(
            config.data.dev, src_lang=config.data.src_lang, tgt_lang=config.data.tgt_lang, root=data_root
        )
    # the model and Adam: new, or as the newest checkpoint left them
    translator = _new_model(config, tokenizers, device)
    model = translator.model
    if model_dir is not None and world.is_main:
        _check_writable(model_dir, model, config.train.keep_checkpoints)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr, fused=device.type in FUSED_ADAM)
    state = _resumed_progress(model_dir, model, optimizer, say) if resume else Progress()
    # the loop
    run = _Run(
        config=config, translator=translator, optimizer=optimizer, state=state, dataset=dataset, dev=dev,
        model_dir=model_dir, device=device, precision=precisions[0], world=world, say=say, show_bar=progress,
    )  # fmt: skip
    if len(precisions) > 1:
        chosen = state.precision in precisions  # by a sitting before this one
        run.precision = state.precision if chosen else run.faster_precision(precisions)
    state.precision = run.precision
    say(f"{sum(p.numel() for p in model.parameters()):,} parameters on {device}, {run.precision}")
    run.loop()
    return run.translator


def _device_and_world(train: TrainConfig) -> tuple[torch.device, tuple[str, ...], World]:
    """The device this process trains on, the precisions ``train.precision`` may mean there (one, or
    fp32 and bf16 for timing to choose) and the processes' world."""
    device = local_device(select_device(train.device))
    if device.type == "cpu":
        reuse_freed_memory()
    return device, candidate_precisions(device, train.precision), init_world(device)


def _resumable_model(config: Config, model_dir: Path | None) -> Translator:
    """The model saved in ``model_dir``, checked to be the model and data ``config`` trains."""
    if model_dir is None or latest_checkpoint(model_dir) is None:
        raise AttnmtError(f"{model_dir}: no checkpoint to resume from")
    previous = load_model(model_dir)
    _check_resumable(previous.config, config, Path(model_dir) / CONFIG)
    return previous


def _tokenizers_of(translator: Translator) -> Tokenizers:
    return translator.src_tokenizer, translator.tgt_tokenizer, translator.src_vocab, translator.tgt_vocab


def _training_data(
    data: DataConfig,
    pairs: list[Pair] | None,
    model_dir: Path | None,
    root: Path | None,
    given: Tokenizers | None,
    world: World,
    say: Callable[[str], None],
) -> tuple[EncodedPairs, Tokenizers]:
    """The training pairs as ids, and the tokenizers and vocabularies that encoded them (``given``, a
    resumed model's, else built).  Without ``pairs``, and with ``model_dir`` or ``data.prepared``, the
    pairs are prepared into memory-mapped arrays; else they are held in memory."""
    if pairs is None and (model_dir is not None or data.prepared is not None):
        if model_dir is not None and world.is_main:
            check_writable_dir(model_dir)  # before preparing there, not after
        directory = Path(data.prepared or model_dir / "prepared")
        return _prepared(data, directory, root, given, world, say)
    if pairs is None:
        pairs = _training_pairs(data, root, say)
    if not pairs:
        raise AttnmtError("no training pairs")
    tokenizers = given or _built_tokenizers(data, pairs, world)
    src_tok, tgt_tok, src_vocab, tgt_vocab = tokenizers
    dataset = TranslationDataset(
        pairs, src_vocab, tgt_vocab, src_lang=data.src_lang, tgt_lang=data.tgt_lang,
        src_tokenizer=src_tok, tgt_tokenizer=tgt_tok,
    )  # fmt: skip
    return dataset, tokenizers


def _new_model(config: Config, tokenizers: Tokenizers, device: torch.device) -> Translator:
    """A freshly initialised model for ``tokenizers``' vocabularies, on ``device``."""
    src_tok, tgt_tok, src_vocab, tgt_vocab = tokenizers
    model = build_model(config.model, len(src_vocab), len(tgt_vocab), config.data.joint_vocab).to(device)
    return Translator(model, src_vocab, tgt_vocab, src_tok, tgt_tok, config)


def _resumed_progress(
    model_dir: Path, model: Seq2Seq, optimizer: torch.optim.Optimizer, say: Callable[[str], None]
) -> Progress:
    """The newest checkpoint's weights and Adam state loaded into ``model`` and ``optimizer``; its progress."""
    checkpoint = latest_checkpoint(model_dir)
    state = Progress.from_checkpoint(load_checkpoint(checkpoint, model, optimizer))
    say(f"resuming from {checkpoint} (update {state.step:,}, epoch {state.epoch})")
    return state


def _training_pairs(data: DataConfig, root: Path | None, say: Callable[[str], None]) -> list[Pair]:
    """``data.train``, cleaned (``data.max_words``)."""
    pairs, report = clean(
        load_pairs(data.train, src_lang=data.src_lang, tgt_lang=data.tgt_lang, root=root),
        max_words=data.max_words,
    )
    say(f"training data {data.train}: {report}")
    return pairs


def _prepared(
    data: DataConfig,
    directory: Path,
    root: Path | None,
    given: Tokenizers | None,
    world: World,
    say: Callable[[str], None],
) -> tuple[PreparedDataset, Tokenizers]:
    """``data.train`` prepared into ``directory`` (reused when its manifest matches), encoded with the
    ``given`` tokenizers if any.  Rank 0 prepares while the others wait; then the first process of
    each other machine prepares there if its disk is not shared and it finds nothing."""
    if world.is_main:
        ensure_prepared(directory, data, root=root, tokenizers=given, say=say)
    world.wait_for_main()
    if not world.is_main and os.environ.get("LOCAL_RANK", "0") == "0":
        ensure_prepared(directory, data, root=root, tokenizers=given)
    world.wait_for_main()
    dataset = PreparedDataset(directory)
    tokenizers = world.from_main(given or dataset.tokenizers(data))
    if tokenizer_hash(tokenizers) != dataset.manifest["tokenizer_sha256"]:
        raise AttnmtError(f"{directory}: encoded with other tokenizers than rank 0's; delete it and rerun")
    return dataset, tokenizers


def _built_tokenizers(data: DataConfig, pairs: list[Pair], world: World) -> Tokenizers:
    """The tokenizers and vocabularies of ``pairs``, built once, by rank 0, so that every process has
    the very same."""
    built = None
    if world.is_main:
        src_tok, tgt_tok = build_tokenizers(data, pairs)
        built = (src_tok, tgt_tok, *build_vocabularies(data, pairs, src_tok, tgt_tok))
    return world.from_main(built)


class _Report:
    """What a run shows while it trains, kept out of the arithmetic: a progress bar on a terminal (else,
    e.g. into a log file, a line a minute) and the loss of the first and of every tenth epoch."""

    def __init__(
        self,
        *,
        train: TrainConfig,
        updates_per_epoch: int,
        step: int,
        say: Callable[[str], None],
        show_bar: bool,
    ) -> None:
        total = min(
            train.epochs * updates_per_epoch if train.epochs is not None else math.inf,
            train.max_steps if train.max_steps is not None else math.inf,
        )
        self.bar = tqdm(
            total=None if math.isinf(total) else total,
            initial=step,
            disable=None if show_bar else True,
            unit="update",
            dynamic_ncols=True,
            leave=False,
        )
        self.say, self.max_minutes = say, train.max_minutes
        self.every_epochs = max(1, (train.epochs or 10) // 10)
        self.started = self.last_line = time.perf_counter()
        self.tokens = 0  # target tokens trained on in this sitting, for the speed
        self.epoch_loss = self.epoch_tokens = 0.0  # summed loss and target tokens of the epoch so far

    def speed(self) -> float:
        """Target tokens per second in this sitting."""
        return self.tokens / max(1e-9, time.perf_counter() - self.started)

    def update(self, s: Progress, loss: float, tokens: int, lr: float) -> None:
        """After an update with ``loss`` per target token over ``tokens`` target tokens at rate ``lr``."""
        self.tokens += tokens
        self.epoch_loss, self.epoch_tokens = self.epoch_loss + loss * tokens, self.epoch_tokens + tokens
        speed = self.speed()
        self.bar.update()
        postfix = {"epoch": s.epoch, "loss": f"{loss:.3f}", "lr": f"{lr:.2g}", "tok_s": f"{speed:.0f}"}
        if self.max_minutes is not None:  # the budget's ETA, when the bar's own (by steps) cannot know
            postfix["budget_left"] = f"{max(0.0, self.max_minutes - s.seconds / 60):.1f}min"
        self.bar.set_postfix(postfix)
        if self.bar.disable and time.perf_counter() - self.last_line >= 60:
            self.last_line = time.perf_counter()
            self.say(
                f"update {s.step:,}  epoch {s.epoch}  loss {loss:.3f}  lr {lr:.2g}  {speed:,.0f} target tokens/s  "
                f"{s.seconds / 60:.1f} min"
            )

    def epoch_done(self, epoch: int) -> None:
        if self.epoch_tokens and (epoch == 1 or epoch % self.every_epochs == 0):
            loss = self.epoch_loss / self.epoch_tokens
            self.say(f"epoch {epoch:3d}  loss {loss:.3f}  {self.speed():,.0f} target tokens/s")
        self.epoch_loss = self.epoch_tokens = 0.0

    def close(self) -> None:
        self.bar.close()


class EpochUpdates:
    """An epoch's updates for this process, from the epoch's :class:`BatchPlan`: update ``u`` is this
    process's share of batches ``u·k … u·k + k - 1`` (``k`` = accumulate × world size), as index lists."""

    def __init__(self, plan: BatchPlan, accumulate: int, world: World) -> None:
        self.plan, self.world, self.k = plan, world, accumulate * world.size
        self.updates = -(-len(plan) // self.k)  # ceil
        if world.size > 1 and len(plan) % self.k:
            self.updates -= 1  # a last update too small to give every process a batch

    def __len__(self) -> int:
        return self.updates

    def __getitem__(self, u: int) -> list[list[int]]:
        if not 0 <= u < self.updates:
            raise IndexError(u)
        last = min(len(self.plan), (u + 1) * self.k)
        return [self.plan[b].tolist() for b in range(u * self.k + self.world.rank, last, self.world.size)]


@dataclass(kw_only=True)
class _Run:
    """One training run: the loop, validation and checkpoints."""

    config: Config
    translator: Translator  # the model trained, with its vocabularies and tokenizers
    optimizer: torch.optim.Optimizer
    state: Progress
    dataset: EncodedPairs  # a TranslationDataset, or a PreparedDataset
    dev: list[Pair] | None  # validation pairs; None: no validation
    model_dir: Path | None  # where checkpoints and the best model go; None: nowhere
    device: torch.device
    precision: str  # fp32 | bf16 (resolved, never auto)
    world: World
    say: Callable[[str], None]  # a line for the user, or nothing
    show_bar: bool

    def __post_init__(self) -> None:
        self.model: Seq2Seq = self.translator.model  # an nn.Module too
        self.trained = self.model  # what a training step runs: the model, or its DDP wrapper
        if self.world.size > 1:
            self.trained = torch.nn.parallel.DistributedDataParallel(self.model)
        self.lengths = self.dataset.length_arrays()
        t = self.translator  # the dev set is tokenized once, not at every validation
        self.dev_set = None
        if self.dev is not None:
            self.dev_set = TranslationDataset(
                self.dev,
                t.src_vocab,
                t.tgt_vocab,
                src_tokenizer=t.src_tokenizer,
                tgt_tokenizer=t.tgt_tokenizer,
            )

    def batches(self, epoch: int) -> "EpochUpdates":
        """The epoch's updates, each ``accumulate × world size`` batches of which this process takes
        every world-size-th: a function of (seed, epoch).  With several processes a last update too
        small to give each one a batch is left out."""
        cfg = self.config.train
        plan = plan_batches(*self.lengths, cfg.batch_tokens, shuffle=True, seed=cfg.seed * 100_003 + epoch)
        return EpochUpdates(plan, cfg.accumulate, self.world)

    def finished(self) -> bool:
        cfg, s = self.config.train, self.state
        return (
            (cfg.epochs is not None and s.epoch > cfg.epochs)
            or (cfg.max_steps is not None and s.step >= cfg.max_steps)
            or (cfg.max_minutes is not None and s.seconds >= 60 * cfg.max_minutes)
            or (cfg.early_stopping is not None and s.bad_validations >= cfg.early_stopping)
        )

    def loop(self) -> None:
        """Update until a stop condition holds; validate and checkpoint every ``validate_every`` updates
        and at the end."""
        cfg, s = self.config.train, self.state
        updates, updates_epoch = self.batches(1), 1
        report = _Report(
            train=cfg, updates_per_epoch=len(updates), step=s.step, say=self.say, show_bar=self.show_bar
        )
        last_save = s.step
        while not self.finished():
            # the epoch's updates, computed once per epoch; after its last one, the next epoch
            if updates_epoch != s.epoch:
                updates, updates_epoch = self.batches(s.epoch), s.epoch
            if s.batch_in_epoch >= len(updates):
                report.epoch_done(s.epoch)
                s.epoch, s.batch_in_epoch = s.epoch + 1, 0
                continue
            # one update: learning rate, forward and backward, clipping, Adam
            loss, tokens = self.train_step(updates[s.batch_in_epoch])
            report.update(s, loss, tokens, self.lr)
            # validation and checkpoint
            if s.step % cfg.validate_every == 0:
                self.validate_and_save()
                last_save = s.step
        if s.step != last_save or s.step == 0:  # the last model, unless just saved
            self.validate_and_save()
        report.close()
        self.model.eval()

    def train_step(self, batches: list[list[int]]) -> tuple[float, int]:
        """One update on this process's ``batches`` (example indices each), counted in ``state``.
        Returns the loss per target token and the target tokens, both over every process."""
        cfg, s = self.config.train, self.state
        tick = time.perf_counter()
        group = [collate(self.dataset, b).to(self.device) for b in batches]
        lr = learning_rate(s.step, cfg, s.decays, s.seconds)
        for param_group in self.optimizer.param_groups:
            param_group["lr"] = lr
        with autocast(self.device, self.precision):
            loss, n = update(
                self.trained, self.optimizer, group, cfg.teacher_forcing, cfg.clip_norm, cfg.label_smoothing,
                self.world,
            )  # fmt: skip
        s.step, s.batch_in_epoch = s.step + 1, s.batch_in_epoch + 1
        s.src_tokens += int(self.world.sum(sum(int((~b.src_pad_mask).sum()) for b in group), self.device))
        s.tgt_tokens += n  # both counted over every process
        s.seconds += time.perf_counter() - tick
        if self.world.size > 1 and cfg.max_minutes is not None:  # all stop at rank 0's clock
            s.seconds = self.world.from_main(s.seconds)
        return loss, n

    def faster_precision(self, precisions: tuple[str, ...]) -> str:
        """The one of ``precisions`` that trains this model faster on this machine: rank 0 times the
        coming updates' batches in each on a copy of the model, its random state restored after, so
        the run itself is as it would have been; the time taken counts against ``train.max_minutes``."""
        cfg, s = self.config.train, self.state
        choice, tick = None, time.perf_counter()
        if self.world.is_main:
            model = copy.deepcopy(self.model)
            optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=self.device.type in FUSED_ADAM)
            updates = self.batches(s.epoch)

            def run_update(i: int) -> None:  # the i-th coming update, batched as train_step batches it
                group = [
                    collate(self.dataset, b).to(self.device)
                    for b in updates[(s.batch_in_epoch + i) % len(updates)]
                ]
                update(model, optimizer, group, cfg.teacher_forcing, cfg.clip_norm, cfg.label_smoothing)

            with torch.random.fork_rng(devices=[]):
                choice, seconds = faster_precision(self.device, precisions, run_update)
            timings = ", ".join(f"{p} {t:.3f} s" for p, t in seconds.items())
            self.say(f"precision auto: {timings} per update on this machine: {choice}")
            s.seconds += time.perf_counter() - tick
        s.seconds, choice = self.world.from_main((s.seconds, choice))  # every process: rank 0's
        return choice

    @property
    def lr(self) -> float:
        """The learning rate Adam used last (``train.lr`` before a new run's first update)."""
        return self.optimizer.param_groups[0]["lr"]

    def validate_and_save(self) -> None:
        """Rank 0 validates and writes; the others wait, then take its verdict (best, patience, decays)."""
        if self.world.is_main:
            self._validate_and_save()
        s = self.state
        s.best, s.bad_validations, s.decays = self.world.from_main((s.best, s.bad_validations, s.decays))
        self.world.barrier()

    def _validate_and_save(self) -> None:
        s = self.state
        record: dict = {
            "step": s.step, "epoch": s.epoch, "lr": self.lr, "minutes": round(s.seconds / 60, 2),
            "seconds": round(s.seconds, 3), "src_tokens": s.src_tokens, "tgt_tokens": s.tgt_tokens,
            "precision": self.precision,
        }  # fmt: skip
        improved = True
        if self.dev is not None:
            record |= self.validate()
            improved = self.judge([round(record["bleu"], 2), -record["dev_loss"]])
            self.say(
                f"update {s.step:,}: dev loss {record['dev_loss']:.3f}  ppl {record['dev_ppl']:.1f}  "
                f"BLEU {record['bleu']:.2f}  chrF {record['chrf']:.2f}" + ("  (best)" if improved else "")
            )
        s.history.append(record)
        if self.model_dir is not None:
            self.save(improved)

    def judge(self, score: list[float]) -> bool:
        """Whether ``score`` ([dev BLEU, -dev loss]) is the best yet; counts the validations in a row
        without a better one, and under ``plateau`` decays the learning rate every ``decay_patience``."""
        cfg, s = self.config.train, self.state
        if s.best is None or score > s.best:
            s.best, s.bad_validations = score, 0
            return True
        s.bad_validations += 1
        if cfg.schedule == "plateau" and s.bad_validations % cfg.decay_patience == 0:
            s.decays += 1
        return False

    def save(self, improved: bool) -> None:
        """A checkpoint and the log into ``model_dir``; the model too if it ``improved``."""
        cfg, s, model_dir = self.config.train, self.state, self.model_dir
        state = {k: getattr(s, k) for k in Progress.__dataclass_fields__} | {"config": self.config.to_dict()}
        # the next update's rate, for attnmt versions before `decays`
        state["lr"] = learning_rate(s.step, cfg, s.decays, s.seconds)
        try:
            if improved:
                save_model(self.translator, model_dir)
            save_checkpoint(model_dir, s.step, self.model, self.optimizer, state, keep=cfg.keep_checkpoints)
            atomic_write_text(model_dir / LOG, "".join(json.dumps(r) + "\n" for r in s.history))
        except OSError as e:
            last = latest_checkpoint(model_dir)
            raise AttnmtError(
                f"{model_dir}: cannot write ({e.strerror or e}); training stopped at update {s.step:,}, "
                f"the last good checkpoint ({last.name if last else 'none yet'}) is intact"
            ) from None

    @torch.no_grad()
    def validate(self) -> dict:
        """Dev loss and perplexity (teacher-forced), BLEU and chrF of greedy translations."""
        with autocast(self.device, self.precision):
            loss = mean_loss(self.model, self.dev_set, 4 * self.config.train.batch_tokens)
            sources, references = group_references(self.dev)
            greedy = self.translator.translate(sources, DecodeOptions(beam_size=1))
            scores = corpus_scores([h.text for h in greedy], references)
        return {
            "dev_loss": loss,
            "dev_ppl": math.exp(min(loss, 50)),
            "bleu": scores.bleu,
            "chrf": scores.chrf,
            "bleu_signature": scores.bleu_signature,
        }


@torch.no_grad()
def mean_loss(model: torch.nn.Module, dataset: TranslationDataset, batch_tokens: int = 24_000) -> float:
    """Teacher-forced cross-entropy per target token over ``dataset`` (its exp is the perplexity)."""
    model.eval()
    device = next(model.parameters()).device
    loss = tokens = 0.0
    for indices in bucketed_batches(dataset.lengths(), batch_tokens, shuffle=False):
        batch = collate(dataset, indices).to(device)
        loss, tokens = loss + loss_fn(model, batch).item(), tokens + batch.num_tokens
    return loss / tokens


def _check_writable(model_dir: Path, model: torch.nn.Module, keep: int) -> None:
    """Fail before training, not an hour in: the directory must take files, and the disk must hold the
    model and ``keep`` + 1 checkpoints (weights and Adam's two moments each)."""
    check_writable_dir(model_dir)
    size = 4 * sum(p.numel() for p in model.parameters())
    needed, free = size * (2 + 3 * (keep + 1)), shutil.disk_usage(model_dir).free
    if free < needed:
        raise AttnmtError(
            f"{model_dir}: {free / 1e6:,.0f} MB free; this run needs about {needed / 1e6:,.0f} MB "
            f"for its model and {keep} checkpoints"
        )


def _check_resumable(saved: Config, given: Config, source: Path) -> None:
    """A resumed run must train the same model on the same data; only the train section may change."""
    for section in ("data", "model"):
        old, new = getattr(saved, section).__dict__, getattr(given, section).__dict__
        for key in old:
            if old[key] != new[key] and f"{section}.{key}" != "data.prepared":  # where, not what
                raise AttnmtError(
                    f"{section}.{key}: {new[key]!r} differs from {old[key]!r} in {source}; cannot resume"
                )
