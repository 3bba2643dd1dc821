"""attnmt, OpenNMT-py and JoeyNMT side by side on this machine: the same Tatoeba pieces, matched models.

    ATTNMT_DATA=../shared/data python bench/compare.py --doc docs/benchmarks.md

1. installs each peer into its own virtual environment under ``--work`` (torch 2.13.0 there too);
2. pre-encodes Tatoeba with one joint 8k SentencePiece model (``bench/prepare.py``);
3. measures the fp32 matrix-multiply peak and each model's training FLOPs per piece;
4. throughput: every toolkit trains every architecture for a few dozen updates, ``--runs`` times,
   interleaved; the median over reports of (source + target pieces) per second of training;
5. race: each toolkit trains for ``--minutes`` of training time (peers: as many updates as their
   measured speed gives in that time), then translates the test split greedy and with beam 5,
   ``--runs`` times (batch 64): sentences/s, target pieces/s, load time, cased multi-reference BLEU;
   attnmt also with ``--int8``, and every Transformer that CTranslate2 converts (attnmt's with
   ``attnmt export``, OpenNMT-py's with ``ct2-opennmt-py-converter``) also through CTranslate2, its
   weights int8 and float32 (``CTRANSLATE2``);
6. writes ``--results`` (default ``--work``/results.json) and the tables (into ``--doc`` between its
   result markers).

``--best`` races each toolkit's best recipe instead (issue 15): attnmt's budget config
(``configs/tatoeba-ARCH-12min.yaml``), a peer's own usual recipe (its ``BEST``) with what attnmt's recipe
adopted that the peer has an option for; both on the pieces of attnmt's recipe's training data (the peer
also on the plain pairs, when that data adds joined ones), the peer given the updates its measured speed
with that recipe allows; scored with beam 5 (``BEST_ALPHA``) on
``tatoeba:test`` and ``long:tatoeba:test``.  ``--resume --best`` adds it to a matched invocation.

``--resume`` continues an invocation from its results file, on a CPU with the same vector and bf16
instructions only; with ``--retranslate`` it translates again with the race's trained models, every
toolkit, after a change to decoding.  A race longer than a working session keeps its results file where
the session's end does not remove it (``--results docs/lab/...``): a row is saved once trained and again
once translated, and a trained row whose model is gone trains again.

All settings shared by the toolkits are in ``SETTINGS``; every ratio comes from this one invocation.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from peers import attnmt_cli, joeynmt, opennmt
from prepare import DATA, TESTS, prepare

TOOLKITS = {"attnmt": attnmt_cli, "opennmt": opennmt, "joeynmt": joeynmt}
COMMON = {
    "embed": 256, "hidden": 256, "heads": 4, "ff": 1024, "dropout": 0.1, "batch_tokens": 2000,
    "clip_norm": 1.0, "adam_beta2": 0.999, "seed": 1,
}  # fmt: skip
SETTINGS = {  # per architecture; batch_tokens: source + target tokens per batch, padding included
    "gru": COMMON | {"layers": 1, "lr": 1e-3, "warmup": 0, "label_smoothing": 0.0},
    "transformer": COMMON | {"layers": 3, "lr": 1e-3, "warmup": 400, "label_smoothing": 0.1},
}
THROUGHPUT_STEPS = {"gru": 80, "transformer": 80}
CTRANSLATE2 = ("int8", "float32")  # weight types of the CTranslate2 rows
VARIANTS = {  # a translation row's key suffix → its label after the toolkit's name
    "": "", "_int8": ", int8 (`--int8`)",
    **{f"_ct2_{q}": f", CTranslate2 {q}" for q in CTRANSLATE2},
}  # fmt: skip
REPORT_EVERY = {"gru": 10, "transformer": 5}
BEST_ALPHA = 1.0  # GNMT length penalty of the best-recipe race, both toolkits (docs/lab/recipes.md)
RESULTS_BEGIN, RESULTS_END = "<!-- results: written by bench/compare.py -->", "<!-- /results -->"


def venv_of(work: Path, name: str) -> Path:
    """The project's own environment for attnmt; a private one per peer, created on first use."""
    if name == "attnmt":
        return Path(sys.prefix)
    venv = work / f"venv-{name}"
    if not (venv / "installed").is_file():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "pip"), "install", "-q"]
        subprocess.run([*pip, "torch==2.13.0"], check=True)
        for args in TOOLKITS[name].INSTALL:
            subprocess.run([*pip, *args], check=True)
        (venv / "installed").write_text("")
    return venv


