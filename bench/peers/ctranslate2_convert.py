"""Convert an OpenNMT-py checkpoint to a CTranslate2 model directory with CTranslate2's own converter
(``ctranslate2.converters.OpenNMTPyConverter``, what ``ct2-opennmt-py-converter`` runs).

Run by ``bench/compare.py`` with the peer's own Python.  OpenNMT-py 3.5.1 checkpoints pickle an
``argparse.Namespace``, which torch's safe loading refuses: newer CTranslate2 releases take
``unsafe_deserialization`` for that (and pass ``weights_only`` explicitly, which the environment variable
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` cannot override); older ones honour that variable.  OpenNMT-py 3.5
records its Transformers' attention as ``self_attn_type: scaled-dot-flash`` (the same attention, computed
by torch's fused kernel), a name CTranslate2's converter refuses: a copy of the checkpoint says
``scaled-dot`` instead.

    python bench/peers/ctranslate2_convert.py CHECKPOINT.pt OUTPUT_DIR int8
"""

import inspect
import os
import sys
import tempfile

import torch
from ctranslate2.converters import OpenNMTPyConverter


def main() -> None:
    checkpoint, output_dir, quantization = sys.argv[1:]
    os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"  # for releases without unsafe_deserialization
    unsafe = "unsafe_deserialization" in inspect.signature(OpenNMTPyConverter).parameters
    with tempfile.TemporaryDirectory() as tmp:
        loaded = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if getattr(loaded["opt"], "self_attn_type", None) == "scaled-dot-flash":
            loaded["opt"].self_attn_type = "scaled-dot"
            checkpoint = os.path.join(tmp, "checkpoint.pt")
            torch.save(loaded, checkpoint)
        converter = OpenNMTPyConverter(checkpoint, **({"unsafe_deserialization": True} if unsafe else {}))
        converter.convert(output_dir, quantization=quantization, force=True)


if __name__ == "__main__":
    main()
