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
    most = max((len(r) for r in references), default=1)
    streams = [[refs[k] if k < len(refs) else None for refs in references] for k in range(most)]
    bleu, chrf = BLEU(), CHRF()
    b, c = bleu.corpus_score(hypotheses, streams), chrf.corpus_score(hypotheses, streams)
    return Scores(b.score, c.score, str(bleu.get_signature()), str(chrf.get_signature()))