def run_measured(
    command: list[str], log: Path, stdin: Path | None = None, stdout: Path | None = None
) -> dict:
    """Run ``command`` to completion; its wall time and peak resident memory (MB)."""
    env = os.environ | {"OMP_NUM_THREADS": str(torch.get_num_threads()), "PYTHONUNBUFFERED": "1"}
    if "ATTNMT_DATA" in env:  # the command runs in its run directory: a relative path would miss
        env["ATTNMT_DATA"] = str(Path(env["ATTNMT_DATA"]).resolve())
    with (
        open(log, "w") as err,
        open(stdin or os.devnull) as inp,
        open(stdout or os.devnull, "w") as out,
    ):
        started = time.perf_counter()
        process = subprocess.Popen(command, stdin=inp, stdout=out, stderr=err, env=env, cwd=log.parent)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed; see {log}")
    return {"seconds": seconds, "peak_mb": usage.ru_maxrss / 1024}


def matmul_peak() -> float:
    """fp32 GFLOP/s of a 2048³ matrix product at this process's thread count, median of 5."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(5):
            a @ b
        timings.append((time.perf_counter() - started) / 5)
    return 2 * 2048**3 / statistics.median(timings) / 1e9


def model_config(arch: str):
    """attnmt's ModelConfig for the matched model of ``arch`` (the peers' configs say the same)."""
    from attnmt.config import ModelConfig

    s = SETTINGS[arch]
    if arch == "gru":
        return ModelConfig(attention="additive", embed_size=s["embed"], hidden_size=s["hidden"],
                           layers=s["layers"], dropout=s["dropout"])  # fmt: skip
    return ModelConfig(architecture="transformer", hidden_size=s["hidden"], heads=s["heads"], ff_size=s["ff"],
                       layers=s["layers"], dropout=s["dropout"])  # fmt: skip


def tatoeba_dataset(every: int = 1):
    """attnmt's TranslationDataset of every ``every``-th cleaned Tatoeba training pair, with the joint
    SentencePiece model trained on those pairs, as ``attnmt train`` builds it."""
    from attnmt.corpora import clean, load_pairs
    from attnmt.data import TranslationDataset
    from attnmt.preprocess import build_tokenizers, build_vocabularies

    pairs, _ = clean(load_pairs(DATA.train), max_words=DATA.max_words)
    pairs = pairs[::every]
    tokenizer, _ = build_tokenizers(DATA, pairs)
    vocab, _ = build_vocabularies(DATA, pairs, tokenizer, tokenizer)
    return TranslationDataset(pairs, vocab, vocab, src_tokenizer=tokenizer, tgt_tokenizer=tokenizer)


def flops_per_piece(arch: str) -> float:
    """Training FLOPs (forward + backward, counted by torch) per source + target piece, on real
    Tatoeba batches of attnmt's model of ``arch``."""
    from torch.utils.flop_counter import FlopCounterMode

    from attnmt.data import bucketed_batches, collate
    from attnmt.model import build_model
    from attnmt.training import loss_fn

    dataset = tatoeba_dataset(every=6)  # about 20,000 pairs: enough for a vocabulary and five batches
    model = build_model(model_config(arch), 8003, 8003, shared_vocab=True)  # 8,000 pieces + 3 specials
    flops = pieces = 0
    batches = bucketed_batches(dataset.lengths(), SETTINGS[arch]["batch_tokens"], shuffle=True, seed=0)
    for indices in batches[:5]:
        batch = collate(dataset, indices)
        with FlopCounterMode(display=False) as counter:
            loss_fn(model, batch).backward()
        flops += counter.get_total_flops()
        pieces += int((~batch.src_pad_mask).sum()) + batch.num_tokens
    return flops / pieces


def corpus_ratio(data: Path) -> float:
    """Source pieces per target token (pieces + ``<eos>``) in the training data.

    Every toolkit reports target tokens per second counted alike (pieces and the end-of-sentence
    token); they count the source differently (with or without an ``<eos>``, or not at all).  So all
    source + target rates here are target tokens/s × (1 + this ratio): batches are random samples of
    the corpus, whose ratio they share on average."""
    lines = [len(line.split()) for line in (data / "train.fr").open(encoding="utf-8")]
    source = sum(len(line.split()) for line in (data / "train.en").open(encoding="utf-8"))
    return source / (sum(lines) + len(lines))


