"""Bad input, systematically: whatever bytes reach a reader, the answer is the documented error
(``AttnmtError`` naming the file, or a JSON 4xx from the service) — never another exception, a hang, or
a file written outside the output directory.  ``FUZZ_EXAMPLES`` raises the count for a longer run."""

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attnmt.config import load_config
from attnmt.corpora import load_pairs, read_parallel, read_tsv
from attnmt.errors import AttnmtError
from attnmt.modeldir import load_model, save_model
from attnmt.server import Limits, create_app
from attnmt.tokenization import SubwordTokenizer, WordTokenizer
from attnmt.vocab import Vocabulary

pytestmark = pytest.mark.slow  # ~1 minute: CI runs it, the everyday tier does not
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
BYTES = st.one_of(
    st.binary(max_size=2000),
    st.text(max_size=500).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.lists(st.text(max_size=40), max_size=20).map(
        lambda cells: "\t".join(cells).encode("utf-8", "surrogatepass")
    ),
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)


def _only_documented_errors(function, *args):
    try:
        function(*args)
    except AttnmtError as e:
        assert "\n" not in str(e)  # one line, for the CLI


@FUZZ
@given(data=BYTES)
def test_corpus_readers(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("corpus")
    (folder / "pairs.tsv").write_bytes(data)
    (folder / "src.txt").write_bytes(data)
    (folder / "tgt.txt").write_bytes(data[::-1])
    _only_documented_errors(read_tsv, folder / "pairs.tsv")
    _only_documented_errors(read_parallel, folder / "src.txt", folder / "tgt.txt")
    _only_documented_errors(load_pairs, f"{folder}/src.txt,{folder}/tgt.txt")
    assert sorted(p.name for p in folder.iterdir()) == ["pairs.tsv", "src.txt", "tgt.txt"]


@FUZZ
@given(text=st.text(max_size=300))
def test_tokenizers_take_any_text(subword, text):
    for tokenizer in (WordTokenizer("en"), WordTokenizer("fr"), subword):
        tokens = tokenizer.tokenize(text)
        assert all(isinstance(t, str) and t for t in tokens)
        tokenizer.detokenize(tokens)


@pytest.fixture(scope="module")
def subword():
    sentences = [f"sentence number {i} with some words and punctuation!" for i in range(200)]
    return SubwordTokenizer.train(sentences, vocab_size=400, model_type="bpe")


@FUZZ
@given(data=st.one_of(BYTES, JSON.map(lambda v: json.dumps(v).encode())))
def test_vocabulary_and_subword_model_files(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("vocab")
    (folder / "vocab.json").write_bytes(data)
    (folder / "x.spm").write_bytes(data)
    _only_documented_errors(Vocabulary.load, folder / "vocab.json")
    _only_documented_errors(SubwordTokenizer.load, folder / "x.spm")


@FUZZ
@given(data=st.one_of(BYTES, JSON.map(lambda v: yaml.safe_dump(v).encode())))
def test_config_files(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("config") / "experiment.yaml"
    path.write_bytes(data)
    _only_documented_errors(load_config, path)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    from attnmt.config import config_from_dict
    from attnmt.training import train

    config = config_from_dict({"model": {"embed_size": 8, "hidden_size": 16}, "train": {"epochs": 1}})
    directory = tmp_path_factory.mktemp("model") / "toy"
    save_model(train(config, progress=False), directory)
    return directory


@FUZZ
@given(
    name=st.sampled_from(["config.yaml", "src_vocab.json", "tgt_vocab.json", "weights"]),
    data=st.one_of(BYTES, JSON.map(lambda v: yaml.safe_dump(v).encode())),
)
def test_model_directories(saved_model, tmp_path_factory, name, data):
    directory = Path(shutil.copytree(saved_model, tmp_path_factory.mktemp("damaged") / "model"))
    if name == "weights":
        (name,) = [p.name for p in directory.glob("model-*.safetensors")]
    (directory / name).write_bytes(data)
    _only_documented_errors(load_model, directory)


@pytest.fixture(scope="module")
def client(saved_model):
    with TestClient(create_app({"toy": load_model(saved_model)}, Limits(max_body_bytes=10_000))) as client:
        yield client


@FUZZ
@given(
    body=st.one_of(
        BYTES,
        JSON.map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries(
            {"sentences": st.lists(st.text(max_size=50), max_size=5)},
            optional={"beam": JSON, "n_best": JSON, "alpha": JSON, "model": JSON, "attention": JSON},
        ).map(lambda v: json.dumps(v).encode()),
    )
)
def test_http_requests(client, body):
    response = client.post("/translate", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code in (200, 400, 404, 413, 422), response.text
    if response.status_code != 200:
        error = response.json()["error"]
        assert error["status"] == response.status_code and error["message"]
