"""Step 6, training: cross-entropy over the target words, Adam, gradient clipping, a fixed seed."""

import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from attnmt.config import Config
from attnmt.data import Batch, Pair, TranslationDataset, bucketed_batches, collate, toy_pairs
from attnmt.errors import AttnmtError
from attnmt.model import EncoderDecoderAttention, build_model
from attnmt.modeldir import save_model
from attnmt.translator import Translator
from attnmt.vocab import Vocabulary


def load_pairs(config: Config) -> list[Pair]:
    """The training pairs the config names."""
    return toy_pairs(config.data.src_lang, config.data.tgt_lang)


def loss_fn(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Cross-entropy per target token; padding positions count for nothing."""
    total = F.cross_entropy(
        logits.flatten(0, 1).float(),
        batch.tgt_out.flatten(),
        ignore_index=Vocabulary.pad_id,
        reduction="sum",
    )
    return total / batch.num_tokens


def train(
    config: Config,
    *,
    pairs: list[Pair] | None = None,
    model_dir: Path | None = None,
    progress: bool = True,
) -> Translator:
    """Train a model as ``config`` says, on ``pairs`` if given (else the config's corpus).

    Saves it to ``model_dir`` if given and returns it as a :class:`Translator`.
    """
    torch.manual_seed(config.train.seed)
    pairs = load_pairs(config) if pairs is None else pairs
    if not pairs:
        raise AttnmtError("no training pairs")
    src_vocab, tgt_vocab = TranslationDataset.build_vocabs(
        pairs, min_freq=config.data.min_freq, max_size=config.data.max_vocab_size
    )
    dataset = TranslationDataset(
        pairs, src_vocab, tgt_vocab, src_lang=config.data.src_lang, tgt_lang=config.data.tgt_lang
    )
    model = build_model(config.model, len(src_vocab), len(tgt_vocab))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    lengths = [len(s) for s in dataset.src_ids]
    batches_per_epoch = len(bucketed_batches(lengths, config.train.batch_size, shuffle=False))
    total = config.train.epochs * batches_per_epoch
    if config.train.max_steps is not None:
        total = min(total, config.train.max_steps)
    bar = tqdm(total=total, disable=None if progress else True, unit="step", dynamic_ncols=True, leave=False)
    step, tokens, started = 0, 0, time.perf_counter()
    for epoch in range(1, config.train.epochs + 1):
        seed = config.train.seed * 100_003 + epoch  # batch order: a function of (seed, epoch)
        epoch_loss, epoch_tokens = 0.0, 0
        for indices in bucketed_batches(lengths, config.train.batch_size, shuffle=True, seed=seed):
            if step >= total:
                break
            batch = collate(dataset, indices)
            loss = train_step(model, optimizer, batch, config)
            step, tokens = step + 1, tokens + batch.num_tokens
            epoch_loss, epoch_tokens = (
                epoch_loss + loss * batch.num_tokens,
                epoch_tokens + batch.num_tokens,
            )
            speed = tokens / (time.perf_counter() - started)
            bar.update()
            bar.set_postfix(epoch=epoch, loss=f"{loss:.3f}", tok_s=f"{speed:.0f}")
        report_every = max(1, config.train.epochs // 10)
        if progress and epoch_tokens and (epoch == 1 or epoch % report_every == 0):
            bar.write(
                f"epoch {epoch:3d}  loss {epoch_loss / epoch_tokens:.3f}  {speed:,.0f} target tokens/s",
                file=sys.stderr,
            )
    bar.close()
    translator = Translator(model.eval(), src_vocab, tgt_vocab, config)
    if model_dir is not None:
        save_model(translator, model_dir)
    return translator


def train_step(
    model: EncoderDecoderAttention, optimizer: torch.optim.Optimizer, batch: Batch, config: Config
) -> float:
    """One update on ``batch``; returns its loss per target token."""
    model.train()
    logits, _ = model(batch.src, batch.src_pad_mask, batch.tgt_in, config.train.teacher_forcing)
    loss = loss_fn(logits, batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.clip_norm)
    optimizer.step()
    return loss.item()
