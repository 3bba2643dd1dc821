"""``attnmt simulate``: a simulated translator works with the model's proposals (the field's protocol for
interactive translation prediction, after Barrachina et al. 2009 and Knowles & Koehn 2016).

The translator wants to write a given reference.  Each interaction it reads the proposal left to right
up to the first character that differs from the reference, then either

- clicks the wrong word and takes one of the model's alternatives there, when the reference's word is
  among them (one mouse action; what precedes the word is accepted with the click), or
- accepts the proposal up to the error (one mouse action, unless the error is right at the caret) and
  types the right character (one keystroke);

and the model proposes again.  A proposal that holds the whole reference is accepted (one mouse action;
one keystroke more to delete what follows it, if anything does).  Keystroke ratio = keystrokes ÷
reference characters, mouse-action ratio likewise, KSMR their sum.  A proposal's cost: its latency
÷ the time to translate its sentence afresh, over all proposals and over those a keystroke asked for
(the first proposal of a sentence is a translation: nothing is typed yet).  Next-word accuracy: given the
reference up to each of its words, how often the model's next word is that word.  The post-editing
baseline: the character edit distance from the model's unassisted translation to the reference ÷
reference characters.  Everything but the latencies is deterministic.
"""

import time
from dataclasses import dataclass, field

import numpy as np

from attnmt.completion import Completer, Completion
from attnmt.engine import DecodeOptions


@dataclass
class Effort:
    """What the simulated translator spent on one or more sentences."""

    sentences: int = 0
    characters: int = 0  # reference characters
    keystrokes: int = 0
    mouse_actions: int = 0
    words: int = 0  # reference words
    words_predicted: int = 0  # the model's next word was the reference's, given the reference before it
    unedited: int = 0  # sentences whose first proposal was accepted as it was
    edit_distance: int = 0  # unassisted translations' character edit distances to the references
    latencies: list[float] = field(default_factory=list)  # seconds per proposal
    fresh: list[float] = field(default_factory=list)  # per proposal, seconds to translate its sentence
    # per proposal, what asked for it: "start" (nothing typed yet), "keystroke" or "pick" (an alternative)
    causes: list[str] = field(default_factory=list)

    def add(self, other: "Effort") -> None:
        for name, value in vars(other).items():
            setattr(self, name, getattr(self, name) + value)

    def summary(self) -> dict[str, float]:
        latency_ms = np.array(self.latencies) * 1000
        return {
            "sentences": self.sentences,
            "keystroke_ratio": self.keystrokes / self.characters,
            "mouse_action_ratio": self.mouse_actions / self.characters,
            "ksmr": (self.keystrokes + self.mouse_actions) / self.characters,
            "next_word_accuracy": self.words_predicted / self.words,
            "unedited": self.unedited / self.sentences,
            "post_edit_rate": self.edit_distance / self.characters,
            "latency_p50_ms": float(np.percentile(latency_ms, 50)),
            "latency_p95_ms": float(np.percentile(latency_ms, 95)),
            "latency_max_ms": float(latency_ms.max()),
            "proposal_vs_fresh": float(np.mean(self.latencies) / np.mean(self.fresh)),
            "keystroke_vs_fresh": self.cost_vs_fresh("keystroke"),
        }

    def cost_vs_fresh(self, cause: str) -> float:
        """The mean latency of the proposals ``cause`` asked for ÷ the mean time to translate their
        sentences afresh (NaN if there were none)."""
        picked = [i for i, c in enumerate(self.causes) if c == cause]
        if not picked:
            return float("nan")
        return float(np.mean([self.latencies[i] for i in picked]) / np.mean([self.fresh[i] for i in picked]))


def simulate(
    completer: Completer, source: str, reference: str, options: DecodeOptions, top_k: int = 5
) -> Effort:
    """One sentence: the translator writes ``reference`` with the model's proposals (module docstring),
    taking an alternative only when it is among the ``top_k`` likeliest (0: never)."""
    effort = Effort(sentences=1, characters=len(reference))
    start = time.perf_counter()
    unassisted = completer.translator.translate([source], options)[0].text
    fresh = time.perf_counter() - start
    effort.edit_distance = edit_distance(unassisted, reference)
    typed, cause = "", "start"
    while True:
        start = time.perf_counter()
        completion = completer.complete(source, typed, options)
        effort.latencies.append(time.perf_counter() - start)
        effort.causes.append(cause)
        right = _common_prefix(completion.text, reference)
        if right == len(reference):  # the proposal holds the reference: accept it
            effort.mouse_actions += 1
            effort.keystrokes += len(completion.text) > right  # and delete what follows
            effort.unedited = int(not typed and len(completion.text) == right)
            break
        picked = _alternative(completer, source, completion, reference, right, top_k) if top_k else None
        if picked is not None:
            effort.mouse_actions += 1
            typed, cause = picked, "pick"
        else:
            effort.mouse_actions += right > len(typed)
            effort.keystrokes += 1
            typed, cause = reference[: right + 1], "keystroke"
    effort.fresh = [fresh] * len(effort.latencies)  # each proposal against its sentence's translation
    words = _word_starts(reference)
    effort.words = len(words)
    for start in words:
        completion = completer.complete(source, reference[:start], options)
        wanted = reference[start:].split(maxsplit=1)[0]
        effort.words_predicted += bool(completion.words) and completion.words[0].text == wanted
    return effort


def _alternative(
    completer: Completer, source: str, completion: Completion, reference: str, error: int, top_k: int
) -> str | None:
    """The typed text after taking the alternative (among the ``top_k`` likeliest) that gives the
    reference's word in place of the proposed word where the first error is, or None if none does."""
    words = [w for w in completion.words if w.start <= error]
    if not words:
        return None
    word = words[-1]
    kept = reference[word.start : error]  # the word's characters before the error are right
    for text, _ in completer.alternatives(source, completion, word, top_k, kept):
        end = word.start + len(text)
        if reference.startswith(text, word.start) and end > error and not reference[end : end + 1].isalnum():
            return reference[:end]
    return None


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _word_starts(text: str) -> list[int]:
    """Where each whitespace-delimited word of ``text`` begins."""
    return [i for i, c in enumerate(text) if not c.isspace() and (i == 0 or text[i - 1].isspace())]


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance in characters: the fewest insertions, deletions and substitutions."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]
