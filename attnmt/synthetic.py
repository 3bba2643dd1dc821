"""A synthetic task where length matters: reverse a random sequence of symbols.

Every output word depends on one input word far away, so a single fixed context vector must hold the
whole sequence, while attention can look the word up (Bahdanau et al. 2015 make the same argument).
"""

import random

SYMBOLS = tuple(chr(ord("a") + i) for i in range(20))


def reversal_pairs(n: int, seed: int, min_len: int = 5, max_len: int = 20) -> list[tuple[str, str]]:
    """``n`` random sequences of ``min_len``–``max_len`` symbols (uniform length), each with its reversal."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        tokens = [rng.choice(SYMBOLS) for _ in range(rng.randint(min_len, max_len))]
        pairs.append((" ".join(tokens), " ".join(reversed(tokens))))
    return pairs
