"""Memory stays flat over a long translation stream: `attnmt translate` reads stdin in chunks and writes
as it goes, so its peak memory does not grow with the number of sentences.  The full measurement:

    python tests/test_memory.py MODEL_DIR --sentences 100000
"""

import argparse
import random
import subprocess
import sys
from pathlib import Path

import pytest

from attnmt.cli import main as attnmt

WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "sees",
    "loves",
    "is",
    "are",
    "we",
    "they",
    "happy",
    "sad",
    "tired",
    "house",
    "big",
    "small",
]


def peak_rss_mb(model_dir: Path, sentences: int) -> float:
    """Peak resident memory of one `attnmt translate` process fed ``sentences`` lines on stdin."""
    rng = random.Random(0)
    lines = "".join(" ".join(rng.choices(WORDS, k=rng.randint(3, 12))) + " .\n" for _ in range(sentences))
    command = [sys.executable, "-c", _MEASURE, str(model_dir)]
    result = subprocess.run(command, input=lines.encode(), capture_output=True, timeout=3600)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert len(result.stdout.decode().splitlines()) == sentences  # every line answered
    return float(result.stderr.decode().split()[-1])


# runs `attnmt translate` in this process, then reports its own peak RSS (kB on Linux) on stderr
_MEASURE = """
import resource, sys
from attnmt.cli import main
code = main(["translate", sys.argv[1], "--beam", "1"])
sys.stdout.flush()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_number_of_sentences(tmp_path):
    model_dir = tmp_path / "toy"
    assert attnmt(["train", "--model-dir", str(model_dir), "--set", "train.epochs=2", "--quiet"]) == 0
    small, large = peak_rss_mb(model_dir, 2_000), peak_rss_mb(model_dir, 16_000)
    assert large - small < 25, f"{small:.0f} MB for 2,000 sentences, {large:.0f} MB for 16,000"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="peak memory of attnmt translate over long streams")
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--sentences", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    args = parser.parse_args()
    for n in args.sentences:
        print(f"{n:>9,} sentences: peak RSS {peak_rss_mb(args.model_dir, n):,.0f} MB", flush=True)
