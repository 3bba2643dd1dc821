import re
from pathlib import Path

import pytest
import yaml

from attnmt.config import Config, config_from_dict, load_config
from attnmt.errors import AttnmtError

TOY_YAML = Path(__file__).parents[1] / "configs" / "toy.yaml"


def test_to_dict_round_trips():
    config = config_from_dict({"model": {"attention": "dot", "hidden_size": 32}, "train": {"lr": 0.5}})
    assert config_from_dict(config.to_dict()) == config


def test_load_yaml_file(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(
        "# an experiment\n"
        "model:\n"
        "  attention: general\n"
        "  hidden_size: 64\n"
        "  bidirectional: false\n"
        "train:\n"
        "  lr: 0.001\n"
        "  epochs: 5\n"
        "  max_steps: 100\n"
        "data:\n"
        "  src_lang: fr\n"
        "  tgt_lang: en\n",
        encoding="utf-8",
    )
    config = load_config(path)
    assert config.model.attention == "general"
    assert config.model.hidden_size == 64
    assert config.model.bidirectional is False
    assert config.model.embed_size == 64  # unset keys keep their defaults
    assert config.train.lr == 0.001
    assert isinstance(config.train.lr, float)
    assert (config.train.epochs, config.train.max_steps) == (5, 100)
    assert (config.data.src_lang, config.data.tgt_lang) == ("fr", "en")


def test_empty_yaml_file_gives_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing set\n", encoding="utf-8")
    assert load_config(path) == Config()


def test_int_is_accepted_for_float():
    config = config_from_dict({"train": {"lr": 1, "clip_norm": 5}})
    assert config.train.lr == 1.0
    assert isinstance(config.train.lr, float)


@pytest.mark.parametrize(
    ("override", "section", "key", "value"),
    [
        ("train.lr=0.01", "train", "lr", 0.01),
        ("model.attention=dot", "model", "attention", "dot"),
        ("data.max_vocab_size=null", "data", "max_vocab_size", None),
        ("data.max_vocab_size=", "data", "max_vocab_size", None),
        ("data.max_vocab_size=500", "data", "max_vocab_size", 500),
        ("train.max_steps=20", "train", "max_steps", 20),
        ("model.bidirectional=false", "model", "bidirectional", False),
        ("train.epochs = 3", "train", "epochs", 3),
        ("model.dropout=0", "model", "dropout", 0.0),
    ],
)
def test_overrides(override, section, key, value):
    config = config_from_dict({"data": {"max_vocab_size": 1000}}, [override])
    assert getattr(getattr(config, section), key) == value


def test_overrides_apply_after_the_file_in_order(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("train:\n  lr: 0.5\n  epochs: 7\n", encoding="utf-8")
    config = load_config(path, ["train.lr=0.01", "train.lr=0.02"])
    assert (config.train.lr, config.train.epochs) == (0.02, 7)


@pytest.mark.parametrize("text", ["1e-3", "5e-4", "1.0e-3"])
def test_scientific_notation_is_a_float(tmp_path, text):
    """Learning rates are usually written like 1e-3, in files and on the command line."""
    assert config_from_dict({}, [f"train.lr={text}"]).train.lr == float(text)
    path = tmp_path / "exp.yaml"
    path.write_text(f"train:\n  lr: {text}\n", encoding="utf-8")
    assert load_config(path).train.lr == float(text)


@pytest.mark.parametrize(
    ("data", "overrides", "expected"),
    [
        pytest.param(
            {"model": {"atention": "dot"}},
            [],
            "model.atention: unknown key; did you mean model.attention?",
            id="misspelled-key",
        ),
        pytest.param({}, ["model.atention=dot"], "did you mean model.attention?", id="misspelled-override"),
        pytest.param({}, ["train.learning_rat=0.1"], "train.learning_rat", id="unknown-key"),
        pytest.param({"modle": {"attention": "dot"}}, [], "did you mean model?", id="misspelled-section"),
        pytest.param({"optimizer": {"lr": 0.1}}, [], "optimizer: unknown key", id="unknown-section"),
        pytest.param({}, ["optimizer.lr=0.1"], "optimizer", id="unknown-section-override"),
        pytest.param({"model": 5}, [], "model: expected a mapping", id="section-not-mapping"),
        pytest.param({}, ["train.lr.x=1"], "train.lr", id="sub-key-of-scalar"),
        pytest.param(
            {"model": {"hidden_size": "big"}}, [], "model.hidden_size: expected int", id="str-for-int"
        ),
        pytest.param(
            {}, ["model.hidden_size=big"], "model.hidden_size: expected int", id="str-for-int-override"
        ),
        pytest.param(
            {"model": {"hidden_size": True}}, [], "model.hidden_size: expected int", id="bool-for-int"
        ),
        pytest.param({}, ["train.epochs=true"], "train.epochs: expected int", id="bool-for-int-override"),
        pytest.param(
            {"model": {"hidden_size": 64.5}}, [], "model.hidden_size: expected int", id="float-for-int"
        ),
        pytest.param({"train": {"lr": True}}, [], "train.lr: expected float", id="bool-for-float"),
        pytest.param(
            {"model": {"bidirectional": 1}}, [], "model.bidirectional: expected bool", id="int-for-bool"
        ),
        pytest.param({}, ["train.seed=null"], "train.seed: expected int", id="null-for-int"),
        pytest.param(
            {},
            ["model.attention=luong"],
            "model.attention: 'luong' is not one of none, dot, general, additive, scaled_dot",
            id="bad-choice",
        ),
        pytest.param(
            {"data": {"tokenizer": "bytes"}},
            [],
            "data.tokenizer: 'bytes' is not one of word, bpe, unigram",
            id="bad-tokenizer",
        ),
        pytest.param({}, ["model.hidden_size=-2"], "model.hidden_size: must be positive", id="negative-size"),
        pytest.param({}, ["model.embed_size=0"], "model.embed_size: must be positive", id="zero-size"),
        pytest.param(
            {}, ["train.batch_tokens=-1"], "train.batch_tokens: must be positive", id="negative-batch"
        ),
        pytest.param(
            {}, ["data.max_vocab_size=-5"], "data.max_vocab_size: must be positive", id="negative-vocab"
        ),
        pytest.param({}, ["train.lr=0"], "train.lr: must be positive", id="zero-lr"),
        pytest.param(
            {}, ["model.dropout=1.5"], "model.dropout: must be between 0 and 1", id="dropout-above-1"
        ),
        pytest.param(
            {}, ["model.dropout=-0.1"], "model.dropout: must be between 0 and 1", id="negative-dropout"
        ),
        pytest.param(
            {}, ["train.teacher_forcing=2"], "train.teacher_forcing: must be between 0 and 1", id="tf-above-1"
        ),
        pytest.param({}, ["model.hidden_size=33"], "model.hidden_size: must be even", id="odd-bidirectional"),
        pytest.param({}, ["data.tgt_lang=en"], "data.tgt_lang: must differ", id="same-languages"),
        pytest.param(
            {},
            ["model.tie_embeddings=true"],
            "model.tie_embeddings: needs model.embed_size (64)",
            id="tie-sizes",
        ),
        pytest.param(
            {},
            ["train.schedule=inverse_sqrt", "train.warmup_steps=0"],
            "train.warmup_steps: must be positive",
            id="no-warmup-for-inverse-sqrt",
        ),
        pytest.param(
            {},
            ["train.schedule=budget"],
            "train.schedule: budget decays over max_steps or max_minutes",
            id="budget-without-budget",
        ),
        pytest.param(
            {}, ["train.decay_share=0"], "train.decay_share: must be positive", id="zero-decay-share"
        ),
        pytest.param({}, ["train.lr"], "train.lr", id="override-without-equals"),
    ],
)
def test_errors_name_the_key(data, overrides, expected):
    with pytest.raises(AttnmtError) as info:
        config_from_dict(data, overrides)
    assert expected in str(info.value)


def test_odd_hidden_size_is_fine_for_a_unidirectional_encoder():
    config = config_from_dict({"model": {"hidden_size": 33, "bidirectional": False}})
    assert config.model.hidden_size == 33


def test_override_without_equals_shows_the_expected_form():
    with pytest.raises(AttnmtError, match="key=value"):
        config_from_dict({}, ["model.attention"])


def test_file_errors_name_the_file_and_key(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("model:\n  hidden_size: lots\n", encoding="utf-8")
    with pytest.raises(AttnmtError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "model.hidden_size" in str(info.value)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("model:\n  attention: dot\n  hidden_size: 64\n embed_size: 8\n", 4),
        ("a: 1\nb: 2\nc: d: e\n", 3),
        ("model:\n  attention: dot\n\tembed_size: 8\n", 3),
    ],
)
def test_invalid_yaml_reports_file_and_line(tmp_path, text, line):
    path = tmp_path / "broken.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(AttnmtError, match=re.escape(f"broken.yaml:{line}:")):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(AttnmtError, match=re.escape("nope.yaml")):
        load_config(tmp_path / "nope.yaml")


def test_config_file_not_utf8(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("model:\n  attention: d\xe9j\xe0\n".encode("latin-1"))
    with pytest.raises(AttnmtError, match=re.escape("latin1.yaml")):
        load_config(path)


def test_config_file_must_be_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- model\n- train\n", encoding="utf-8")
    with pytest.raises(AttnmtError, match=re.escape("list.yaml")):
        load_config(path)


def test_toy_yaml_is_the_demo_configuration():
    """configs/toy.yaml, the example experiment file, spells out exactly what the demo trains."""
    assert load_config(TOY_YAML) == Config()


def test_toy_yaml_lists_every_key():
    """The README sends users to configs/toy.yaml for the meaning of every key: none may be missing."""
    written = yaml.safe_load(TOY_YAML.read_text(encoding="utf-8"))
    assert {section: set(keys) for section, keys in written.items()} == {
        section: set(keys) for section, keys in Config().to_dict().items()
    }


@pytest.mark.parametrize("path", sorted(TOY_YAML.parent.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    """The configs a user picks (by budget, by data set) are valid as shipped; a budget config's name
    says its budget."""
    config = load_config(path)
    budget = re.search(r"-(\d+)min\.yaml$", path.name)
    if budget:
        assert config.train.max_minutes == int(budget.group(1))
        assert config.train.schedule == "budget"