def steady(reports: list[dict]) -> list[dict]:
    """The progress reports of a run's second half, every toolkit alike: the first half holds start-up
    and warm-up (on an AVX-512 machine the Transformer ran updates 5–30 at a third of its later speed)."""
    return reports[len(reports) // 2 :]


def pieces_per_second(reports: list[dict], ratio: float) -> float:
    """Source + target pieces per second: the median over the steady progress reports."""
    return statistics.median(r["tgt_tok_s"] * (1 + ratio) for r in steady(reports))


def steps_per_second(reports: list[dict]) -> float:
    first, last = steady(reports)[0], reports[-1]
    return (last["step"] - first["step"]) / (last["seconds"] - first["seconds"])


def train(name: str, arch: str, run: Path, data: Path, work: Path, steps: int | None, s: dict) -> dict:
    module = TOOLKITS[name]
    config = module.write_config(arch, data, run, steps, s)
    measured = run_measured(module.train_command(venv_of(work, name), config), run / "train.stderr")
    reports = module.parse_train_log(run)
    return measured | {"reports": reports}


def translate(name: str, command: list[str], sources: Path, out: Path) -> dict:
    """Run a translation ``command`` of toolkit ``name`` on ``sources`` (plain text or pieces, as the
    toolkit reads) into ``out``."""
    if TOOLKITS[name].READS == "text":  # attnmt translate: stdin to stdout
        return run_measured(command, out.with_suffix(".stderr"), stdin=sources, stdout=out)
    return run_measured(command, out.with_suffix(".stderr"))


def translation_commands(name: str, arch: str, run: Path, work: Path) -> dict:
    """Each way a trained model of ``name`` translates, by row suffix (``VARIANTS``): a function of
    (beam, sources, out) giving the command, batch 64.  The CTranslate2 exports are made here."""
    module, venv = TOOLKITS[name], venv_of(work, name)
    commands = {"": lambda beam, src, out: module.translate_command(venv, run, beam, src, out)}
    if name == "attnmt":
        commands["_int8"] = lambda beam, src, out: [
            *module.translate_command(venv, run, beam, src, out),
            "--int8",
        ]
    if arch in getattr(module, "CTRANSLATE2_ARCHS", ()):
        for q in CTRANSLATE2:
            shutil.rmtree(module.ctranslate2_model(run, q), ignore_errors=True)  # exported afresh
            run_measured(module.ctranslate2_export_command(venv, run, q), run / f"export-{q}.stderr")
            commands[f"_ct2_{q}"] = lambda beam, src, out, q=q: module.ctranslate2_translate_command(
                venv, run, q, beam, src, out
            )
    return commands


def decode_pieces(path: Path, spm_model: Path, reads: str) -> list[str]:
    import sentencepiece

    lines = path.read_text(encoding="utf-8").splitlines()
    if reads == "text":
        return lines
    processor = sentencepiece.SentencePieceProcessor(model_file=str(spm_model))
    return [processor.decode_pieces(line.split()) for line in lines]


def count_pieces(lines: list[str], spm_model: Path) -> int:
    import sentencepiece

    processor = sentencepiece.SentencePieceProcessor(model_file=str(spm_model))
    return sum(len(processor.encode(line)) for line in lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, default=Path("runs/bench"))
    parser.add_argument("--results", type=Path, help="the results file (default: --work/results.json)")
    parser.add_argument("--toolkits", nargs="+", default=list(TOOLKITS), choices=list(TOOLKITS))
    parser.add_argument("--archs", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--race-archs", nargs="*", default=None, help="architectures to race (default: all)")
    parser.add_argument("--skip-race", nargs="*", default=[], metavar="TOOLKIT:ARCH")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--best", action="store_true", help="race each toolkit's best recipe (issue 15)")
    parser.add_argument("--minutes", type=float, default=12.0)
    parser.add_argument("--doc", type=Path, help="markdown file whose result markers get the tables")
    parser.add_argument("--render", action="store_true", help="only redo the tables from the results file")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the invocation in the results file, skipping what it has",
    )
    parser.add_argument(
        "--retranslate",
        action="store_true",
        help="with --resume: translate again with the models the race trained (after a decoding change)",
    )
    args = parser.parse_args()
    if args.retranslate and not args.resume:
        parser.error("--retranslate needs --resume: it translates with the models a recorded race trained")
    args.results = (args.results or args.work / "results.json").resolve()
    if args.render:
        _save(args.results, json.loads(args.results.read_text()), args.doc)
        return
    if args.resume and not args.results.is_file():
        sys.exit(f"{args.results}: no results to resume; run without --resume to start them")
    work = args.work.resolve()
    data = prepare(work / "data")
    ratio = corpus_ratio(data)
    results: dict = {
        "date": date.today().isoformat(),
        "cpu": _cpu(),
        "cpu_flags": _cpu_flags(),
        "ctranslate2": _version("ctranslate2"),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "command": " ".join(["python", *sys.argv]),
        "settings": SETTINGS,
        "matmul_gflops": matmul_peak(),
        "flops_per_piece": {arch: flops_per_piece(arch) for arch in args.archs},
        "throughput": {},
        "race": {},
    }
    if args.resume:
        previous = json.loads(args.results.read_text())
        if previous.get("cpu_flags") != results["cpu_flags"]:
            sys.exit(
                f"{args.results}: recorded on a CPU with {previous.get('cpu_flags')}, this one has "
                f"{results['cpu_flags']}: a race compares on one CPU; start another results file"
            )
        flops = results["flops_per_piece"] | previous.get("flops_per_piece", {})  # an arch added: its own
        results = previous | {"resumed_with": results["command"], "flops_per_piece": flops}
    for name in args.toolkits:
        venv_of(work, name)
    for arch in [a for a in args.archs if a not in results["throughput"]]:  # toolkits take turns each round
        s = SETTINGS[arch] | {"report_every": REPORT_EVERY[arch]}
        rows = {name: [] for name in args.toolkits}
        for r in range(args.runs):
            for name in args.toolkits:
                run = work / "throughput" / arch / f"{name}-{r}"
                m = train(name, arch, run, data, work, THROUGHPUT_STEPS[arch], s)
                rows[name].append(
                    {
                        "pieces_s": pieces_per_second(m["reports"], ratio),
                        "steps_s": steps_per_second(m["reports"][1:]),
                        "peak_mb": m["peak_mb"],
                    }
                )
                print(f"throughput {arch} {name} run {r}: {rows[name][-1]}", flush=True)
        results["throughput"][arch] = {
            name: {key: statistics.median(x[key] for x in runs) for key in runs[0]} | {"runs": runs}
            for name, runs in rows.items()
        }
        _save(args.results, results, args.doc)
    sources = data / "test.txt"
    references = json.loads((data / "test.refs.json").read_text(encoding="utf-8"))
    results["test_sentences"] = len(references)
    race_archs = args.archs if args.race_archs is None else args.race_archs
    if args.best:
        best_race(args, work, results, race_archs)
        return
    if args.retranslate:  # decoding changed: translate again with every trained model, side by side
        for arch in race_archs:
            for row in results["race"].get(arch, {}).values():
                for key in [k for k in row if k.startswith("beam")]:
                    del row[key]
        results["retranslated_with"] = " ".join(["python", *sys.argv])
    for arch in race_archs:
        s = SETTINGS[arch] | {"report_every": 1_000_000, "minutes": args.minutes}
        for name in args.toolkits:
            if f"{name}:{arch}" in args.skip_race:
                continue
            run = work / "race" / arch / name
            row = results["race"].setdefault(arch, {}).get(name)
            if row is not None and "beam1" not in row and not run.is_dir():
                row = None  # trained in an earlier session whose models are gone: train again
            if row is None:
                row = race_train(name, arch, run, data, work, s, results["throughput"][arch][name]["steps_s"])
                results["race"][arch][name] = row
                _save(args.results, results, args.doc)
            if "beam1" not in row:
                row |= race_translate(name, arch, run, data, work, args.runs, sources, references)
                print(f"race {arch} {name}: {row}", flush=True)
                _save(args.results, results, args.doc)


def race_train(name: str, arch: str, run: Path, data: Path, work: Path, s: dict, steps_s: float) -> dict:
    """Train for ``s["minutes"]``: attnmt by its own clock, a peer for the updates its speed gives."""
    steps = None if name == "attnmt" else round(60 * s["minutes"] * steps_s)
    trained = train(name, arch, run, data, work, steps, s)
    row = {"steps": steps, "train_peak_mb": trained["peak_mb"], "train_wall_s": trained["seconds"]}
    if name == "attnmt":
        log = (run / "model" / "train.jsonl").read_text().splitlines()
        last = json.loads(log[-1])
        row["steps"], row["precision"] = last["step"], last.get("precision")
        row["same_pieces"] = _pieces(run / "model" / "src.spm") == _pieces(data / "spm.model")
    return row


def best_race(args: argparse.Namespace, work: Path, results: dict, archs: list[str]) -> None:
    """Issue 15's race (``--best``): train each toolkit's best recipe, then beam 5 on every test split."""
    results.setdefault("best", {})
    command = " ".join(["python", *sys.argv])  # each --best invocation that added rows, in order
    results["best_commands"] = [c for c in results.get("best_commands", []) if c != command] + [command]
    results["best_minutes"] = args.minutes
    results["best_cpu_capability"] = torch.backends.cpu.get_cpu_capability()  # bf16 or not for attnmt
    for arch in archs:
        spec, data, s = best_settings(arch, work)
        lr, s = s["lr"], s | {"minutes": args.minutes}
        # a peer also trains on the plain pairs when attnmt's recipe adds data: its best may be either
        entries = [(n, n, data, spec) for n in args.toolkits]
        if spec != DATA.train:
            plain = prepare(work / "data", DATA.train)
            entries += [(n, f"{n}@{DATA.train}", plain, DATA.train) for n in args.toolkits if n != "attnmt"]
        for name, key, data, trained_on in entries:
            run = work / "best" / arch / key.replace(":", "_")
            row = results["best"].setdefault(arch, {}).get(key)
            if row is not None and (row.get("data"), row.get("lr")) != (trained_on, lr):
                sys.exit(  # a row of an earlier recipe: delete it from the results file to race it again
                    f"{args.results}: best.{arch}.{key} was trained on {row.get('data')} at lr "
                    f"{row.get('lr')}; the recipe now says {trained_on} at lr {lr}"
                )
            if row is not None and any(stem not in row for stem in TESTS) and not run.is_dir():
                row = None  # trained in an earlier session whose models are gone: train again
            if row is None:
                steps_s = None
                if name != "attnmt":  # the peer's speed with its best recipe: a short run first
                    probe = s | {"report_every": REPORT_EVERY[arch]}
                    speed_run = run.with_name(f"{run.name}-speed")
                    m = train(name, arch, speed_run, data, work, THROUGHPUT_STEPS[arch], probe)
                    steps_s = steps_per_second(m["reports"][1:])
                row = race_train(name, arch, run, data, work, s | {"report_every": 1_000_000}, steps_s)
                row |= {
                    "steps_s_probe": steps_s,
                    "recipe": _recipe(name, arch, lr),
                    "data": trained_on,
                    "lr": lr,
                }
                results["best"][arch][key] = row
                _save(args.results, results, args.doc)
            for stem in TESTS:
                if stem not in row:
                    row[stem] = best_translate(name, run, data, work, stem)
                    print(f"best {arch} {name} {stem}: {row[stem]}", flush=True)
                    _save(args.results, results, args.doc)


def best_settings(arch: str, work: Path) -> tuple[str, Path, dict]:
    """attnmt's best recipe for ``arch`` as a race gives it to a peer: the training data spec, that
    data prepared under ``work``, and the settings (``SETTINGS`` with the recipe's learning rate, and
    its decay share where it decays over the budget)."""
    from attnmt.config import TrainConfig

    recipe = attnmt_cli.best_recipe(arch)
    spec = recipe["data"]["train"]
    slug = "" if spec == DATA.train else "-" + spec.replace(":", "_").replace("+", "__")
    data = prepare(work / f"data{slug}", spec)
    # the peer's learning rate is attnmt's too: a tuned rate is something it has an option for
    s = SETTINGS[arch] | {"recipe": "best", "lr": recipe["train"].get("lr", TrainConfig.lr)}
    if recipe["train"].get("schedule") == "budget":  # the peer decays over the same last share
        s["decay_share"] = recipe["train"].get("decay_share", TrainConfig.decay_share)
    return spec, data, s


def best_translate(name: str, run: Path, data: Path, work: Path, stem: str) -> dict:
    """Beam 5 with ``BEST_ALPHA`` on the test split ``stem``, once: BLEU, chrF, sentences/s."""
    from attnmt.metrics import corpus_scores

    module = TOOLKITS[name]
    src = data / (f"{stem}.txt" if module.READS == "text" else f"{stem}.en")
    out = run / f"best-{stem}.out"
    command = module.translate_command(venv_of(work, name), run, 5, src, out, alpha=BEST_ALPHA)
    m = translate(name, command, src, out)
    hyps = decode_pieces(out, data / "spm.model", module.READS)
    scores = corpus_scores(hyps, json.loads((data / f"{stem}.refs.json").read_text(encoding="utf-8")))
    return {"bleu": scores.bleu, "chrf": scores.chrf, "sent_s": len(hyps) / m["seconds"]}


def race_translate(
    name: str, arch: str, run: Path, data: Path, work: Path, runs: int, sources: Path, references: list
) -> dict:
    """Greedy and beam 5, each ``runs`` times, every way the model translates (``translation_commands``)."""
    from attnmt.metrics import corpus_scores

    module = TOOLKITS[name]
    one = run / "one.txt"
    src = sources if module.READS == "text" else data / "test.en"
    one.write_text(src.open(encoding="utf-8").readline(), encoding="utf-8")
    row = {}
    for suffix, command in translation_commands(name, arch, run, work).items():
        for beam in (1, 5):
            timings, loads, peak = [], [], 0.0
            for r in range(runs):
                out = run / f"beam{beam}{suffix}-{r}.out"
                m = translate(name, command(beam, src, out), src, out)
                loads.append(
                    translate(name, command(beam, one, run / "one.out"), one, run / "one.out")["seconds"]
                )
                timings.append(m["seconds"] - loads[-1])
                peak = max(peak, m["peak_mb"])
            hyps = decode_pieces(run / f"beam{beam}{suffix}-0.out", data / "spm.model", module.READS)
            scores = corpus_scores(hyps, references)
            seconds = statistics.median(timings)
            row[f"beam{beam}{suffix}"] = {
                "bleu": scores.bleu, "chrf": scores.chrf, "sent_s": len(hyps) / seconds,
                "tgt_pieces_s": count_pieces(hyps, data / "spm.model") / seconds,
                "load_s": statistics.median(loads), "peak_mb": peak, "seconds": timings,
            }  # fmt: skip
    return row


def _recipe(name: str, arch: str, lr: float) -> str:
    """A best recipe in a table cell: attnmt's config file, a peer's options beyond the matched ones
    (``lr``: the race's learning rate)."""
    if name == "attnmt":
        return f"`{attnmt_cli.BEST[arch].relative_to(Path(__file__).parents[1])}`"
    options = dict(TOOLKITS[name].BEST[arch])
    if arch in getattr(TOOLKITS[name], "WARMUP_SHARE", {}):
        options["warmup_steps"] = f"{TOOLKITS[name].WARMUP_SHARE[arch]:.0%} of the updates"
    if lr != SETTINGS[arch]["lr"]:  # attnmt's tuned rate, given to the peer too
        options["learning rate"] = lr
    return ", ".join(f"`{k}: {json.dumps(v)}`" for k, v in options.items()) or "the matched options"


def _pieces(spm_model: Path) -> list[tuple[str, float]]:
    """A SentencePiece model's pieces and scores (its file also records where it was trained)."""
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=str(spm_model))
    return [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    return platform.processor()


def _cpu_flags() -> str:
    """The CPU's vector and bf16 instructions that decide which precisions pay: AVX2, AVX-512, bf16."""
    names = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_vnni": "AVX-512 VNNI", "avx512_bf16": "AVX-512 BF16",
             "amx_bf16": "AMX-BF16"}  # fmt: skip
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return (
                ", ".join(label for flag, label in names.items() if flag in flags) or "none of AVX2/AVX-512"
            )
    return "unknown"


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _save(path: Path, results: dict, doc: Path | None) -> None:
    path.write_text(json.dumps(results, indent=1), encoding="utf-8")
    tables = render(results)
    print(tables)
    if doc is not None and doc.is_file():
        text = doc.read_text(encoding="utf-8")
        head, _, rest = text.partition(RESULTS_BEGIN)
        _, _, tail = rest.partition(RESULTS_END)
        doc.write_text(f"{head}{RESULTS_BEGIN}\n{tables}\n{RESULTS_END}{tail}", encoding="utf-8")


