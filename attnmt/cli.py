"""The ``attnmt`` command line: thin entry points over the library.

One builder per command adds its options and ``set_defaults(func=...)``; options several commands take
come from shared parent parsers; ``main`` parses and calls ``args.func``.
"""

import argparse
import contextlib
import json
import math
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple, NoReturn

from attnmt.alignment import hard_alignment, pharaoh
from attnmt.checkpoint import average_checkpoints, checkpoint_dir
from attnmt.completion import Completer
from attnmt.config import Config, config_from_dict, load_config
from attnmt.corpora import data_dir, group_references, load_pairs, read_tsv
from attnmt.device import reuse_freed_memory, select_device
from attnmt.download import DIRECTORIES, download
from attnmt.engine import DecodeOptions, Engine
from attnmt.errors import AttnmtError
from attnmt.export import QUANTIZATIONS, export_ctranslate2, export_onnx
from attnmt.files import atomic_write_text, check_writable_dir
from attnmt.metrics import corpus_scores, scores_by_length
from attnmt.modeldir import load_model, save_model
from attnmt.prepared import ensure_prepared
from attnmt.simulate import Effort, simulate
from attnmt.training import LOG, train


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    reuse_freed_memory()  # faster CPU training and translation (attnmt.device)
    try:
        args.func(args)
    except AttnmtError as e:
        print(f"attnmt: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("attnmt: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `attnmt translate … | head`
        sys.stderr.close()
        return 0
    return 0


class _Parser(argparse.ArgumentParser):
    """A usage mistake on one line, exit code 2: argparse would print the whole usage above it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _integer(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: an integer from ``low`` to ``high`` (no upper bound if None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f"at least {low}" if high is None else f"between {low} and {high}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {text}")
        return value

    return parse


def _number(low: float, high: float = math.inf, *, low_included: bool = True) -> Callable[[str], float]:
    """An argparse ``type``: a finite number from ``low`` (or just above it) up to ``high``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        above_low = value >= low if low_included else value > low
        if not (math.isfinite(value) and above_low and value <= high):
            bounds = f"at least {low:g}" if low_included else f"more than {low:g}"
            bounds += f" and at most {high:g}" if math.isfinite(high) else ""
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {text}")
        return value

    return parse


POSITIVE = _integer(1)
PORT = _integer(1, 65535)
SEED = _integer(0, 2**32 - 1)


class _Shared(NamedTuple):
    """Options several commands take, as argparse parent parsers."""

    device: argparse.ArgumentParser
    decoding: argparse.ArgumentParser  # --beam, --alpha: translate, evaluate, attention
    batch_size: argparse.ArgumentParser  # --batch-size: those and score
    int8: argparse.ArgumentParser
    data_dir: argparse.ArgumentParser
    picture_format: argparse.ArgumentParser  # --format of the heatmaps in a directory: attention, score
    experiment: argparse.ArgumentParser  # CONFIG and --set: prepare, train


def _shared_options() -> _Shared:
    device, decoding, batch_size, int8, data_dir, picture_format, experiment = (
        _Parser(add_help=False) for _ in range(7)
    )
    device.add_argument(
        "--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda[:N], mps"
    )
    defaults = DecodeOptions()
    decoding.add_argument(
        "--beam",
        type=POSITIVE,
        default=defaults.beam_size,
        help=f"beam size; 1 is greedy search (default {defaults.beam_size})",
    )
    decoding.add_argument(
        "--alpha",
        type=_number(0),
        default=defaults.alpha,
        help=f"GNMT length penalty; 0 ranks by log p (default {defaults.alpha:g})",
    )
    batch_size.add_argument(
        "--batch-size", type=POSITIVE, default=64, help="sentences per model call (default 64)"
    )
    int8.add_argument(
        "--int8",
        action="store_true",
        help="int8 linear and GRU layers (dynamic quantisation): faster on CPUs",
    )
    data_dir.add_argument("--data-dir", type=Path, help="where corpora live (default: $ATTNMT_DATA)")
    picture_format.add_argument(
        "--format", choices=("png", "svg", "pdf"), default="png", help="pictures in a directory"
    )
    experiment.add_argument(
        "config", type=Path, nargs="?", help="experiment YAML (default: the toy demo setup)"
    )
    experiment.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.epochs=10 (repeatable)",
    )
    return _Shared(device, decoding, batch_size, int8, data_dir, picture_format, experiment)


