"""Translate a file of space-separated pieces with a CTranslate2 model directory, one line per line:
how OpenNMT-py models are deployed (``ct2-opennmt-py-converter``, then ``ctranslate2.Translator``).

Run by ``bench/compare.py`` with the peer's own Python (its venv installs ctranslate2 with OpenNMT-py);
it imports nothing of attnmt.  Threads: ``OMP_NUM_THREADS``, as the harness sets for every toolkit.

    python bench/peers/ctranslate2_translate.py MODEL_DIR --src test.en --output out.txt --beam 5
"""

import argparse
import os

import ctranslate2


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model_dir")
    parser.add_argument("--src", required=True, help="space-separated pieces, one sentence per line")
    parser.add_argument("--output", required=True)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64, help="sentences per batch")
    parser.add_argument("--max-length", type=int, default=250, help="most output pieces (onmt_translate's)")
    parser.add_argument("--length-penalty", type=float, default=1.0,
                        help="CTranslate2's: log p / length^α (it has no GNMT penalty)")  # fmt: skip
    args = parser.parse_args()
    threads = int(os.environ.get("OMP_NUM_THREADS", "0"))
    translator = ctranslate2.Translator(args.model_dir, device="cpu", intra_threads=threads)
    translator.translate_file(
        args.src, args.output, max_batch_size=args.batch_size, beam_size=args.beam,
        length_penalty=args.length_penalty, max_decoding_length=args.max_length,
    )  # fmt: skip


if __name__ == "__main__":
    main()