def render(r: dict) -> str:
    """The results as markdown tables."""
    again = r.get("retranslated_with")  # translation measured again after a decoding change
    lines = [
        f"`{r['command']}` — {r['date']}, {r['cpu']} ({r.get('cpu_flags', 'flags not recorded')}), "
        f"{r['threads']} threads, torch {r['torch']}"
        + (f", CTranslate2 {r['ctranslate2']}" if r.get("ctranslate2") else "")
        + "; "
        f"fp32 matmul peak {r['matmul_gflops']:.0f} GFLOP/s (2048³, median of 5)."
        + (
            f" Translation measured again, every toolkit, after a decoding change: `{again}`."
            if again
            else ""
        ),
        "",
        "**Training throughput** (median of the runs; each run's speed is the median over the progress "
        "reports of its second half, after warm-up): source + target pieces per second of training, peak memory of the "
        "training process, share of the matmul peak (model FLOPs per piece × pieces/s ÷ peak).",
        "",
        "| architecture | toolkit | pieces/s | × fastest peer | updates/s | peak RSS MB | % of fp32 peak |",
        "|---|---|---|---|---|---|---|",
    ]
    for arch, rows in r["throughput"].items():
        peers = [row["pieces_s"] for name, row in rows.items() if name != "attnmt"]
        best = max(peers, default=None)
        for name, row in rows.items():
            share = 100 * row["pieces_s"] * r["flops_per_piece"][arch] / (r["matmul_gflops"] * 1e9)
            ratio = f"{row['pieces_s'] / best:.2f}" if best and name == "attnmt" else ""
            lines.append(
                f"| {arch} | {TOOLKITS[name].NAME} | {row['pieces_s']:,.0f} | {ratio} | {row['steps_s']:.2f} "
                f"| {row['peak_mb']:,.0f} | {share:.0f} % |"
            )
    if r["race"]:
        lines += [
            "",
            f"**Equal training budget, then translation** of the {r['test_sentences']:,} test sentences (batch 64; "
            "speed: median of the runs, load time excluded; BLEU: cased sacreBLEU, all references).",
            "",
            "| architecture | toolkit | updates | train peak RSS MB | BLEU greedy / beam 5 | chrF beam 5 "
            "| sent/s greedy / beam 5 | target pieces/s greedy / beam 5 | beam 5 cost ÷ greedy | load s |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for arch, rows in r["race"].items():
            for name, row, suffix in [
                (n, x, s) for n, x in rows.items() for s in VARIANTS if f"beam1{s}" in x
            ]:
                g, b = row[f"beam1{suffix}"], row[f"beam5{suffix}"]
                label = TOOLKITS[name].NAME + VARIANTS[suffix]
                lines.append(
                    f"| {arch} | {label} | {row['steps']:,} | {row['train_peak_mb']:,.0f} "
                    f"| {g['bleu']:.2f} / {b['bleu']:.2f} | {b['chrf']:.2f} | {g['sent_s']:,.0f} / {b['sent_s']:,.0f} "
                    f"| {g['tgt_pieces_s']:,.0f} / {b['tgt_pieces_s']:,.0f} | {g['sent_s'] / b['sent_s']:.1f} "
                    f"| {g['load_s']:.1f} |"
                )
        if all(len(rows) > 1 and all("beam1" in x for x in rows.values()) for rows in r["race"].values()):
            lines += ["", *targets(r)]
    if r.get("best"):
        lines += ["", *best_table(r)]
    return "\n".join(lines)


def best_table(r: dict) -> list[str]:
    """The best-recipe race (issue 15): each toolkit's recipe, its updates and beam-5 BLEU per test split."""
    lines = [
        f"**Each toolkit's best recipe, {r['best_minutes']:g} minutes** (`{'`, then `'.join(r['best_commands'])}`): attnmt's budget "
        "config; each peer's usual recipe (`BEST` in bench/peers/) on the same training data "
        "and pieces, and again on the plain pairs when attnmt's recipe adds joined ones (its better row "
        "counts); beam 5, "
        f"α {BEST_ALPHA:g}, cased sacreBLEU, all references; machine as above, torch's CPU capability "
        f"{r.get('best_cpu_capability', 'not recorded')}.",
        "",
        "| architecture | toolkit | recipe | training data | updates | BLEU tatoeba:test "
        "| BLEU long:tatoeba:test |",
        "|---|---|---|---|---|---|---|",
    ]
    for arch, rows in r["best"].items():
        for key, row in rows.items():
            name, _, plain = key.partition("@")
            if all(stem in row for stem in TESTS):
                data = row.get("data", plain or "not recorded")
                precision = f" ({row['precision']})" if row.get("precision") else ""  # attnmt's choice
                lines.append(
                    f"| {arch} | {TOOLKITS[name].NAME} | {row['recipe']} | `{data}` | {row['steps']:,}{precision} "
                    f"| {row['test']['bleu']:.2f} | {row['test_long']['bleu']:.2f} |"
                )
    lines += [
        "",
        "| target: attnmt ≥ the best peer row + 2 BLEU | tatoeba:test | long:tatoeba:test |",
        "|---|---|---|",
    ]
    for arch, rows in r["best"].items():
        done = {k: row for k, row in rows.items() if all(stem in row for stem in TESTS)}
        peers = {k: row for k, row in done.items() if k.partition("@")[0] != "attnmt"}
        if "attnmt" in done and peers:
            cells = []
            for stem in TESTS:
                best = max(peers, key=lambda k: peers[k][stem]["bleu"])
                gap = done["attnmt"][stem]["bleu"] - peers[best][stem]["bleu"]
                name = TOOLKITS[best.partition("@")[0]].NAME
                cells.append(f"{gap:+.2f} over {name} ({'met' if gap >= 2 else '**not met**'})")
            lines.append(f"| {arch} | {' | '.join(cells)} |")
    return lines


def targets(r: dict) -> list[str]:
    """The issue's targets, each as attnmt's figure against the best peer's, from this invocation."""
    lines = ["**Targets** (attnmt against the better peer in each column).", ""]
    archs = list(r["race"])
    lines += ["| target | " + " | ".join(archs) + " |", "|---|" + "---|" * len(archs)]

    def row(label: str, cell) -> None:
        lines.append(f"| {label} | " + " | ".join(cell(a) for a in archs) + " |")

    def ratio(a: str, value, higher: bool = True) -> tuple[float, float]:
        rows = r["race"][a]
        peers = [value(x) for name, x in rows.items() if name != "attnmt"]
        return value(rows["attnmt"]), (max(peers) if higher else min(peers))

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    def throughput(a: str) -> str:
        rows = r["throughput"][a]
        ours, best = rows["attnmt"]["pieces_s"], max(x["pieces_s"] for n, x in rows.items() if n != "attnmt")
        return f"{ours / best:.2f}× ({verdict(ours >= 1.5 * best)})"

    def speed(beam: int):
        def cell(a: str) -> str:
            ours, best = ratio(a, lambda x: x[f"beam{beam}"]["sent_s"])
            return f"{ours / best:.2f}× ({verdict(ours >= 2 * best)})"

        return cell

    def beam_cost(a: str) -> str:
        b = r["race"][a]["attnmt"]
        cost = b["beam1"]["sent_s"] / b["beam5"]["sent_s"]
        return f"{cost:.1f}× ({verdict(cost <= 5)})"

    def bleu(a: str) -> str:
        ours, best = ratio(a, lambda x: x["beam5"]["bleu"])
        return f"{ours - best:+.2f} ({verdict(ours >= best + 2)})"

    def memory(a: str) -> str:
        ours, lowest = ratio(a, lambda x: x["train_peak_mb"], higher=False)
        return f"{ours:,.0f} vs {lowest:,.0f} MB ({verdict(ours <= lowest)})"

    def best_path(beam: int):
        """attnmt's fastest way to translate (PyTorch, --int8, CTranslate2) at most 0.3 BLEU below its
        fp32 PyTorch path, and its sentences/s ÷ OpenNMT-py's PyTorch path."""

        def cell(a: str) -> str:
            rows = r["race"][a]
            if "opennmt" not in rows:
                return "—"
            ours, key = rows["attnmt"], f"beam{beam}"
            ok = [s for s in VARIANTS if key + s in ours and ours[key + s]["bleu"] >= ours[key]["bleu"] - 0.3]
            best = max(ok, key=lambda s: ours[key + s]["sent_s"])
            times = ours[key + best]["sent_s"] / rows["opennmt"][key]["sent_s"]
            return (
                f"{times:.2f}× with {VARIANTS[best].lstrip(', ') or 'PyTorch fp32'} ({verdict(times >= 2)})"
            )

        return cell

    def pytorch_path(beam: int):
        def cell(a: str) -> str:
            rows = r["race"][a]
            if "opennmt" not in rows:
                return "—"
            times = rows["attnmt"][f"beam{beam}"]["sent_s"] / rows["opennmt"][f"beam{beam}"]["sent_s"]
            return f"{times:.2f}× ({verdict(times >= 1)})"

        return cell

    def same_engine(beam: int):
        def cell(a: str) -> str:
            rows, key = r["race"][a], f"beam{beam}_ct2_int8"
            if "opennmt" not in rows or key not in rows["attnmt"] or key not in rows["opennmt"]:
                return "—"
            times = rows["attnmt"][key]["sent_s"] / rows["opennmt"][key]["sent_s"]
            return f"{times:.2f}×" + (" (a tie)" if abs(times - 1) <= 0.05 else "")

        return cell

    row("training pieces/s ≥ 1.5× the faster peer", throughput)
    row("greedy sentences/s ≥ 2× the faster peer", speed(1))
    row("beam 5 sentences/s ≥ 2× the faster peer", speed(5))
    row("beam 5 costs ≤ 5× greedy per sentence", beam_cost)
    row("BLEU (beam 5) after the equal budget ≥ best peer + 2", bleu)
    row("peak training memory ≤ the lowest peer's", memory)
    for beam, label in ((1, "greedy"), (5, "beam 5")):
        row(f"best CPU path ≥ 2× OpenNMT-py's PyTorch, {label}, ≤ 0.3 BLEU below fp32", best_path(beam))
    for beam, label in ((1, "greedy"), (5, "beam 5")):
        row(f"PyTorch path ≥ 1× OpenNMT-py's PyTorch, {label}", pytorch_path(beam))
    for beam, label in ((1, "greedy"), (5, "beam 5")):
        row(f"same engine: attnmt ÷ OpenNMT-py, both CTranslate2 int8, {label}", same_engine(beam))
    return lines


if __name__ == "__main__":
    main()
