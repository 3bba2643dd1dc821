"""BLEU and chrF with sacrebleu, on detokenized text, cased, with multiple references where there are."""

from dataclasses import dataclass

from sacrebleu.metrics import BLEU, CHRF


@dataclass
class Scores:
    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str

    def __str__(self) -> str:
        return f"BLEU {self.bleu:.2f} ({self.bleu_signature})  chrF {self.chrf:.2f} ({self.chrf_signature})"


def corpus_scores(hypotheses: list[str], references: list[list[str]]) -> Scores:
    """``references[i]`` holds every reference translation of sentence i (one or more)."""
    streams = _reference_streams(references)
    bleu, chrf = BLEU(), CHRF()
    b, c = bleu.corpus_score(hypotheses, streams), chrf.corpus_score(hypotheses, streams)
    return Scores(b.score, c.score, str(bleu.get_signature()), str(chrf.get_signature()))


LENGTH_EDGES = (5, 10, 15, 20, 30, 40, 50, 60)  # upper ends of the source-length buckets, in words


@dataclass
class BucketScores:
    """Scores of the sentences whose source has ``low``–``high`` words (``high`` None: no limit)."""

    low: int
    high: int | None
    sentences: int
    bleu: float
    bleu_ci: float  # half-width of sacrebleu's 95 % bootstrap interval (1,000 resamples)
    chrf: float

    @property
    def label(self) -> str:
        return f"{self.low}+" if self.high is None else f"{self.low}-{self.high}"


def scores_by_length(
    sources: list[str],
    hypotheses: list[str],
    references: list[list[str]],
    edges: tuple[int, ...] = LENGTH_EDGES,
) -> list[BucketScores]:
    """BLEU (with a bootstrap confidence interval) and chrF per source-length bucket; every sentence
    falls in exactly one bucket and empty buckets are left out."""
    buckets: dict[int, list[int]] = {}
    for i, source in enumerate(sources):
        words = len(source.split())
        buckets.setdefault(next((k for k, e in enumerate(edges) if words <= e), len(edges)), []).append(i)
    results = []
    for k in sorted(buckets):
        index = buckets[k]
        hyps, streams = [hypotheses[i] for i in index], _reference_streams([references[i] for i in index])
        resamples = 1000 if len(index) > 1 else 1
        bleu = BLEU().corpus_score(hyps, streams, n_bootstrap=resamples)
        low = 1 if k == 0 else edges[k - 1] + 1
        results.append(
            BucketScores(
                low, edges[k] if k < len(edges) else None, len(index), bleu.score,
                bleu._ci if resamples > 1 else 0.0, CHRF().corpus_score(hyps, streams).score,
            )
        )  # fmt: skip
    return results


def _reference_streams(references: list[list[str]]) -> list[list[str | None]]:
    """sacrebleu's layout: stream k holds every sentence's k-th reference, None where it has fewer."""
    most = max((len(r) for r in references), default=1)
    return [[refs[k] if k < len(refs) else None for refs in references] for k in range(most)]
