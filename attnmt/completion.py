"""Interactive translation prediction: the translator types, the model proposes the rest.

Given a source and the target text typed so far — which may stop in the middle of a word — a
:class:`Completer` returns the typed text unchanged followed by the model's best continuation to
``<eos>``.  The typed text is read in two parts: the *head*, up to its last whitespace, is tokenised as
the target tokenizer would and forced; the *fragment* after it (the word being typed) is completed by
tokens whose spelling extends it (:class:`Spelling`): ``Nous so`` → ``Nous sommes …`` with word
vocabularies and SentencePiece alike.  A fragment no sequence of tokens spells is forced as the
tokenizer splits it, and search continues after it.

A keystroke does not pay for a translation: each source is encoded once and every decoded prefix keeps
its state (the GRU's hidden state and input feed, the Transformer's key/value cache) in a trie keyed by
token ids, so that decoding a typed prefix starts from the longest prefix already decoded, and greedy
search walks the previous proposal for as long as it still holds.  Where it departs, greedy search
drafts what follows from the previous proposal (the tokens after the same last two, or one) and reads
the draft in the same pass as the token it must read anyway (:meth:`~attnmt.model.Seq2Seq.steps`): each
drafted token its search then picks is already decoded, so the sentence's end, where a correction
usually leaves the proposal as it was, costs one pass instead of a step per token.  A draft changes no
token: it only decides which prefixes are decoded together (scores equal up to float rounding).
Sources are kept least recently used first out, each with a bounded number of states, and expire after
``ttl`` seconds unused.
"""

import bisect
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from attnmt.data import pad
from attnmt.engine import DecodeOptions, Engine
from attnmt.errors import AttnmtError
from attnmt.model import Seq2Seq
from attnmt.search import Beams, Step, max_output_length, search_beams
from attnmt.tokenization import SubwordTokenizer, Tokenizer
from attnmt.translator import model_device
from attnmt.vocab import EOS, Vocabulary

GREEDY = DecodeOptions(beam_size=1)  # a completion's default: the fastest proposals


@dataclass
class Word:
    """One whitespace-delimited word of a completion's text, from the word being typed onwards."""

    text: str
    start: int  # character offsets in Completion.text
    end: int
    first: int  # its tokens: Completion.tokens[first:last]
    last: int
    log_prob: float  # the sum of its tokens' log-probabilities


@dataclass
class Completion:
    """The typed text, kept exactly, and the model's proposal after it: ``text`` = typed + proposal."""

    text: str
    typed: str
    tokens: list[str]  # the whole translation's target tokens, the typed part as read, <eos> last
    src_tokens: list[str]  # source tokens, <eos> last
    log_probs: list[float]  # log p of each token given the source and the tokens before it
    attention: np.ndarray | None  # (len(tokens), len(src_tokens)); None for a model without attention
    words: list[Word]  # the words from the one being typed (or the first proposed) to the end

    @property
    def proposal(self) -> str:
        return self.text[len(self.typed) :]


class Spelling:
    """Which target tokens may come next so that the text they add spells a typed fragment.

    Each token has a surface: the text it adds within a word (a SentencePiece piece with ``▁`` as a
    space; a word token as written; specials and byte pieces none).  Tokens may come one after another
    while their surfaces are a prefix of what remains to spell; the one that reaches past it ends the
    word.  A word tokenizer's tokens may only split the fragment where the tokenizer would (``l'`` +
    ``h…``, never ``chat`` + ``s``).
    """

    def __init__(self, vocab: Vocabulary, tokenizer: Tokenizer):
        subword = isinstance(tokenizer, SubwordTokenizer)
        self.tokenizer, self.subword = tokenizer, subword
        self.surfaces = [
            "" if t.startswith("<") and t.endswith(">") else t.replace("▁", " ") if subword else t
            for t in vocab.itos
        ]
        self.by_surface: dict[str, list[int]] = {}
        for i, s in enumerate(self.surfaces):
            if s:
                self.by_surface.setdefault(s, []).append(i)
        self.sorted = sorted(self.by_surface)
        self.vocab_size = len(vocab)
        self.word_starts = torch.tensor(  # the tokens that can begin a word
            [bool(s.strip()) and (not subword or s.startswith(" ")) for s in self.surfaces]
        )

    def target(self, fragment: str) -> str:
        """What the tokens after the head must spell: a SentencePiece word starts with its space."""
        return " " + fragment if self.subword else fragment

    def constraint(self, fragment: str) -> "FragmentConstraint | None":
        """The constraint that spells ``fragment``, or None where no sequence of tokens can."""
        target = self.target(fragment)
        ends = None if self.subword else _token_ends(self.tokenizer, fragment)
        constraint = FragmentConstraint(self, target, ends)
        return constraint if constraint.spellable(0) else None


