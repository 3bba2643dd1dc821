"""`attnmt serve`: the API's answers and errors, batching, limits, and the page's files; forced prefixes
and scoring over HTTP."""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient

from attnmt.config import config_from_dict
from attnmt.server import Batcher, Limits, create_app
from attnmt.training import train
from attnmt.translator import DecodeOptions, Score, Translation

TRANSFORMER = {"architecture": "transformer", "hidden_size": 32, "heads": 4, "ff_size": 64, "layers": 2}


@pytest.fixture(scope="module")
def models():
    gru = {"embed_size": 16, "hidden_size": 32}
    return {
        name: train(config_from_dict({"model": model, "train": {"epochs": 3}}), progress=False)
        for name, model in (("gru", gru), ("transformer", TRANSFORMER))
    }


@pytest.fixture(scope="module")
def client(models):
    limits = Limits(max_sentences=8, max_chars=200, max_body_bytes=4096)
    with TestClient(create_app(models, limits)) as client:
        yield client


@pytest.mark.parametrize("name", ["gru", "transformer"])
@pytest.mark.parametrize("beam", [1, 5])
def test_translations_are_the_models_own(client, models, name, beam):
    sentences = ["We are happy.", "She loves cats.", "He is tired."]
    response = client.post("/translate", json={"sentences": sentences, "model": name, "beam": beam})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = models[name].translate(sentences, DecodeOptions(beam_size=beam))
    assert body["model"] == name
    assert [t["text"] for t in body["translations"]] == [t.text for t in expected]
    assert [t["score"] for t in body["translations"]] == pytest.approx([t.score for t in expected], abs=1e-4)
    assert "attention" not in body["translations"][0]  # only on request


def test_the_first_model_is_the_default(client):
    assert client.post("/translate", json={"sentences": ["Hi."]}).json()["model"] == "gru"


@pytest.mark.parametrize(("name", "layers", "heads"), [("gru", 1, 1), ("transformer", 2, 4)])
def test_attention_per_layer_and_head_on_request(client, name, layers, heads):
    body = client.post(
        "/translate", json={"sentences": ["She loves cats."], "model": name, "attention": True}
    )
    t = body.json()["translations"][0]
    rows, columns = len(t["tokens"]), len(t["src_tokens"])
    assert np.shape(t["attention"]) == (rows, columns)
    assert np.shape(t["maps"]["cross"]) == (layers, heads, rows, columns)
    assert np.allclose(np.mean(t["maps"]["cross"][-1], axis=0), t["attention"], atol=1e-3)
    assert np.allclose(np.sum(t["attention"], axis=1), 1, atol=1e-2)
    if name == "transformer":
        assert np.shape(t["maps"]["encoder"]) == (layers, heads, columns, columns)
        assert np.shape(t["maps"]["decoder"]) == (layers, heads, rows, rows)


