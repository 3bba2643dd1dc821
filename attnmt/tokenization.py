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
import unicodedata

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