class FragmentConstraint:
    """The tokens allowed next while spelling ``target``, by how many of its characters are spelled;
    worked out for a position when first asked (a keystroke asks for one or two)."""

    def __init__(self, spelling: Spelling, target: str, ends: set[int] | None):
        self.spelling, self.target, self.ends = spelling, target, ends
        self._allowed: dict[int, list[int]] = {}
        self._masks: dict[int, Tensor] = {}
        self._spellable: dict[int, bool] = {}

    def allowed(self, spelled: int) -> list[int]:
        """Token ids that may follow ``spelled`` characters of the target (fewer than it has), such
        that the rest can follow them."""
        if spelled not in self._allowed:
            self._allowed[spelled] = self._allowed_at(spelled)
        return self._allowed[spelled]

    def spellable(self, spelled: int) -> bool:
        """Whether some tokens spell the target from ``spelled`` characters on (``allowed`` is not
        empty), without listing them."""
        if spelled not in self._spellable:
            rest = self.target[spelled:]
            self._spellable[spelled] = bool(self._extending(rest)) or any(
                self._spells_part(spelled, j) for j in range(1, len(rest))
            )
        return self._spellable[spelled]

    def spelled(self, ids: list[int]) -> int | None:
        """How many characters ``ids`` spell; None once they reach past the end (the word is done)."""
        count = 0
        for i in ids:
            count += len(self.spelling.surfaces[i])
            if count >= len(self.target):
                return None
        return count

    def mask(self, spelled: int, device: torch.device) -> Tensor:
        if spelled not in self._masks:
            allowed = torch.zeros(self.spelling.vocab_size, dtype=torch.bool)
            allowed[self.allowed(spelled)] = True
            self._masks[spelled] = allowed
        return self._masks[spelled].to(device)

    def _allowed_at(self, spelled: int) -> list[int]:
        rest, by_surface = self.target[spelled:], self.spelling.by_surface
        ids = [i for s in self._extending(rest) for i in by_surface[s]]
        for j in range(1, len(rest)):  # tokens that spell part of the rest, where more can follow
            if self._spells_part(spelled, j):
                ids.extend(by_surface[rest[:j]])
        return ids

    def _spells_part(self, spelled: int, j: int) -> bool:
        """Whether a token spells the next ``j`` characters after ``spelled``, and the rest can follow."""
        part = self.target[spelled : spelled + j]
        return (
            part in self.spelling.by_surface and self._splits_at(spelled + j) and self.spellable(spelled + j)
        )

    def _extending(self, rest: str) -> list[str]:
        """The surfaces that begin with ``rest``."""
        surfaces = self.spelling.sorted
        start = bisect.bisect_left(surfaces, rest)
        end = bisect.bisect_left(surfaces, rest + "\U0010ffff", lo=start)
        return surfaces[start:end]

    def _splits_at(self, position: int) -> bool:
        return self.ends is None or position in self.ends


def _token_ends(tokenizer: Tokenizer, fragment: str) -> set[int]:
    """Where the word tokenizer may end a token inside ``fragment``: after each token it splits the
    fragment into, and after an elided clitic it would split were a word to follow (``l'`` in ``l'``)."""
    text, ends, position = fragment + "a", set(), 0
    for token in tokenizer.tokenize(text):
        position = text.find(token, position) + len(token)
        ends.add(min(position, len(fragment)))
    return ends