def build_parser() -> argparse.ArgumentParser:
    """The ``attnmt`` parser: one subcommand per builder below, each with ``func`` to run it."""
    parser = _Parser(prog="attnmt", description="Neural machine translation with attention.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    shared = _shared_options()
    for add_command in (
        _add_demo,
        _add_prepare,
        _add_train,
        _add_translate,
        _add_score,
        _add_evaluate,
        _add_attention,
        _add_download,
        _add_curves,
        _add_average,
        _add_export,
        _add_serve,
        _add_simulate,
    ):
        add_command(commands, shared)
    return parser


def _add_demo(commands: argparse._SubParsersAction, shared: _Shared) -> None:
    demo = commands.add_parser(
        "demo", help="run the eight steps on the built-in set and translate 'We are happy'"
    )
    demo.add_argument("--seed", type=SEED, default=0)
    demo.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("attnmt-demo-attention.png"),
        help="where to save the attention heatmap (.png, .svg or .pdf)",
    )
    demo.set_defaults(func=_demo)


def _add_prepare(commands: argparse._SubParsersAction, shared: _Shared) -> None:
    prepare = commands.add_parser(
        "prepare",
        parents=[shared.experiment, shared.data_dir],
        help="clean, tokenise and encode the training data once, into memory-mapped arrays",
    )
    prepare.add_argument("--out", type=Path, help="where to write (default: data.prepared)")
    prepare.add_argument("--workers", type=POSITIVE, help="worker processes (default: one per CPU)")
    prepare.set_defaults(func=_prepare)


def _add_train(commands: argparse._SubParsersAction, shared: _Shared) -> None:
    train = commands.add_parser(
        "train",
        parents=[shared.experiment, shared.data_dir],
        help="train a model and save it as a model directory",
    )
    train.add_argument("--model-dir", type=Path, required=True, help="where to save the trained model")
    train.add_argument(
        "--resume", action="store_true", help="continue from the newest checkpoint in --model-dir"
    )
    train.add_argument("--overwrite", action="store_true", help="replace a model already in --model-dir")
    train.add_argument("--quiet", action="store_true", help="no progress output")
    train.set_defaults(func=_train)


def _add_translate(commands: argparse._SubParsersAction, shared: _Shared) -> None:
    translate = commands.add_parser(
        "translate",
        parents=[shared.decoding, shared.batch_size, shared.int8, shared.device],
        help="translate --text or stdin, one sentence per line",
    )
    translate.add_argument("model_dir", type=Path)
    translate.add_argument("--text", action="append", help="a sentence to translate (repeatable)")
    translate.add_argument(
        "--n-best",
        type=POSITIVE,
        default=DecodeOptions().n_best,
        help="print the N best: sentence number, log p, translation (TSV)",
    )
    translate.add_argument(
        "--replace-unk",
        action="store_true",
        help="replace each <unk> by the source word it attends to most (Luong et al. 2015)",
    )
    translate.add_argument(
        "--dictionary",
        type=Path,
        help="with --replace-unk: a source<TAB>target word list to translate that word",
    )
    translate.add_argument(
        "--prefix",
        metavar="TEXT",
        help="every translation begins with TEXT (target words); search continues it",
    )
    translate.add_argument(
        "--tsv",
        action="store_true",
        help="input lines are source<TAB>prefix: each translation begins with its prefix",
    )
    translate.set_defaults(func=_translate)


def _add_score(commands: argparse._SubParsersAction, shared: _Shared) -> None:
    score = commands.add_parser(
        "score",
        parents=[shared.batch_size, shared.int8, shared.device, shared.picture_format],
        help="how probable a model finds given translations: total log p, log p per token, tokens (TSV)",
    )
    score.add_argument("model_dir", type=Path)
    score.add_argument(
        "--input", type=Path, metavar="FILE", help="source<TAB>translation lines (default: stdin)"
    )
    score.add_argument(
        "--attention",
        type=Path,
        metavar="DIR",
        help="draw the attention behind each translation into DIR, one picture per line",
    )
    score.set_defaults(func=_score)


