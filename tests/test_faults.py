"""Faults: training killed with SIGKILL at random moments resumes to the model an uninterrupted run
trains, no checkpoint on disk is ever unreadable, and a full disk stops a run with its last checkpoint
intact.  The soak, many more kills:

    python tests/test_faults.py --kills 100
"""

import argparse
import errno
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch

from attnmt.checkpoint import checkpoint_dir, latest_checkpoint, load_checkpoint
from attnmt.config import config_from_dict
from attnmt.errors import AttnmtError
from attnmt.modeldir import load_model
from attnmt.training import train

SETTINGS = {
    "model.embed_size": 16, "model.hidden_size": 32, "model.dropout": 0.2, "train.epochs": "null",
    "train.batch_tokens": 200, "train.validate_every": 2, "train.keep_checkpoints": 3, "train.seed": 7,
}  # fmt: skip
STEPS = 60
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread count for every run: float sums in one order


def _command(model_dir: Path, resume: bool) -> list[str]:
    """Train in ``model_dir``; with ``resume``, from its newest checkpoint, else from the start, over what
    a run killed before its first checkpoint left there (as attnmt's message then tells a user to)."""
    sets = [a for k, v in {**SETTINGS, "train.max_steps": STEPS}.items() for a in ("--set", f"{k}={v}")]
    return [sys.executable, "-m", "attnmt.cli", "train", "--model-dir", str(model_dir), "--quiet", *sets] + (
        ["--resume"] if resume else ["--overwrite"]
    )


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    (path,) = model_dir.glob("model-*.safetensors")
    return safetensors.torch.load_file(path)


def check_everything_on_disk_loads(model_dir: Path) -> int:
    """Every checkpoint and the model directory load; returns how many checkpoints there are."""
    checkpoints = sorted(checkpoint_dir(model_dir).glob("step-*"))
    translator = None
    for path in checkpoints:
        translator = translator or load_model(model_dir)
        model = translator.model
        load_checkpoint(path, model, torch.optim.Adam(model.parameters()))
    return len(checkpoints)


def _step(model_dir: Path) -> int:
    """The update of the newest checkpoint in ``model_dir``, 0 when there is none."""
    newest = latest_checkpoint(model_dir)
    return int(newest.name.removeprefix("step-")) if newest else 0


def kill_and_resume(model_dir: Path, kills: int, seed: int) -> int:
    """Start training, SIGKILL it at a random moment, check the disk, resume; ``kills`` times, then let
    it finish.  Returns how many kills landed while training was still running.  The moments follow
    the run's progress, not the clock, so that they land mid-training on a CPU of any speed: some
    checkpoints past the last sitting's, then 0-50 ms on (steps, validations, a checkpoint's write)."""
    rng, landed = random.Random(seed), 0
    for left in range(kills, 0, -1):
        start = _step(model_dir)
        process = subprocess.Popen(_command(model_dir, start > 0), env=ENV, stderr=subprocess.PIPE)
        # at most an equal share of what is left per kill still to come, so that the last kill has steps
        target = start + rng.randint(1, max(1, (STEPS - start) // (left + 1)))
        while process.poll() is None and _step(model_dir) < target:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.05))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            landed += 1
        process.wait()
        check_everything_on_disk_loads(model_dir)  # a kill mid-write may leave a .tmp-… directory: ignored
    result = subprocess.run(
        _command(model_dir, _step(model_dir) > 0), env=ENV, capture_output=True, timeout=600
    )
    assert result.returncode == 0, result.stderr.decode()
    return landed