@dataclass
class _Node:
    """A decoded prefix: what the step that read its last token gave."""

    log_probs: Tensor  # (V,) the next token's log-probabilities
    attention: Tensor | None  # (S,) the weights behind the next token
    state: object  # the decoder state after the prefix, batch of one
    best: int | None = None  # the likeliest token a proposal may hold next, once asked for


@dataclass
class _Source:
    src_tokens: list[str]
    max_words: int
    nodes: dict[tuple[int, ...], _Node]
    used: float
    proposal: list[int] = field(default_factory=list)  # the last completion's token ids, <eos> last


class Completer:
    """Completes translations of sources as they are typed (:meth:`complete`), keeping each source's
    encoding and decoded prefixes: at most ``max_sources`` sources, each with at most ``max_states``
    prefixes, each source dropped after ``ttl`` seconds unused.  ``reuse=False`` starts every call from
    scratch (for comparison).  Not thread-safe: one caller at a time (the server's model thread)."""

    def __init__(
        self,
        translator: Engine,
        *,
        max_sources: int = 16,
        max_states: int = 512,
        ttl: float = 600.0,
        reuse: bool = True,
    ):
        if translator.model is None:
            raise AttnmtError("this engine cannot complete typed text: it does not decode step by step")
        self.translator = translator
        self.model: Seq2Seq = translator.model
        self.device = model_device(self.model)
        self.spelling = Spelling(translator.tgt_vocab, translator.tgt_tokenizer)
        self.max_sources, self.max_states, self.ttl, self.reuse = max_sources, max_states, ttl, reuse
        self.sources: OrderedDict[str, _Source] = OrderedDict()

    @torch.inference_mode()
    def complete(self, source: str, typed: str, options: DecodeOptions = GREEDY) -> Completion:
        """The typed text and the model's best continuation of it, greedy or beam search (``options``;
        ``n_best`` is not used); :meth:`alternatives` gives what else could stand in a word's place."""
        if not source.strip():
            raise AttnmtError("source: empty; give the sentence to translate")
        if self.model.training:
            self.model.eval()
        entry = self._source(source)
        cut = len(typed) - len(typed.split()[-1]) if typed.strip() and not typed[-1].isspace() else len(typed)
        head, fragment = typed[:cut], typed[cut:]
        kept = self._ids(" ".join(head.split()))  # as the tokenizer splits it, spaces as one
        constraint = self.spelling.constraint(fragment) if 0 < len(fragment) <= _MAX_FRAGMENT else None
        if fragment and constraint is None:  # no tokens spell it: forced as the tokenizer splits it
            kept, fragment = self._ids(" ".join(typed.split())), ""
        if options.beam_size == 1:
            ids = self._greedy(entry, kept, constraint, entry.max_words)
        else:  # room for the fragment, a token per character at most
            ids = self._beam(
                entry, kept, constraint, max(entry.max_words, len(kept) + len(fragment)), options
            )
        completion = self._completion(entry, typed, fragment, kept, ids)
        entry.proposal = [*kept, *ids, Vocabulary.eos_id]
        return completion

    @torch.inference_mode()
    def alternatives(
        self, source: str, completion: Completion, word: Word, top_k: int, kept: str = ""
    ) -> list[tuple[str, float]]:
        """The ``top_k`` words the model finds likeliest in place of ``word`` (of ``completion`` of
        ``source``) that begin with ``kept`` (the part of it known right: what was typed of it, or what
        precedes a wrong character), best first, with their log-probabilities: the likeliest tokens at the
        word's first position that can begin such a word, each written on greedily to the end of its
        word, so that a word of several pieces is offered whole.  ``<eos>`` and ``<unk>`` are never offered."""
        entry, vocab, surfaces = self._source(source), self.translator.tgt_vocab, self.spelling.surfaces
        before = tuple(vocab.encode(completion.tokens[: word.first]))
        constraint = self.spelling.constraint(kept) if kept else None
        if kept and constraint is None:
            return []
        log_probs = _proposable(self._node(entry, before).log_probs)
        starts = constraint.mask(0, log_probs.device) if constraint else self.spelling.word_starts
        best = log_probs.masked_fill(~starts.to(log_probs.device), float("-inf")).topk(top_k)
        words: dict[str, float] = {}
        for first, log_prob in zip(best.indices.tolist(), best.values.tolist(), strict=True):
            if log_prob == float("-inf"):
                break
            ids = [first]
            for _ in range(_MAX_WORD_TOKENS):
                spelled = None if constraint is None else constraint.spelled(ids)
                log_probs = _proposable(self._node(entry, (*before, *ids)).log_probs)
                if spelled is not None:
                    log_probs.masked_fill_(~constraint.mask(spelled, log_probs.device), float("-inf"))
                following = int(log_probs.argmax())
                if spelled is None and not self._continues_word(ids[-1], following):
                    break
                log_prob += float(log_probs[following])
                ids.append(following)
            words.setdefault("".join(surfaces[i] for i in ids).strip(), log_prob)
        return list(words.items())

    def _continues_word(self, previous: int, token: int) -> bool:
        """Whether ``token`` goes on with the word ``previous`` is in: a piece with no space before it,
        or a word after an elided clitic (``l'`` + ``homme``)."""
        surface = self.spelling.surfaces[token]
        if not surface.strip():
            return False
        if self.spelling.subword:
            return not surface.startswith(" ")
        return self.spelling.surfaces[previous].endswith(("'", "’")) and surface[0].isalnum()

    def _source(self, source: str) -> _Source:
        """The source's entry, encoded once (and its oldest or expired neighbours dropped)."""
        now = time.monotonic()
        for key in [k for k, s in self.sources.items() if now - s.used > self.ttl]:
            del self.sources[key]
        entry = self.sources.get(source) if self.reuse else None
        if entry is None:
            src_tokens = [*self.translator.src_tokenizer.tokenize(source), EOS]
            src, src_pad_mask = (
                t.to(self.device) for t in pad([self.translator.src_vocab.encode(src_tokens)])
            )
            state = self.model.init_state(self.model.encode(src, src_pad_mask))
            max_words = max_output_length(len(src_tokens))
            entry = _Source(src_tokens, max_words, {}, now)
            entry.nodes[()] = self._read([Vocabulary.sos_id], state)[0]
            if self.reuse and self.max_sources > 0:
                self.sources[source] = entry
                while len(self.sources) > self.max_sources:
                    self.sources.popitem(last=False)
        if source in self.sources:
            self.sources.move_to_end(source)
        entry.used = now
        return entry

    def _ids(self, text: str) -> list[int]:
        ids = self.translator.tgt_vocab.encode(self.translator.tgt_tokenizer.tokenize(text))
        if any(i in (Vocabulary.pad_id, Vocabulary.sos_id, Vocabulary.eos_id) for i in ids):
            raise AttnmtError("typed: holds <pad>, <sos> or <eos>, which are not words")
        return ids

    def _node(self, entry: _Source, prefix: tuple[int, ...], draft: list[int] | None = None) -> _Node:
        """The state after ``prefix``, decoded from the longest prefix of it already decoded in one
        pass, together with the prefixes that go on with ``draft`` after it."""
        node = entry.nodes.get(prefix)
        if node is not None:
            return node
        known = next(n for n in range(len(prefix) - 1, -1, -1) if prefix[:n] in entry.nodes)
        reading = [*prefix[known:], *(draft or [])]
        if len(entry.nodes) + len(reading) > self.max_states:  # full: keep this path only
            entry.nodes = {prefix[:n]: entry.nodes[prefix[:n]] for n in range(known + 1)}
        for n, node in enumerate(self._read(reading, entry.nodes[prefix[:known]].state)):
            entry.nodes[(*prefix[:known], *reading[: n + 1])] = node
        return entry.nodes[prefix]

    def _read(self, tokens: list[int], state: object) -> list[_Node]:
        """Decode ``tokens`` from ``state`` in one pass: a node after each."""
        log_probs, states, attention = self.model.steps(torch.tensor([tokens], device=self.device), state)
        return [
            _Node(log_probs[0, n], None if attention is None else attention[0, n].float(), after)
            for n, after in enumerate(states)
        ]

    @staticmethod
    def _draft(entry: _Source, ids: list[int]) -> list[int]:
        """A guess at the tokens greedy search writes after ``ids``: those that followed the same last
        two tokens (or else the last one) in the previous proposal, the occurrence nearest this
        position, at most ``_DRAFT`` and none from ``<eos>`` on."""
        proposal = entry.proposal
        for n in (2, 1):
            tail = ids[-n:]
            if len(tail) < n:
                continue
            starts = [j for j in range(len(proposal) - n + 1) if proposal[j : j + n] == tail]
            if starts:
                start = min(starts, key=lambda j: abs(j + n - len(ids))) + n
                draft = proposal[start : start + _DRAFT]
                return draft[: draft.index(Vocabulary.eos_id)] if Vocabulary.eos_id in draft else draft
        return []

    def _greedy(
        self, entry: _Source, kept: list[int], constraint: "FragmentConstraint | None", max_words: int
    ) -> list[int]:
        """Greedy search after ``kept``, walking decoded prefixes where it can: the token ids it writes."""
        ids = list(kept)
        while True:
            node = entry.nodes.get(tuple(ids)) or self._node(entry, tuple(ids), self._draft(entry, ids))
            spelled = None if constraint is None else constraint.spelled(ids[len(kept) :])
            if spelled is not None:  # the word being typed is not spelled yet
                log_probs = _proposable(node.log_probs)
                log_probs.masked_fill_(~constraint.mask(spelled, log_probs.device), float("-inf"))
                token = int(log_probs.argmax())
            elif len(ids) >= max_words:
                token = Vocabulary.eos_id
            else:
                if node.best is None:  # kept: walking the prefix again costs no search
                    node.best = int(_proposable(node.log_probs).argmax())
                token = node.best
            if token == Vocabulary.eos_id:
                return ids[len(kept) :]
            ids.append(token)

    def _beam(
        self,
        entry: _Source,
        kept: list[int],
        constraint: "FragmentConstraint | None",
        max_words: int,
        options: DecodeOptions,
    ) -> list[int]:
        """Beam search after ``kept``, from its decoded state: the token ids it writes."""
        k, node = options.beam_size, self._node(entry, tuple(kept))
        device = node.log_probs.device
        rows = torch.zeros(k, dtype=torch.long, device=device)
        scores = torch.full((1, k), float("-inf"), device=device)
        scores[0, 0] = float(self._prefix_log_prob(entry, kept))
        attention = None
        if node.attention is not None and kept:
            attention = torch.stack([entry.nodes[tuple(kept[:n])].attention for n in range(len(kept))])
            attention = attention[None].expand(k, -1, -1)
        beams = Beams(
            sentences=[0],
            scores=scores,
            tokens=torch.tensor([kept] * k, dtype=torch.long, device=device).view(k, len(kept)),
            attention=attention,
            max_lengths=torch.full((k,), max_words, device=device),
            min_lengths=torch.zeros(k, dtype=torch.long, device=device),
        )
        first = Step(
            node.log_probs[None].expand(k, -1).clone(),
            self.model.reorder(node.state, rows),
            None if node.attention is None else node.attention[None].expand(k, -1),
        )

        anything = torch.ones(self.spelling.vocab_size, dtype=torch.bool, device=device)
        anything[Vocabulary.unk_id] = False  # a proposal holds words a translator can accept

        def restrict(tokens: Tensor) -> Tensor:
            spelled = [
                None if constraint is None else constraint.spelled(row[len(kept) :])
                for row in tokens.tolist()
            ]
            return torch.stack([anything if s is None else constraint.mask(s, device) for s in spelled])

        src_lengths = [len(entry.src_tokens)]
        best = search_beams(
            self.model, first, beams, src_lengths=src_lengths, n_best=1, alpha=options.alpha,
            restrict=restrict,
        )[0][0]  # fmt: skip
        return best.tokens[len(kept) :]

    def _prefix_log_prob(self, entry: _Source, ids: list[int]) -> float:
        return sum(float(self._node(entry, tuple(ids[:n])).log_probs[t]) for n, t in enumerate(ids))

    def _completion(
        self, entry: _Source, typed: str, fragment: str, kept: list[int], written: list[int]
    ) -> Completion:
        """The Completion of ``kept`` + ``written``: its text, words, and from the decoded prefixes the
        log-probability and attention of every token."""
        translator = self.translator
        ids = [*kept, *written, Vocabulary.eos_id]
        nodes = [self._node(entry, tuple(ids[:n])) for n in range(len(ids))]
        log_probs = [float(node.log_probs[t]) for node, t in zip(nodes, ids, strict=True)]
        attention = None
        if nodes[0].attention is not None:
            attention = torch.stack([node.attention for node in nodes]).cpu().numpy()
        tokens = translator.tgt_vocab.decode(ids)
        text, words = _text_and_words(
            translator.tgt_tokenizer, typed, fragment, tokens[: len(kept)], tokens[len(kept) : -1]
        )
        for word in words:
            word.first, word.last = word.first + len(kept), word.last + len(kept)
            word.log_prob = sum(log_probs[word.first : word.last])
        return Completion(text, typed, tokens, entry.src_tokens, log_probs, attention, words)


