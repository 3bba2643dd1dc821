"""How preparing and training scale with the corpus: synthetic corpora at 1×, 10× and 100× Tatoeba's size
(136 k, 1.36 M, 13.6 M pairs) prepared and trained on for a fixed number of updates.

    python bench/scale.py [--sizes 136000,1360000,13600000] [--updates 300] [--out runs/scale]
                          [--doc docs/scale.md]

Each corpus (``attnmt.synthetic``, a gzipped TSV, generated once into ``--out``; not timed) is prepared
by a fresh process (``attnmt.prepared.prepare``: its wall time, its peak RSS and its workers' peak),
then a fresh process trains on the prepared arrays for ``--updates`` updates (the GRU of the default
config, BPE 8 k pieces, 2,000-token batches): start-up is the seconds from ``train()`` to the first
update, memory its peak RSS, speed the updates per second over the second half.  Prints a markdown
table (and writes it to ``--doc``).  Needs about 10 GB of disk at 100×: ``df -h`` first.
"""

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

SETTINGS = ["data.tokenizer=bpe", "data.vocab_size=8000", "data.spm_sample=200000", "train.epochs=null",
            "train.batch_tokens=2000", "train.validate_every=100000", "train.precision=fp32"]  # fmt: skip

PREPARE = """
import json, resource, sys, time
from pathlib import Path
from attnmt.config import config_from_dict
from attnmt.prepared import prepare
config = config_from_dict({}, [f"data.train={sys.argv[1]}", *json.loads(sys.argv[3]), "train.max_steps=1"])
start = time.perf_counter()
prepare(Path(sys.argv[2]), config.data, workers=int(sys.argv[4]) or None)
print(json.dumps({"seconds": time.perf_counter() - start,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "workers_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""

TRAIN = """
import json, resource, sys, time
from pathlib import Path
from attnmt import training
from attnmt.config import config_from_dict
config = config_from_dict({}, [f"data.train={sys.argv[1]}", f"data.prepared={sys.argv[2]}",
                               f"train.max_steps={sys.argv[4]}", *json.loads(sys.argv[3])])
ticks, step = [], training._Run.train_step
def timed(self, batches):
    ticks.append(time.perf_counter())
    return step(self, batches)
training._Run.train_step = timed
start = time.perf_counter()
training.train(config, model_dir=Path(sys.argv[2]).parent / "model", progress=False)
half = len(ticks) // 2
print(json.dumps({"startup": ticks[0] - start, "updates_per_s": (len(ticks) - 1 - half) / (ticks[-1] - ticks[half]),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(script: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{out.stderr}\nfailed: {' '.join(args)}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def measure(n: int, out: Path, updates: int, workers: int) -> dict:
    from attnmt.synthetic import write_synthetic_tsv

    corpus = out / f"synthetic-{n}.tsv.gz"
    if not corpus.is_file():
        write_synthetic_tsv(corpus, n)
    directory = out / str(n) / "prepared"
    settings = json.dumps(SETTINGS)
    prepared = run(PREPARE, str(corpus), str(directory), settings, str(workers))
    trained = run(TRAIN, str(corpus), str(directory), settings, str(updates))
    return (
        {"pairs": n, "corpus_mb": corpus.stat().st_size / 1e6, "prepared_mb": disk_mb(directory)}
        | {f"prepare_{k}": v for k, v in prepared.items()}
        | {f"train_{k}": v for k, v in trained.items()}
    )


def table(rows: list[dict], updates: int) -> str:
    cpu = platform.machine()
    with contextlib.suppress(OSError):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
        cpu = names[0] if names else cpu
    lines = [
        f"{time.strftime('%Y-%m-%d')}, {cpu}, {os.cpu_count()} CPUs; {updates} updates; {' '.join(SETTINGS)}",
        "",
        "| pairs | corpus (gz) | prepare | prepare peak RSS (workers) | prepared on disk | training start-up "
        "| training peak RSS | updates/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['pairs']:,} | {r['corpus_mb']:,.1f} MB | {r['prepare_seconds']:,.1f} s "
            f"| {r['prepare_rss_mb']:,.0f} MB ({r['prepare_workers_rss_mb']:,.0f} MB) | {r['prepared_mb']:,.1f} MB "
            f"| {r['train_startup']:,.1f} s | {r['train_rss_mb']:,.0f} MB | {r['train_updates_per_s']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="136000,1360000,13600000", help="pairs, comma-separated")
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--workers", type=int, default=0, help="prepare's worker processes (0: one per CPU)")
    parser.add_argument("--out", type=Path, default=Path("runs/scale"))
    parser.add_argument("--doc", type=Path, help="also write the table here")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        rows.append(measure(n, args.out, args.updates, args.workers))
        print(json.dumps(rows[-1]), file=sys.stderr)
    text = table(rows, args.updates)
    print(text)
    if args.doc:
        args.doc.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
