"""The ``attnmt`` command line: thin entry points over the library."""

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from attnmt.errors import AttnmtError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="attnmt", description="Neural machine translation with attention.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="run the eight steps on the built-in set and translate 'We are happy'"
    )
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("-o", "--output", type=Path, default=Path("attnmt-demo-attention.png"),
                      help="where to save the attention heatmap (.png, .svg or .pdf)")  # fmt: skip

    train = commands.add_parser("train", help="train a model and save it as a model directory")
    train.add_argument("config", type=Path, nargs="?", help="experiment YAML (default: the toy demo setup)")
    train.add_argument("--model-dir", type=Path, required=True, help="where to save the trained model")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key, e.g. --set train.epochs=10 (repeatable)")  # fmt: skip
    train.add_argument("--overwrite", action="store_true", help="replace a model already in --model-dir")
    train.add_argument("--quiet", action="store_true", help="no progress output")

    translate = commands.add_parser("translate", help="translate --text or stdin, one sentence per line")
    translate.add_argument("model_dir", type=Path)
    translate.add_argument("--text", action="append", help="a sentence to translate (repeatable)")
    translate.add_argument("--batch-size", type=int, default=64)

    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            from attnmt.demo import run_demo

            run_demo(seed=args.seed, heatmap=args.output)
        elif args.command == "train":
            _train(args)
        else:
            _translate(args)
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


def _train(args: argparse.Namespace) -> None:
    from attnmt.config import config_from_dict, load_config
    from attnmt.training import train

    if args.config is None:
        config = config_from_dict({}, args.overrides, source="--set")
    else:
        config = load_config(args.config, args.overrides)
    if args.model_dir.exists() and not args.model_dir.is_dir():
        raise AttnmtError(f"{args.model_dir}: exists and is not a directory")
    if args.model_dir.is_dir() and any(args.model_dir.iterdir()) and not args.overwrite:
        raise AttnmtError(f"{args.model_dir}: not empty; choose another --model-dir or pass --overwrite")
    train(config, model_dir=args.model_dir, progress=not args.quiet)
    if not args.quiet:
        print(f"saved model to {args.model_dir}", file=sys.stderr)


def _translate(args: argparse.Namespace) -> None:
    from attnmt.modeldir import load_model

    if args.batch_size < 1:
        raise AttnmtError("--batch-size: must be at least 1")
    translator = load_model(args.model_dir)
    if args.text is not None:
        for translation in translator.translate(args.text, batch_size=args.batch_size):
            print(translation.text)
        return
    for chunk in _read_lines(sys.stdin.buffer, chunk_size=16 * args.batch_size):
        translations = translator.translate(chunk, batch_size=args.batch_size)
        sys.stdout.write("".join(t.text + "\n" for t in translations))
        sys.stdout.flush()


def _read_lines(stream: BinaryIO, chunk_size: int) -> Iterator[list[str]]:
    """UTF-8 lines from ``stream`` in chunks, so memory stays flat on long inputs."""
    chunk: list[str] = []
    for number, raw in enumerate(stream, 1):
        try:
            chunk.append(raw.decode("utf-8").rstrip("\r\n"))
        except UnicodeDecodeError:
            raise AttnmtError(f"stdin line {number}: not valid UTF-8") from None
        if len(chunk) == chunk_size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


if __name__ == "__main__":
    sys.exit(main())