def test_n_best_alternatives_best_first(client):
    body = client.post("/translate", json={"sentences": ["We are sad."], "beam": 4, "n_best": 3}).json()
    t = body["translations"][0]
    assert len(t["alternatives"]) == 3
    assert t["alternatives"][0] == {"text": t["text"], "score": t["score"]}


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b'{"sentences": "We are happy."}', 422, "sentences: Input should be a valid list"),
        (b'{"sentences": [1, 2]}', 422, "sentences.0: Input should be a valid string"),
        (b'{"sentences": ["Hi."], "beam": "5"}', 422, "beam: Input should be a valid integer"),
        (b'{"sentences": ["Hi."], "speed": 3}', 422, "speed: Extra inputs are not permitted"),
        (b"{}", 422, "sentences: Field required"),
        (b'{"sentences": []}', 422, "sentences: empty"),
        (b'{"sentences": ["Hi.", "  "]}', 422, "sentences[1]: empty"),
        (b'{"sentences": ["' + b"a" * 201 + b'"]}', 413, "sentences[0]: 201 characters, the limit is 200"),
        (b'{"sentences": [' + b",".join([b'"Hi."'] * 9) + b"]}", 413, "9 in one request, the limit is 8"),
        (b'{"sentences": ["Hi."], "beam": 0}', 422, "beam: must be between 1 and 16"),
        (b'{"sentences": ["Hi."], "beam": 2, "n_best": 3}', 422, "n_best: must be between 1 and beam"),
        (
            b'{"sentences": ["Hi."], "model": "nope"}',
            404,
            "model 'nope' is not loaded; loaded: gru, transformer",
        ),
        (b'{"sentences": ["Hi."], "model": "../../etc/passwd"}', 404, "is not loaded"),
        (b'{"sentences": ["' + b"a" * 5000 + b'"]}', 413, "over the limit of 4,096 bytes"),
    ],
)
def test_bad_requests_get_the_documented_json_error_and_service_goes_on(client, body, status, message):
    response = client.post("/translate", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["status"] == status and message in error["message"]
    assert client.post("/translate", json={"sentences": ["We are happy."]}).status_code == 200


def test_a_streamed_body_over_the_limit_is_refused(client):
    def chunks():
        yield b'{"sentences": ["'
        for _ in range(10):
            yield b"a" * 1000
        yield b'"]}'

    response = client.post("/translate", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413


def test_models_health_and_openapi(client):
    assert client.get("/health").json() == {"status": "ok"}
    info = {m["name"]: m for m in client.get("/models").json()}
    assert info["transformer"]["architecture"] == "transformer" and info["transformer"]["heads"] == 4
    assert info["gru"]["attention"] == "additive" and info["gru"]["parameters"] > 0
    assert info["gru"]["alternatives"] and info["transformer"]["alternatives"]
    schema = client.get("/openapi.json").json()
    request = schema["components"]["schemas"]["TranslateRequest"]["properties"]
    assert {"sentences", "model", "beam", "n_best", "alpha", "attention", "prefix", "top_k"} == set(request)
    assert {"/translate", "/score", "/models", "/health"} <= set(schema["paths"])
    assert client.get("/docs").status_code == 404  # its page would load scripts from a CDN


def test_the_page_and_its_files_need_nothing_from_the_internet(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for path in ("/", "/static/app.js", "/static/style.css"):
        text = client.get(path).text
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, path


class _SlowEcho:
    """A stand-in engine: records each call's sentences, answers each with its own text.  It has no
    step-by-step model (as a CTranslate2 export): no alternatives, no completion."""

    model = None

    def __init__(self, seconds: float):
        self.seconds, self.calls, self.prefixes, self.scored, self.top_ks = seconds, [], [], [], []

    def translate_n_best(self, sentences, options, *, batch_size, prefix=None):
        self.calls.append(list(sentences))
        self.prefixes.append(prefix)
        time.sleep(self.seconds)
        return [[Translation(s.upper(), [], [], -1.0, None)] for s in sentences]

    def score(self, sources, targets, *, batch_size, top_k=0):
        self.scored.append(list(zip(sources, targets, strict=True)))
        self.top_ks.append(top_k)
        time.sleep(self.seconds)
        return [
            Score([t, "<eos>"], [s, "<eos>"], [-1.0, -0.5], -1.5, None)
            for s, t in zip(sources, targets, strict=True)
        ]


def _run_clients(batcher: Batcher, count: int) -> list:
    async def main():
        task = asyncio.create_task(batcher.run())
        try:
            return await asyncio.gather(
                *(batcher.translate([f"sentence {i}"], DecodeOptions()) for i in range(count)),
                return_exceptions=True,
            )
        finally:
            task.cancel()

    return asyncio.run(main())


def test_concurrent_requests_share_model_calls_and_each_gets_its_own_answer():
    model = _SlowEcho(0.02)
    results = _run_clients(Batcher(model, Limits(max_batch=8), ThreadPoolExecutor(1)), 32)
    assert [r[0][0].text for r in results] == [f"SENTENCE {i}" for i in range(32)]
    assert max(len(c) for c in model.calls) == 8 and len(model.calls) <= 8
    assert sorted(s for c in model.calls for s in c) == sorted(f"sentence {i}" for i in range(32))


def test_max_batch_one_turns_batching_off():
    model = _SlowEcho(0.0)
    _run_clients(Batcher(model, Limits(max_batch=1), ThreadPoolExecutor(1)), 5)
    assert [len(c) for c in model.calls] == [1] * 5


def test_a_request_that_waits_too_long_times_out():
    results = _run_clients(Batcher(_SlowEcho(0.5), Limits(timeout=0.1), ThreadPoolExecutor(1)), 1)
    assert isinstance(results[0], TimeoutError)


def test_the_api_answers_504_when_the_model_is_too_slow():
    with TestClient(create_app({"slow": _SlowEcho(0.5)}, Limits(timeout=0.1))) as client:
        response = client.post("/translate", json={"sentences": ["Hi."]})
    assert response.status_code == 504
    assert "no answer within 0.1 s" in response.json()["error"]["message"]


def test_serve_command_names_what_is_wrong_before_starting(tmp_path, capsys):
    from attnmt.cli import main

    assert main(["serve", str(tmp_path / "nope")]) == 1
    assert "nope: model directory not found" in capsys.readouterr().err
    assert main(["serve", f"={tmp_path}"]) == 1
    assert "an empty model name" in capsys.readouterr().err


class _NoAttention(_SlowEcho):
    """A stand-in for a model without attention (the Cho et al. baseline)."""

    def attention_maps(self, translation):
        return {}


def test_absent_fields_are_left_out_not_sent_as_null():
    with TestClient(create_app({"baseline": _NoAttention(0.0)})) as client:
        plain = client.post("/translate", json={"sentences": ["Hi."]}).json()["translations"][0]
        asked = client.post("/translate", json={"sentences": ["Hi."], "attention": True}).json()
        schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert set(plain) == {"text", "score"}  # no attention unless requested, no alternatives for n_best 1
    assert set(asked["translations"][0]) == {"text", "score", "src_tokens", "tokens", "maps"}
    assert None not in asked["translations"][0].values()
    fields = schema["TranslationOut"]["properties"]
    assert schema["TranslationOut"]["required"] == ["text", "score"]
    assert all("null" not in str(field) for field in fields.values())  # the schema promises no nulls


# ---- forced prefixes and scoring -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gru", "transformer"])
@pytest.mark.parametrize("beam", [1, 5])
def test_a_prefix_begins_the_translation_as_in_python(client, models, name, beam):
    sentences, prefix = ["We are happy.", "She loves cats.", "He is tired."], ["Ils", "", "Elle est"]
    body = {"sentences": sentences, "model": name, "beam": beam, "prefix": prefix, "attention": True}
    response = client.post("/translate", json=body)
    assert response.status_code == 200, response.text
    got = response.json()["translations"]
    expected = models[name].translate(sentences, DecodeOptions(beam_size=beam), prefix=prefix)
    assert [t["text"] for t in got] == [t.text for t in expected]
    assert [t["score"] for t in got] == pytest.approx([t.score for t in expected], abs=1e-4)
    assert got[2]["tokens"][:2] == ["Elle", "est"]
    assert np.shape(got[2]["attention"]) == (len(got[2]["tokens"]), len(got[2]["src_tokens"]))


@pytest.mark.parametrize("name", ["gru", "transformer"])
def test_score_round_trip_equals_python_and_the_translations_own_score(client, models, name):
    sources = ["We are happy.", "She loves cats."]
    translated = client.post(
        "/translate", json={"sentences": sources, "model": name, "beam": 1, "attention": True}
    ).json()
    targets = [t["text"] for t in translated["translations"]]
    response = client.post("/score", json={"sources": sources, "targets": targets, "model": name})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = models[name].score(sources, targets)
    assert body["model"] == name
    compared = 0
    for got, e, t in zip(body["scores"], expected, translated["translations"], strict=True):
        assert got["tokens"] == e.tokens and got["src_tokens"] == e.src_tokens
        assert got["log_probs"] == pytest.approx(e.log_probs, abs=1e-5)
        if got["tokens"] == t["tokens"]:  # the text round-trips (an <unk> would not)
            assert got["total"] == pytest.approx(t["score"], abs=1e-4)  # the translation's own score
            compared += 1
        assert "attention" not in got  # only on request
    assert compared > 0
    asked = client.post(
        "/score", json={"sources": sources, "targets": targets, "model": name, "attention": True}
    )
    first = asked.json()["scores"][0]
    assert np.shape(first["attention"]) == (len(first["tokens"]), len(first["src_tokens"]))


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/translate", b'{"sentences": ["Hi.", "Yes."], "prefix": ["Il"]}', 422, "prefix: 1 for 2 sentences"),
        (
            "/translate",
            b'{"sentences": ["Hi."], "prefix": "Il"}',
            422,
            "prefix: Input should be a valid list",
        ),
        (
            "/translate",
            b'{"sentences": ["Hi."], "prefix": ["' + b"a" * 201 + b'"]}',
            413,
            "prefix[0]: 201 characters",
        ),
        ("/score", b"{not json", 400, "not valid JSON"),
        ("/score", b'{"sources": ["Hi."]}', 422, "targets: Field required"),
        ("/score", b'{"sources": ["Hi."], "targets": ["Salut."], "beam": 2}', 422, "beam: Extra inputs"),
        ("/score", b'{"sources": [], "targets": []}', 422, "sources: empty"),
        ("/score", b'{"sources": ["Hi.", "Yes."], "targets": ["Salut."]}', 422, "targets: 1 for 2 sources"),
        (
            "/score",
            b'{"sources": ["Hi."], "targets": ["' + b"a" * 201 + b'"]}',
            413,
            "targets[0]: 201 characters",
        ),
        (
            "/score",
            b'{"sources": ["' + b"a" * 201 + b'"], "targets": [""]}',
            413,
            "sources[0]: 201 characters",
        ),
        (
            "/score",
            b'{"sources": [' + b",".join([b'"Hi."'] * 9) + b'], "targets": []}',
            413,
            "the limit is 8",
        ),
        (
            "/score",
            b'{"sources": ["Hi."], "targets": ["Salut."], "model": "nope"}',
            404,
            "model 'nope' is not",
        ),
    ],
)
def test_bad_prefixes_and_score_requests_get_json_errors(client, path, body, status, message):
    response = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["status"] == status and message in error["message"]


def test_prefixed_and_plain_requests_share_a_call_and_scoring_waits_its_turn_in_the_queue():
    model = _SlowEcho(0.02)
    batcher = Batcher(model, Limits(max_batch=8, batch_window=0.05), ThreadPoolExecutor(1))

    async def main():
        task = asyncio.create_task(batcher.run())
        try:
            return await asyncio.gather(
                batcher.translate(["a"], DecodeOptions(), ["Il"]),
                batcher.score(["b"], ["Salut."]),
                batcher.translate(["c"], DecodeOptions()),
            )
        finally:
            task.cancel()

    translated, scored, plain = asyncio.run(main())
    assert translated[0][0].text == "A" and plain[0][0].text == "C" and scored[0].tokens[0] == "Salut."
    assert model.calls == [["a", "c"]] and model.prefixes == [["Il", ""]]  # one call, prefixes aligned
    assert model.scored == [[("b", "Salut.")]]  # its own call, through the same worker


def test_a_score_that_waits_too_long_is_answered_504():
    with TestClient(create_app({"slow": _SlowEcho(0.5)}, Limits(timeout=0.1))) as client:
        response = client.post("/score", json={"sources": ["Hi."], "targets": ["Salut."]})
    assert response.status_code == 504


# ---- the likeliest tokens at each position: the explorer's alternatives ------------------------------


@pytest.mark.parametrize("name", ["gru", "transformer"])
def test_top_k_gives_each_tokens_log_p_and_alternatives_whose_prefix_continues_the_translation(client, name):
    body = {"sentences": ["She loves cats."], "model": name, "beam": 1, "top_k": 3}
    t = client.post("/translate", json=body).json()["translations"][0]
    assert len(t["log_probs"]) == len(t["candidates"]) == len(t["tokens"])
    assert sum(t["log_probs"]) == pytest.approx(t["score"], abs=1e-4)
    assert all(len(row) == 3 for row in t["candidates"])
    assert [row[0]["token"] for row in t["candidates"][:-1]] == t["tokens"][:-1]  # greedy took the first
    assert "attention" not in t and "maps" not in t  # only on request
    picked = next(c for c in t["candidates"][1][1:] if "prefix" in c)  # another word in second place
    assert picked["prefix"].split()[-1] == picked["token"] or picked["token"] in picked["prefix"]
    body |= {"prefix": [picked["prefix"]], "attention": True}
    again = client.post("/translate", json=body).json()["translations"][0]
    assert again["tokens"][:2] == [t["tokens"][0], picked["token"]]
    assert again["text"].startswith(picked["prefix"])
    assert again["candidates"][1][0]["log_prob"] == pytest.approx(t["candidates"][1][0]["log_prob"], abs=1e-4)
    assert np.shape(again["attention"]) == (len(again["tokens"]), len(again["src_tokens"]))


@pytest.mark.parametrize("name", ["gru", "transformer"])
def test_score_with_top_k_equals_python(client, models, name):
    sources, targets = ["We are happy.", "She loves cats."], ["Nous sommes heureux.", "Elle aime Zorglub."]
    body = {"sources": sources, "targets": targets, "model": name, "top_k": 2}
    got = client.post("/score", json=body).json()["scores"]
    expected = models[name].score(sources, targets, top_k=2)
    for g, e in zip(got, expected, strict=True):
        assert [[c["token"] for c in row] for row in g["candidates"]] == [
            [t for t, _ in r] for r in e.candidates
        ]
        np.testing.assert_allclose(
            [[c["log_prob"] for c in row] for row in g["candidates"]],
            [[lp for _, lp in r] for r in e.candidates],
        )
        for row in g["candidates"]:  # no text can begin with the end or an unknown word
            assert all(("prefix" in c) == (c["token"] not in ("<eos>", "<unk>")) for c in row)
    assert "candidates" not in client.post("/score", json=body | {"top_k": 0}).json()["scores"][0]


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/translate", {"sentences": ["Hi."], "top_k": 21}, "top_k: must be between 0 and 20, got 21"),
        ("/translate", {"sentences": ["Hi."], "top_k": -1}, "top_k: must be between 0 and 20, got -1"),
        ("/translate", {"sentences": ["Hi."], "top_k": "3"}, "top_k: Input should be a valid integer"),
        (
            "/score",
            {"sources": ["Hi."], "targets": ["Salut."], "top_k": 99},
            "top_k: must be between 0 and 20",
        ),
    ],
)
def test_top_k_is_bounded(client, path, body, message):
    response = client.post(path, json=body)
    assert response.status_code == 422, response.text
    assert message in response.json()["error"]["message"]