def _add_evaluate(commands: argparse._SubParsersAction, shared: _Shared) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        parents=[shared.decoding, shared.batch_size, shared.int8, shared.device, shared.data_dir],
        help="BLEU and chrF of a model on a test set",
    )
    evaluate.add_argument("model_dirs", type=Path, nargs="+", metavar="MODEL_DIR")
    evaluate.add_argument(
        "--data", help="data spec, e.g. tatoeba:test or src.txt,ref.txt (default: data.test)"
    )
    evaluate.add_argument("-o", "--output", type=Path, help="write the translations here, one per line")
    evaluate.add_argument(
        "--by-length",
        action="store_true",
        help="also BLEU/chrF per source-length bucket, with 95%% bootstrap intervals",
    )
    evaluate.add_argument("--plot", type=Path, help="with --by-length: draw BLEU against length, all models")
    evaluate.set_defaults(func=_evaluate)


def _add_attention(commands: argparse._SubParsersAction, shared: _Shared) -> None:
    attention = commands.add_parser(
        "attention",
        parents=[shared.decoding, shared.batch_size, shared.device, shared.picture_format],
        help="draw attention heatmaps and print word alignments (translation<TAB>i-j pairs)",
    )
    attention.add_argument("model_dir", type=Path)
    attention.add_argument("--text", action="append", help="a sentence (repeatable; default: stdin lines)")
    attention.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="a .png/.svg/.pdf for one sentence; a directory for several, one picture each",
    )
    attention.add_argument(
        "--threshold",
        type=_number(0, 1, low_included=False),
        help="align every source token with at least this weight (default: the most attended)",
    )
    attention.add_argument(
        "--kind",
        choices=("cross", "encoder", "decoder"),
        default="cross",
        help="cross: target over source (default); encoder/decoder: Transformer self-attention",
    )
    attention.add_argument("--layer", type=POSITIVE, help="which layer, from 1 (default: the last)")
    attention.add_argument(
        "--head", type=POSITIVE, help="which head, from 1 (default: the average of all heads)"
    )
    attention.set_defaults(func=_attention)


def _add_download(commands: argparse._SubParsersAction, shared: _Shared) -> None:
    download = commands.add_parser(
        "download",
        parents=[shared.data_dir],
        help="fetch a public corpus (tatoeba, multi30k) into the data directory",
    )
    download.add_argument("corpus", choices=("tatoeba", "multi30k"))
    download.add_argument("--sha256", help="the archive's expected SHA-256 (tatoeba; multi30k's are pinned)")
    download.add_argument("--mirror", help="a URL or file:// directory holding the same files")
    download.set_defaults(func=_download)


def _add_curves(commands: argparse._SubParsersAction, shared: _Shared) -> None:
    curves = commands.add_parser("curves", help="plot dev loss and BLEU against training time for runs")
    curves.add_argument("model_dirs", type=Path, nargs="+", metavar="MODEL_DIR")
    curves.add_argument(
        "-o", "--output", type=Path, required=True, help="picture to write (.png, .svg, .pdf)"
    )
    curves.set_defaults(func=_curves)


def _add_average(commands: argparse._SubParsersAction, shared: _Shared) -> None:
    average = commands.add_parser(
        "average", help="a new model directory whose weights average a run's last checkpoints"
    )
    average.add_argument("model_dir", type=Path)
    average.add_argument(
        "--last", type=POSITIVE, default=5, help="how many of the newest checkpoints (default 5)"
    )
    average.add_argument("-o", "--output", type=Path, required=True, help="the new model directory")
    average.set_defaults(func=_average)


