"""Word tokenization that keeps case and splits punctuation and French elision.

    >>> tokenize("J'aime l'école, qu'il pleuve !")
    ["J'", 'aime', "l'", 'école', ',', "qu'", 'il', 'pleuve', '!']
    >>> detokenize(_, "fr")
    "J'aime l'école, qu'il pleuve !"

The rules are language-independent except for spacing around punctuation when joining (French puts a
space before ``? ! : ;``), so any source/target direction works.  Every token that ``tokenize`` returns
is one of: an elided clitic (``l'``, ``qu'``, ``jusqu'`` ...) that is always followed by a word; a
number such as ``3.5``; a word, possibly with inner hyphens or apostrophes (``peut-être``,
``aujourd'hui``, ``don't``); or a single punctuation/symbol character.  Because only a clitic is ever
glued to the next word, ``tokenize(detokenize(tokenize(s))) == tokenize(s)`` for every string ``s``.
"""

import re
import tempfile
import unicodedata
from pathlib import Path

from attnmt.errors import AttnmtError
from attnmt.files import atomic_write_bytes

_ELIDED = r"(?:[Jj]usqu|[Ll]orsqu|[Pp]uisqu|[Qq]uoiqu|[Qq]u|[CcDdJjLlMmNnSsTt])['’]"
_CLITIC = rf"{_ELIDED}(?=\w)"
_NUMBER = r"\d+(?:[.,]\d+)+"
_WORD = r"\w+(?:['’-]\w+)*"
_TOKEN = re.compile(rf"{_CLITIC}|{_NUMBER}|{_WORD}|[^\w\s]")

_NO_SPACE_BEFORE = set(".,)]}%…»!?:;")
_NO_SPACE_AFTER = set("([{«")
_FRENCH_SPACE_BEFORE = set("!?:;»")
_FRENCH_SPACE_AFTER = set("«")


def tokenize(text: str) -> list[str]:
    """Split ``text`` (NFC-normalised, case kept) into word, clitic, number and punctuation tokens."""
    return _TOKEN.findall(unicodedata.normalize("NFC", text))


def detokenize(tokens: list[str], lang: str = "en") -> str:
    """Join tokens into text with the spacing conventions of ``lang`` (``"fr"``: space before ``?!:;``)."""
    french = lang == "fr"
    out: list[str] = []
    glue = True  # no space before the next token
    open_quote = False
    for token in tokens:
        if token == '"':
            space = not glue and not open_quote
            open_quote = not open_quote
            out.append((" " if space else "") + token)
            glue = open_quote
            continue
        if token in _NO_SPACE_BEFORE and not (french and token in _FRENCH_SPACE_BEFORE):
            space = False
        else:
            space = not glue
        out.append((" " if space else "") + token)
        glue = _is_clitic(token) or (
            token in _NO_SPACE_AFTER and not (french and token in _FRENCH_SPACE_AFTER)
        )
    return "".join(out)


def _is_clitic(token: str) -> bool:
    return re.fullmatch(_ELIDED, token) is not None


class WordTokenizer:
    """The rule-based word tokenizer above, as an object with the :class:`SubwordTokenizer` interface."""

    def __init__(self, lang: str):
        self.lang = lang

    def tokenize(self, text: str) -> list[str]:
        return tokenize(text)

    def detokenize(self, tokens: list[str]) -> str:
        return detokenize(tokens, self.lang)


_SPECIALS = {"<pad>", "<unk>", "<sos>", "<eos>", "<s>", "</s>"}


class SubwordTokenizer:
    """SentencePiece (Kudo & Richardson 2018) pieces; ``detokenize`` gives back plain text."""

    def __init__(self, model: bytes, source: str = "SentencePiece model"):
        import sentencepiece as spm

        self.model = model
        try:
            self.processor = spm.SentencePieceProcessor(model_proto=model)
        except (OSError, RuntimeError, TypeError) as e:
            raise AttnmtError(f"{source}: not a readable SentencePiece model ({e})") from None

    @classmethod
    def load(cls, path: Path) -> "SubwordTokenizer":
        return cls(Path(path).read_bytes(), str(path))

    def save(self, path: Path) -> None:
        atomic_write_bytes(path, self.model)

    def __reduce__(self):  # pickled as its model bytes: how rank 0 hands its tokenizer to the others
        return (SubwordTokenizer, (self.model,))

    def tokenize(self, text: str) -> list[str]:
        return self.processor.encode(unicodedata.normalize("NFC", text), out_type=str)

    def detokenize(self, tokens: list[str]) -> str:
        return self.processor.decode_pieces([t for t in tokens if t not in _SPECIALS])

    def pieces(self) -> list[str]:
        """Every piece of the model (byte pieces included), for the vocabulary."""
        return [self.processor.id_to_piece(i) for i in range(self.processor.get_piece_size())]

    @classmethod
    def train(cls, sentences: list[str], *, vocab_size: int, model_type: str) -> "SubwordTokenizer":
        """Train a ``bpe`` or ``unigram`` model of at most ``vocab_size`` pieces on ``sentences``."""
        import sentencepiece as spm

        with tempfile.TemporaryDirectory() as tmp:
            corpus = Path(tmp) / "corpus.txt"
            corpus.write_text("\n".join(unicodedata.normalize("NFC", s) for s in sentences), encoding="utf-8")
            try:
                spm.SentencePieceTrainer.train(
                    input=str(corpus),
                    model_prefix=str(Path(tmp) / "spm"),
                    vocab_size=vocab_size,
                    model_type=model_type,
                    character_coverage=1.0,
                    hard_vocab_limit=False,  # a small corpus may have fewer pieces than asked for
                    byte_fallback=True,  # unseen characters become UTF-8 bytes: any text round-trips
                    normalization_rule_name="identity",  # text stays as written (NFC), no NFKC folding
                    remove_extra_whitespaces=False,
                    bos_id=-1,
                    eos_id=-1,  # attnmt's Vocabulary adds its own specials
                    num_threads=2,
                    minloglevel=2,
                )
            except RuntimeError as e:  # e.g. fewer pieces asked for than the corpus has characters
                raise AttnmtError(
                    f"data.vocab_size: SentencePiece cannot train ({str(e).split('] ')[-1]})"
                ) from None
            return cls((Path(tmp) / "spm.model").read_bytes())


Tokenizer = WordTokenizer | SubwordTokenizer