def test_scoring_requests_with_different_top_k_share_a_call_at_the_largest():
    model = _SlowEcho(0.02)
    batcher = Batcher(model, Limits(max_batch=8, batch_window=0.05), ThreadPoolExecutor(1))

    async def main():
        task = asyncio.create_task(batcher.run())
        try:
            return await asyncio.gather(batcher.score(["a"], ["A"], 1), batcher.score(["b"], ["B"], 5))
        finally:
            task.cancel()

    asyncio.run(main())
    assert model.scored == [[("a", "A"), ("b", "B")]] and model.top_ks == [5]


def test_a_model_without_alternatives_says_so_and_still_scores():
    with TestClient(create_app({"engine": _SlowEcho(0.0)})) as client:
        for path, body in [
            ("/translate", {"sentences": ["Hi."], "top_k": 2}),
            ("/score", {"sources": ["Hi."], "targets": ["Salut."], "top_k": 2}),
        ]:
            response = client.post(path, json=body)
            assert response.status_code == 422
            assert "top_k: model 'engine' gives no alternatives" in response.json()["error"]["message"]
        scored = client.post("/score", json={"sources": ["Hi."], "targets": ["Salut."]})
    assert scored.status_code == 200 and scored.json()["scores"][0]["tokens"] == ["Salut.", "<eos>"]