def _add_export(commands: argparse._SubParsersAction, shared: _Shared) -> None:
    export = commands.add_parser(
        "export",
        help="a model for another engine: CTranslate2 or ONNX Runtime (translate, evaluate, serve run it), "
        "or a static web page that translates offline",
    )
    export.add_argument("model_dir", type=Path)
    export.add_argument(
        "--to",
        choices=("ctranslate2", "onnx", "web"),
        required=True,
        help="ctranslate2 (a Transformer), onnx (any model), web (any model: an ONNX export with a page "
        "that runs it in the browser)",
    )
    export.add_argument("-o", "--output", type=Path, required=True, help="the new model directory")
    export.add_argument(
        "--quantization",
        choices=QUANTIZATIONS,
        default="float32",
        help="how the weights are stored and computed (default float32; int8: fastest on CPUs, the "
        "smallest; onnx and web: float32 or int8)",
    )
    export.set_defaults(func=_export)


def _add_serve(commands: argparse._SubParsersAction, shared: _Shared) -> None:
    serve = commands.add_parser(
        "serve", parents=[shared.device], help="translate over HTTP, with a web page to explore attention"
    )
    serve.add_argument(
        "models",
        nargs="+",
        metavar="[NAME=]MODEL_DIR",
        help="models to load, named after their directory unless NAME= is given; the first is the default",
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    serve.add_argument("--port", type=PORT, default=8000)
    serve.add_argument(
        "--max-batch", type=POSITIVE, default=64, help="sentences per model call; 1 turns batching off"
    )
    serve.add_argument(
        "--batch-window-ms",
        type=_number(0),
        default=5.0,
        help="how long a batch waits for more requests to join it",
    )
    serve.add_argument(
        "--timeout",
        type=_number(0, low_included=False),
        default=60.0,
        help="seconds a request may wait for its answer",
    )
    serve.add_argument("--max-sentences", type=POSITIVE, default=64, help="sentences per request")
    serve.add_argument("--max-chars", type=POSITIVE, default=1000, help="characters per sentence")
    serve.set_defaults(func=_serve)


def _add_simulate(commands: argparse._SubParsersAction, shared: _Shared) -> None:
    simulate = commands.add_parser(
        "simulate",
        parents=[shared.int8, shared.device, shared.data_dir],
        help="a simulated translator types references with the model's proposals: keystrokes saved",
    )
    simulate.add_argument("model_dir", type=Path)
    simulate.add_argument(
        "--data",
        action="append",
        help="data spec to simulate on, e.g. tatoeba:test (repeatable; default: data.test)",
    )
    simulate.add_argument("--beam", type=POSITIVE, default=1, help="beam size of the proposals (default 1)")
    simulate.add_argument(
        "--alpha", type=_number(0), default=DecodeOptions().alpha, help="GNMT length penalty"
    )
    simulate.add_argument(
        "--top-k",
        type=_integer(0),
        default=5,
        help="alternatives the translator may pick a word from (default 5; 0: none)",
    )
    simulate.add_argument("--limit", type=POSITIVE, help="the first N sentences of each data set")
    simulate.add_argument(
        "--no-reuse",
        action="store_true",
        help="decode every proposal from scratch (to measure what reuse saves)",
    )
    simulate.add_argument("--json", type=Path, metavar="FILE", help="also write the results here")
    simulate.set_defaults(func=_simulate)


def _demo(args: argparse.Namespace) -> None:
    from attnmt.demo import run_demo

    if args.output.suffix.lower() not in (".png", ".svg", ".pdf") or not args.output.parent.is_dir():
        raise AttnmtError(f"{args.output}: expected a .png, .svg or .pdf path in an existing directory")
    run_demo(seed=args.seed, heatmap=args.output)


def _experiment_config(args: argparse.Namespace) -> Config:
    """The config of ``prepare`` and ``train``: CONFIG (or the toy demo setup) with the --set overrides."""
    if args.config is None:
        return config_from_dict({}, args.overrides, source="--set")
    return load_config(args.config, args.overrides)


def _prepare(args: argparse.Namespace) -> None:
    config = _experiment_config(args)
    directory = args.out or (Path(config.data.prepared) if config.data.prepared else None)
    if directory is None:
        raise AttnmtError(
            "data.prepared: not set; set it (attnmt train then reads from there) or give --out DIR"
        )
    say = lambda text: print(text, file=sys.stderr)  # noqa: E731
    manifest = ensure_prepared(directory, config.data, root=args.data_dir, workers=args.workers, say=say)
    say(f"{manifest['pairs']:,} pairs in {directory}")


def _train(args: argparse.Namespace) -> None:
    config = _experiment_config(args)
    if args.model_dir.exists() and not args.model_dir.is_dir():
        raise AttnmtError(f"{args.model_dir}: exists and is not a directory")
    if args.model_dir.is_dir() and any(args.model_dir.iterdir()) and not (args.overwrite or args.resume):
        raise AttnmtError(f"{args.model_dir}: not empty; choose another --model-dir, --resume or --overwrite")
    check_writable_dir(args.model_dir)  # fail now, not after training, if the model cannot be saved there
    if args.overwrite and not args.resume:
        shutil.rmtree(checkpoint_dir(args.model_dir), ignore_errors=True)
    train(
        config, model_dir=args.model_dir, resume=args.resume, progress=not args.quiet, data_root=args.data_dir
    )
    if not args.quiet:
        print(f"saved model to {args.model_dir}", file=sys.stderr)


def _load(args: argparse.Namespace, model_dir: Path | None = None) -> Engine:
    """The model directory an ``args`` names (or ``model_dir``), on ``--device``, in int8 with ``--int8``."""
    select_device(args.device, source="--device")  # a mistaken --device is said before loading
    engine = load_model(model_dir or args.model_dir)
    engine.place(args.device, int8=getattr(args, "int8", False))
    return engine


def _decode_options(args: argparse.Namespace) -> DecodeOptions:
    """--beam, --alpha and (translate's) --n-best, checked together."""
    return DecodeOptions(
        beam_size=args.beam, alpha=args.alpha, n_best=getattr(args, "n_best", DecodeOptions.n_best)
    )


def _translate(args: argparse.Namespace) -> None:
    dictionary = None
    if args.dictionary is not None:
        if not args.replace_unk:
            raise AttnmtError("--dictionary: only used with --replace-unk")
        dictionary = dict(read_tsv(args.dictionary))
    if args.prefix is not None and args.tsv:
        raise AttnmtError("--prefix: not with --tsv, whose lines carry their own prefixes")
    translator = _load(args)
    if args.replace_unk and not translator.has_attention:
        raise AttnmtError(f"--replace-unk: {args.model_dir} has no attention to find the source word with")
    chunks = [args.text] if args.text is not None else _read_lines(sys.stdin.buffer, 16 * args.batch_size)
    where = "--text" if args.text is not None else "stdin line"
    options = _decode_options(args)
    number = 0
    for chunk in chunks:
        prefix = None if args.prefix is None else [args.prefix] * len(chunk)
        if args.tsv:
            chunk, prefix = _split_tsv(chunk, where, number + 1, "source<TAB>prefix")
        lines = []
        for n_best in translator.translate_n_best(chunk, options, batch_size=args.batch_size, prefix=prefix):
            if args.replace_unk:
                n_best = [translator.replace_unknowns(t, dictionary) for t in n_best]
            if args.n_best == 1:
                lines.append(n_best[0].text + "\n")
            else:
                lines.extend(f"{number}\t{t.score:.4f}\t{t.text}\n" for t in n_best)
            number += 1
        sys.stdout.write("".join(lines))
        sys.stdout.flush()


def _score(args: argparse.Namespace) -> None:
    from attnmt.plotting import plot_attention

    if args.attention is not None:
        _picture_dir(args.attention)
    translator = _load(args)
    if args.attention is not None:
        _require_attention(translator, args.model_dir)
    with contextlib.ExitStack() as stack:
        if args.input is None:
            stream, where = sys.stdin.buffer, "stdin line"
        else:
            try:
                stream, where = stack.enter_context(args.input.open("rb")), f"{args.input} line"
            except OSError as e:
                raise AttnmtError(f"--input {args.input}: cannot read it ({e.strerror})") from None
        number = 0
        for chunk in _read_lines(stream, 16 * args.batch_size, where):
            sources, targets = _split_tsv(chunk, where, number + 1, "source<TAB>translation")
            lines = []
            for s in translator.score(sources, targets, batch_size=args.batch_size):
                number += 1
                log_probs = " ".join(f"{p:.4f}" for p in s.log_probs)
                lines.append(f"{s.total:.4f}\t{log_probs}\t{' '.join(s.tokens)}\n")
                if args.attention is not None:
                    path = _picture_path(args.attention, "pair", number, args.format)
                    plot_attention(s.attention, s.src_tokens, s.tokens, path)
            sys.stdout.write("".join(lines))
            sys.stdout.flush()


def _split_tsv(lines: list[str], where: str, first: int, columns: str) -> tuple[list[str], list[str]]:
    """Lines of two TAB-separated columns as two lists; ``where`` and ``first`` name the lines in errors."""
    left, right = [], []
    for number, line in enumerate(lines, first):
        fields = line.split("\t")
        if len(fields) != 2:
            raise AttnmtError(f"{where} {number}: expected {columns}, one TAB; found {len(fields) - 1}")
        left.append(fields[0])
        right.append(fields[1])
    return left, right


def _picture_dir(directory: Path) -> None:
    """Make the directory heatmaps go into, or say why not."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AttnmtError(f"{directory}: cannot make the directory ({e.strerror})") from None


def _picture_path(directory: Path, stem: str, number: int, suffix: str) -> Path:
    """The ``number``-th heatmap in ``directory``: stem-0001.png, …"""
    return directory / f"{stem}-{number:04d}.{suffix}"


def _require_attention(translator: Engine, model_dir: Path) -> None:
    if not translator.has_attention:
        raise AttnmtError(f"{model_dir}: this model has no attention to draw")


def _evaluate(args: argparse.Namespace) -> None:
    if args.output is not None and len(args.model_dirs) > 1:
        raise AttnmtError("-o/--output: one model at a time (the translations of one model)")
    if args.plot is not None and not args.by_length:
        raise AttnmtError("--plot: draws the --by-length scores; add --by-length")
    options = _decode_options(args)
    by_length = {}
    for model_dir in args.model_dirs:
        translator = _load(args, model_dir)
        data = translator.config.data
        spec = args.data or data.test
        if spec is None:
            raise AttnmtError(f"--data: no test set given and {model_dir}'s config has no data.test")
        pairs = load_pairs(spec, src_lang=data.src_lang, tgt_lang=data.tgt_lang, root=args.data_dir)
        sources, references = group_references(pairs)
        hypotheses = [t.text for t in translator.translate(sources, options, batch_size=args.batch_size)]
        if args.output is not None:
            atomic_write_text(args.output, "".join(h + "\n" for h in hypotheses))
        scores = corpus_scores(hypotheses, references)
        print(f"{model_dir} on {spec}: {len(sources):,} sentences, {len(pairs):,} references")
        print(f"BLEU {scores.bleu:.2f}  {scores.bleu_signature}")
        print(f"chrF {scores.chrf:.2f}  {scores.chrf_signature}")
        if args.by_length:
            by_length[str(model_dir)] = buckets = scores_by_length(sources, hypotheses, references)
            print(f"{'words':>8} {'sentences':>9} {'BLEU':>6} {'95% CI':>8} {'chrF':>6}")
            for b in buckets:
                print(
                    f"{b.label:>8} {b.sentences:>9,} {b.bleu:>6.2f} {'±' + format(b.bleu_ci, '.2f'):>8} {b.chrf:>6.2f}"
                )
    if args.plot is not None:
        from attnmt.plotting import plot_bleu_by_length

        plot_bleu_by_length(by_length, args.plot)


def _attention(args: argparse.Namespace) -> None:
    from attnmt.plotting import plot_attention

    sentences = (
        args.text
        if args.text is not None
        else [line for chunk in _read_lines(sys.stdin.buffer, 1024) for line in chunk]
    )
    one_file = args.output.suffix.lower() in (".png", ".svg", ".pdf")
    if one_file and len(sentences) != 1:
        raise AttnmtError(f"{args.output}: {len(sentences)} sentences need a directory, one picture each")
    if not one_file:
        _picture_dir(args.output)
    translator = _load(args)
    _require_attention(translator, args.model_dir)
    translations = translator.translate(sentences, _decode_options(args), batch_size=args.batch_size)
    for number, t in enumerate(translations, 1):
        if not t.tokens:  # an empty line
            print("")
            continue
        maps = translator.attention_maps(t)
        if args.kind not in maps:
            raise AttnmtError(f"--kind {args.kind}: {args.model_dir} has only {', '.join(maps)} attention")
        weights = _pick_layer_and_head(maps[args.kind], args, translator.config)
        rows, columns = {
            "cross": (t.tokens, t.src_tokens),
            "encoder": (t.src_tokens, t.src_tokens),
            "decoder": (t.tokens, ["<sos>", *t.tokens[:-1]]),
        }[args.kind]
        path = args.output if one_file else _picture_path(args.output, "sentence", number, args.format)
        plot_attention(weights, columns, rows, path)
        alignment = f"\t{pharaoh(hard_alignment(weights, args.threshold))}" if args.kind == "cross" else ""
        print(t.text + alignment)


def _pick_layer_and_head(weights, args: argparse.Namespace, config: Config):
    """(layers, heads, T, S) → one (T, S) matrix: ``--layer`` and ``--head`` counted from 1; no head, their
    mean.  An export of a Transformer gives one matrix, its last layer's heads averaged: no choice."""
    layer, head = args.layer, args.head
    layers, heads = weights.shape[:2]
    averaged = config.model.architecture == "transformer" and config.model.layers * config.model.heads > 1
    if (layer or head) and averaged and (layers, heads) == (1, 1):
        raise AttnmtError(
            f"--{'layer' if layer else 'head'}: {args.model_dir} returns only the last layer's cross-attention "
            "averaged over its heads (an export)"
        )
    if layer is not None and not 1 <= layer <= layers:
        raise AttnmtError(f"--layer {layer}: the model has {layers} layer(s), numbered from 1")
    if head is not None and not 1 <= head <= heads:
        raise AttnmtError(f"--head {head}: the model has {heads} head(s) per layer, numbered from 1")
    chosen = weights[layers - 1 if layer is None else layer - 1]
    return chosen.mean(0) if head is None else chosen[head - 1]


def _average(args: argparse.Namespace) -> None:
    if args.output.exists() and (not args.output.is_dir() or any(args.output.iterdir())):
        raise AttnmtError(f"{args.output}: exists and is not empty; choose a new directory")
    translator = load_model(args.model_dir)
    if translator.model is None:
        raise AttnmtError(f"{args.model_dir}: a CTranslate2 export; average the model it was exported from")
    translator.model.load_state_dict(average_checkpoints(args.model_dir, args.last))
    save_model(translator, args.output)
    print(f"{args.output}: the mean of the last {args.last} checkpoints of {args.model_dir}")


def _serve(args: argparse.Namespace) -> None:
    from attnmt.server import Limits, serve

    models = {}
    for spec in args.models:
        name, sep, path = spec.rpartition("=")
        model_dir = Path(path)
        name = name if sep else model_dir.resolve().name
        if not name or name in models:
            raise AttnmtError(
                f"{spec}: {'an empty' if not name else 'a second'} model name {name!r}; use NAME=MODEL_DIR"
            )
        models[name] = _load(args, model_dir)
    limits = Limits(
        max_sentences=args.max_sentences,
        max_chars=args.max_chars,
        timeout=args.timeout,
        max_batch=args.max_batch,
        batch_window=args.batch_window_ms / 1000,
    )
    print(
        f"attnmt: serving {', '.join(models)} on http://{args.host}:{args.port}/", file=sys.stderr, flush=True
    )
    serve(models, args.host, args.port, limits)


def _simulate(args: argparse.Namespace) -> None:
    translator = _load(args)
    if translator.model is None:
        raise AttnmtError(
            f"{args.model_dir}: a CTranslate2 export cannot complete typed text; simulate the model"
        )
    options = DecodeOptions(beam_size=args.beam, alpha=args.alpha)
    data = translator.config.data
    specs = args.data or ([data.test] if data.test else [])
    if not specs:
        raise AttnmtError(f"--data: no data set given and {args.model_dir}'s config has no data.test")
    completer = Completer(translator, max_sources=1, reuse=not args.no_reuse)
    results, overall = {}, Effort()
    print(
        "data  sentences  keystroke-ratio  mouse-action-ratio  KSMR  next-word  unedited  post-edit  "
        "latency-p50/p95/max-ms  proposal/fresh  keystroke/fresh"
    )
    for spec in specs:
        pairs = load_pairs(spec, src_lang=data.src_lang, tgt_lang=data.tgt_lang, root=args.data_dir)
        sources, references = group_references(pairs)
        effort = Effort()
        for source, refs in list(zip(sources, references, strict=True))[: args.limit]:
            effort.add(simulate(completer, source, refs[0], options, args.top_k))  # the first reference
        overall.add(effort)
        results[spec] = effort.summary()
        print(_effort_line(spec, results[spec]), flush=True)
    if len(specs) > 1:
        results["overall"] = overall.summary()
        print(_effort_line("overall", results["overall"]))
    if args.json is not None:
        atomic_write_text(args.json, json.dumps(results, indent=1) + "\n")


def _effort_line(name: str, r: dict[str, float]) -> str:
    return (
        f"{name}  {r['sentences']}  {r['keystroke_ratio']:.3f}  {r['mouse_action_ratio']:.3f}  {r['ksmr']:.3f}  "
        f"{r['next_word_accuracy']:.1%}  {r['unedited']:.1%}  {r['post_edit_rate']:.3f}  "
        f"{r['latency_p50_ms']:.1f}/{r['latency_p95_ms']:.1f}/{r['latency_max_ms']:.1f}  "
        f"{r['proposal_vs_fresh']:.2f}  {r['keystroke_vs_fresh']:.2f}"
    )


def _export(args: argparse.Namespace) -> None:
    if args.to in ("onnx", "web"):
        export_onnx(args.model_dir, args.output, args.quantization, site=args.to == "web")
    else:
        export_ctranslate2(args.model_dir, args.output, args.quantization)
    print(f"{args.output}: {args.model_dir} for {args.to}, weights {args.quantization}", file=sys.stderr)


def _download(args: argparse.Namespace) -> None:
    root = data_dir(args.data_dir)
    if (root / DIRECTORIES[args.corpus]).exists():
        print(f"{args.corpus}: already in {root / DIRECTORIES[args.corpus]}", file=sys.stderr)
        return
    target = download(args.corpus, root, mirror=args.mirror, expected_sha256=args.sha256)
    print(f"{args.corpus}: saved to {target}", file=sys.stderr)


def _curves(args: argparse.Namespace) -> None:
    from attnmt.plotting import plot_curves

    logs = {}
    for model_dir in args.model_dirs:
        path = model_dir / LOG
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
            logs[model_dir.name] = [json.loads(line) for line in lines if line.strip()]
        except FileNotFoundError:
            raise AttnmtError(f"{path}: no training log (train a model there first)") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise AttnmtError(f"{path}: unreadable training log ({e})") from None
    plot_curves(logs, args.output)


def _read_lines(stream: BinaryIO, chunk_size: int, where: str = "stdin line") -> Iterator[list[str]]:
    """UTF-8 lines from ``stream`` in chunks, so memory stays flat on long inputs; ``where`` names a
    line in errors."""
    chunk: list[str] = []
    for number, raw in enumerate(stream, 1):
        try:
            chunk.append(raw.decode("utf-8").rstrip("\r\n"))
        except UnicodeDecodeError:
            raise AttnmtError(f"{where} {number}: not valid UTF-8") from None
        if len(chunk) == chunk_size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


if __name__ == "__main__":
    sys.exit(main())