@pytest.mark.slow
def test_random_sigkills_then_resume_give_the_uninterrupted_model(tmp_path):
    whole = tmp_path / "whole"
    subprocess.run(_command(whole, False), env=ENV, check=True, timeout=600)
    landed = kill_and_resume(tmp_path / "killed", kills=4, seed=0)
    assert landed == 4
    a, b = _weights(whole), _weights(tmp_path / "killed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert check_everything_on_disk_loads(tmp_path / "killed") == 3


def test_a_full_disk_stops_training_with_the_last_checkpoint_intact(tmp_path, monkeypatch):
    import attnmt.checkpoint

    config = config_from_dict({}, [f"{k}={v}" for k, v in SETTINGS.items()] + ["train.max_steps=8"])
    real, calls = attnmt.checkpoint.atomic_write_bytes, []

    def fill_up(path, data):
        calls.append(path)
        if len(calls) > 4:  # the third checkpoint's first file: the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, data)

    monkeypatch.setattr(attnmt.checkpoint, "atomic_write_bytes", fill_up)
    with pytest.raises(AttnmtError, match=r"No space left on device.*update 6.*step-00000004\) is intact"):
        train(config, model_dir=tmp_path, progress=False)
    assert sorted(p.name for p in checkpoint_dir(tmp_path).iterdir()) == ["step-00000002", "step-00000004"]
    assert check_everything_on_disk_loads(tmp_path) == 2


def test_an_unwritable_model_directory_is_reported_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    config = config_from_dict({}, [f"{k}={v}" for k, v in SETTINGS.items()] + ["train.max_steps=2"])
    started = time.perf_counter()
    with pytest.raises(AttnmtError, match=r"file/run: cannot write there"):
        train(config, model_dir=blocker / "run", progress=False)
    assert time.perf_counter() - started < 30


def test_a_corrupt_or_foreign_checkpoint_gets_a_clear_message(tmp_path):
    config = config_from_dict({}, [f"{k}={v}" for k, v in SETTINGS.items()] + ["train.max_steps=2"])
    translator = train(config, model_dir=tmp_path, progress=False)
    checkpoint = latest_checkpoint(tmp_path)
    model, state = translator.model, (checkpoint / "state.json").read_text()
    optimizer = torch.optim.Adam(model.parameters())
    (checkpoint / "state.json").write_text(state.replace('"format_version": 2', '"format_version": 1'))
    with pytest.raises(AttnmtError, match="checkpoint format 1 is not 2"):
        load_checkpoint(checkpoint, model, optimizer)
    (checkpoint / "state.json").write_text(state)
    data = bytearray((checkpoint / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (checkpoint / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(AttnmtError, match=r"model\.safetensors: checksum does not match"):
        load_checkpoint(checkpoint, model, optimizer)


def test_a_kill_while_old_checkpoints_are_deleted_leaves_no_broken_checkpoint(tmp_path, monkeypatch):
    """Pruning renames a checkpoint out of sight before deleting its files: a kill mid-delete (here an
    exception from the delete) leaves only whole ``step-…`` directories."""
    import attnmt.checkpoint

    config = config_from_dict({}, [f"{k}={v}" for k, v in SETTINGS.items()] + ["train.max_steps=6"])
    train(config, model_dir=tmp_path, progress=False)  # checkpoints 2, 4, 6: the next one prunes 2
    real = shutil.rmtree

    def killed_midway(path, ignore_errors=False):
        name = Path(path).name
        if Path(path).is_dir() and (name.startswith("step-") or name.endswith("-discarded")):
            (Path(path) / "state.json").unlink()  # some files gone, then the process dies
            raise KeyboardInterrupt
        real(path, ignore_errors=ignore_errors)

    monkeypatch.setattr(attnmt.checkpoint.shutil, "rmtree", killed_midway)
    config.train.max_steps = 8
    with pytest.raises(KeyboardInterrupt):
        train(config, model_dir=tmp_path, resume=True, progress=False)
    monkeypatch.undo()
    assert check_everything_on_disk_loads(tmp_path) >= 1  # every step-… left loads


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="the fault soak: many random SIGKILLs, one final comparison")
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", type=Path, default=Path("runs/fault-soak"))
    args = parser.parse_args()
    subprocess.run(_command(args.dir / "whole", False), env=ENV, check=True)
    landed = kill_and_resume(args.dir / "killed", args.kills, args.seed)
    a, b = _weights(args.dir / "whole"), _weights(args.dir / "killed")
    same = all(torch.equal(a[k], b[k]) for k in a)
    print(
        f"{landed} of {args.kills} kills landed during training; final model equal to uninterrupted: {same}"
    )
    sys.exit(0 if same else 1)
