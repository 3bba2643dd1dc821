from attnmt.metrics import corpus_scores, scores_by_length


def test_every_sentence_falls_in_exactly_one_length_bucket():
    sources = [" ".join(["w"] * n) for n in (1, 5, 6, 10, 11, 30, 31, 60, 61, 200)]
    hyps = ["le chat est noir"] * len(sources)
    refs = [["le chat est noir"], ["le chien est noir"]] * 5
    buckets = scores_by_length(sources, hyps, refs)
    assert [b.label for b in buckets] == ["1-5", "6-10", "11-15", "21-30", "31-40", "51-60", "61+"]
    assert [b.sentences for b in buckets] == [2, 2, 1, 1, 1, 1, 2]
    assert sum(b.sentences for b in buckets) == len(sources)
    assert round(buckets[2].bleu, 6) == 100.0 and buckets[2].bleu_ci == 0.0  # one sentence: no interval
    assert 0.0 < buckets[0].bleu < 100.0 and buckets[0].bleu_ci > 0.0


def test_multiple_references_count_as_one_sentence_each():
    one = corpus_scores(["Nous sommes contents."], [["Nous sommes heureux."]])
    both = corpus_scores(["Nous sommes contents."], [["Nous sommes heureux.", "Nous sommes contents."]])
    assert round(both.bleu, 6) == 100.0 and one.bleu < 100.0
