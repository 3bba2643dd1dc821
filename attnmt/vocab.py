"""Token ↔ id vocabulary with the four special tokens every model here uses."""

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from attnmt.errors import AttnmtError
from attnmt.files import atomic_write_text

PAD, UNK, SOS, EOS = "<pad>", "<unk>", "<sos>", "<eos>"
SPECIALS = (PAD, UNK, SOS, EOS)


class Vocabulary:
    """Maps tokens to ids: ``<pad>`` = 0, ``<unk>`` = 1, ``<sos>`` = 2, ``<eos>`` = 3, then the tokens."""

    pad_id, unk_id, sos_id, eos_id = range(4)

    def __init__(self, tokens: Iterable[str]):
        self.itos: list[str] = list(SPECIALS) + [t for t in tokens if t not in SPECIALS]
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("vocabulary tokens must be unique")

    @classmethod
    def build(
        cls, sentences: Iterable[list[str]], *, min_freq: int = 1, max_size: int | None = None
    ) -> "Vocabulary":
        """:meth:`from_counts` of the tokens in ``sentences``."""
        counts = Counter(token for sentence in sentences for token in sentence)
        return cls.from_counts(counts, min_freq=min_freq, max_size=max_size)

    @classmethod
    def from_counts(
        cls, counts: Counter[str], *, min_freq: int = 1, max_size: int | None = None
    ) -> "Vocabulary":
        """Keep tokens seen at least ``min_freq`` times, most frequent first (ties alphabetical),
        at most ``max_size`` of them besides the specials."""
        kept = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
        return cls(kept[:max_size] if max_size is not None else kept)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def encode(self, tokens: Iterable[str]) -> list[int]:
        return [self.stoi.get(t, self.unk_id) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[i] for i in ids]

    def save(self, path: Path) -> None:
        atomic_write_text(path, json.dumps({"tokens": self.itos}, ensure_ascii=False, indent=0))

    @classmethod
    def load(cls, path: Path) -> "Vocabulary":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            tokens = data["tokens"]
            if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
                raise TypeError
        except FileNotFoundError:
            raise AttnmtError(f"{path}: vocabulary file is missing") from None
        except OSError as e:
            raise AttnmtError(f"{path}: cannot read ({e.strerror})") from None
        except (ValueError, KeyError, TypeError):
            raise AttnmtError(f"{path}: not a vocabulary file (expected JSON with a 'tokens' list)") from None
        if tuple(tokens[:4]) != SPECIALS or len(set(tokens)) != len(tokens):
            raise AttnmtError(
                f"{path}: vocabulary must start with {' '.join(SPECIALS)} and have no duplicates"
            )
        return cls(tokens[4:])