_MAX_WORD_TOKENS = 8  # the most pieces an alternative word is written on to
_DRAFT = 16  # the most tokens a draft guesses
_MAX_FRAGMENT = 64  # a longer "word" is no word to complete: forced as typed (spelling it costs its length²)


_NEVER_PROPOSED = torch.tensor([Vocabulary.pad_id, Vocabulary.sos_id, Vocabulary.unk_id])


def _proposable(log_probs: Tensor) -> Tensor:
    """A copy of ``log_probs`` with what a proposal never holds ruled out: <pad>, <sos>, <unk>."""
    return log_probs.index_fill(0, _NEVER_PROPOSED.to(log_probs.device), float("-inf"))


def _text_and_words(
    tokenizer: Tokenizer, typed: str, fragment: str, kept: list[str], written: list[str]
) -> tuple[str, list[Word]]:
    """``typed`` and the text ``written`` adds after it, and the words from the fragment onwards (token
    spans counted in ``written``)."""
    before = tokenizer.detokenize(kept)

    def added(n: int) -> str:
        """The text the first n written tokens add after the kept ones."""
        full = tokenizer.detokenize([*kept, *written[:n]])
        text = full[len(before) :] if full.startswith(before) else " " + tokenizer.detokenize(written[:n])
        if fragment or not typed or typed[-1].isspace():
            text = text.lstrip()
        if fragment and text.startswith(fragment):
            return text[len(fragment) :]
        return "" if fragment.startswith(text) else text  # still inside the fragment

    proposal = added(len(written))
    text = typed + proposal
    words: list[Word] = []
    start, first, previous = len(typed) - len(fragment), 0, ""
    for n in range(1, len(written) + 1):
        current = added(n)
        new = current[len(previous) :] if current.startswith(previous) else current
        if new[:1].isspace():  # token n - 1 starts a word: the one before it ends
            if n > 1:
                words.append(_word(text, start, len(typed) + len(previous), first, n - 1))
            start, first = len(typed) + len(previous) + len(new) - len(new.lstrip()), n - 1
        previous = current
    if written:
        words.append(_word(text, start, len(text), first, len(written)))
    return text, words


def _word(text: str, start: int, end: int, first: int, last: int) -> Word:
    return Word(text[start:end], start, end, first, last, 0.0)
