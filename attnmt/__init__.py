"""attnmt: neural machine translation built around attention (English → French by default).

The eight steps, each a name you can import:

1. data — :class:`TranslationDataset`, :class:`Vocabulary`
2. :class:`Encoder`        3. :class:`Attention`        4. :class:`Decoder`
5. :class:`EncoderDecoderAttention`        6. :func:`train`
7. :func:`translate_sentence` → :class:`Translation`        8. translate "We are happy"
"""

from attnmt.attention import Attention
from attnmt.completion import Completer, Completion
from attnmt.config import Config, load_config
from attnmt.data import TranslationDataset
from attnmt.decoders import Decoder
from attnmt.encoders import Encoder
from attnmt.engine import DecodeOptions, Engine, Score, Translation
from attnmt.errors import AttnmtError
from attnmt.model import EncoderDecoderAttention
from attnmt.modeldir import load_model, save_model
from attnmt.training import train
from attnmt.transformer import Transformer
from attnmt.translator import Translator, translate_sentence
from attnmt.vocab import Vocabulary

__version__ = "0.1.0"
__all__ = [
    "Attention",
    "AttnmtError",
    "Completer",
    "Completion",
    "Config",
    "DecodeOptions",
    "Decoder",
    "Encoder",
    "EncoderDecoderAttention",
    "Engine",
    "Score",
    "Transformer",
    "Translation",
    "TranslationDataset",
    "Translator",
    "Vocabulary",
    "load_config",
    "load_model",
    "save_model",
    "train",
    "translate_sentence",
]
