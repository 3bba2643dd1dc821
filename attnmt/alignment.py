"""Word alignments read off attention weights, and Luong et al. (2015)'s unknown-word replacement.

Weights are (target × source), as :class:`attnmt.translator.Translation` holds them; token lists
include the final ``<eos>`` on both sides, which never takes part in an alignment.
"""

import numpy as np

from attnmt.vocab import UNK


def hard_alignment(weights: np.ndarray, threshold: float | None = None) -> list[tuple[int, int]]:
    """(source, target) index pairs: each target token's most attended source token, or, with a
    ``threshold``, every source token it gives at least that much weight.  ``<eos>`` rows and
    columns (the last of each) are left out."""
    weights = np.asarray(weights)[:-1, :-1]
    if threshold is None:
        return [(int(j), i) for i, j in enumerate(weights.argmax(axis=1))] if weights.size else []
    return [(int(j), int(i)) for i, j in zip(*np.nonzero(weights >= threshold), strict=True)]


def pharaoh(pairs: list[tuple[int, int]]) -> str:
    """The common ``i-j`` text format (source index - target index, 0-based), as Moses and fast_align write it."""
    return " ".join(f"{i}-{j}" for i, j in sorted(pairs))


def replace_unknowns(
    tgt_tokens: list[str],
    src_tokens: list[str],
    weights: np.ndarray,
    dictionary: dict[str, str] | None = None,
) -> list[str]:
    """Each ``<unk>`` becomes the source token it attends to most, translated through ``dictionary``
    when the dictionary has it (a name or a number is usually right copied as it is)."""
    out = []
    for i, token in enumerate(tgt_tokens):
        if token == UNK and len(src_tokens) > 1:
            source = src_tokens[int(np.argmax(np.asarray(weights)[i, :-1]))]  # never the source <eos>
            token = (dictionary or {}).get(source, source)
        out.append(token)
    return out
