"""The command line, as a user runs it: real subprocesses where exit codes and tracebacks matter."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from attnmt.cli import main

TINY = ["--set", "model.embed_size=16", "--set", "model.hidden_size=32", "--set", "train.epochs=3", "--quiet"]


def _attnmt(*args: str, stdin: bytes = b"", cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "attnmt.cli", *args], input=stdin, capture_output=True, cwd=cwd, timeout=300
    )


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "toy"
    assert main(["train", "--model-dir", str(path), *TINY]) == 0
    return path


@pytest.mark.slow  # a real process translating a stream: 8 s
def test_translate_from_stdin_keeps_order_and_line_count(model_dir):
    lines = [
        "She loves cats.",
        "",
        "...",
        "Xylophones quarrel with zebras.",
        "They are happy.",
        "We are sad.",
    ]
    result = _attnmt("translate", str(model_dir), stdin="\n".join(lines).encode() + b"\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode().split("\n")
    assert out[-1] == "" and len(out) - 1 == len(lines)
    assert out[1] == ""  # an empty line stays empty
    single = [
        _attnmt("translate", str(model_dir), "--text", line).stdout.decode().strip() for line in lines[-2:]
    ]
    assert out[-3:-1] == single  # batched = one at a time


def test_translate_text_in_process_prints_what_the_library_translates(model_dir, capsys):
    from attnmt.modeldir import load_model

    assert main(["translate", str(model_dir), "--text", "I am happy.", "--text", "He is tired."]) == 0
    expected = [t.text for t in load_model(model_dir).translate(["I am happy.", "He is tired."])]
    assert capsys.readouterr().out.splitlines() == expected  # one line each, in order, beam 5 as by default


def test_int8_translates_like_fp32(model_dir, capsys):
    """--int8 swaps every linear and GRU layer for its int8 twin (but one-output layers, additive
    attention's v_a) and translates (nearly) the same."""
    import torch

    from attnmt.device import quantize_int8
    from attnmt.modeldir import load_model

    quantized = quantize_int8(load_model(model_dir).model.eval())
    float_layers = [m for m in quantized.modules() if type(m) in (torch.nn.Linear, torch.nn.GRU)]
    assert all(type(m) is torch.nn.Linear and m.out_features == 1 for m in float_layers)
    texts = ["I am happy.", "He is tired.", "We are sad.", "She loves cats.", "They are here.", "I am cold."]
    args = ["translate", str(model_dir), "--beam", "1", *(x for t in texts for x in ("--text", t))]
    assert main(args) == 0
    fp32 = capsys.readouterr().out.splitlines()
    assert main([*args, "--int8"]) == 0
    int8 = capsys.readouterr().out.splitlines()
    assert len(int8) == len(texts)
    assert sum(a == b for a, b in zip(fp32, int8, strict=True)) >= len(texts) - 1


def test_a_thousand_word_sentence_translates(model_dir, capsys):
    long = " ".join(["the cat sees the dog ."] * 200)
    assert main(["translate", str(model_dir), "--text", long]) == 0
    assert capsys.readouterr().out.strip()


def _assert_clean_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    err = result.stderr.decode()
    assert result.returncode != 0
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err


def test_missing_model_directory(tmp_path):
    _assert_clean_error(_attnmt("translate", str(tmp_path / "nope"), "--text", "hi"), "nope", "not found")


def test_stdin_that_is_not_utf8(model_dir):
    _assert_clean_error(
        _attnmt("translate", str(model_dir), stdin=b"fine\n\xff\xfe bad\n"), "line 2", "UTF-8"
    )


def test_config_typo_is_named_before_training(tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text("model:\n  atention: dot\n")
    result = _attnmt("train", str(config), "--model-dir", str(tmp_path / "m"))
    _assert_clean_error(result, "model.atention", "model.attention")
    assert not (tmp_path / "m").exists()


def test_train_does_not_overwrite_a_saved_model(model_dir, capsys):
    before = {p: p.read_bytes() for p in model_dir.rglob("*") if p.is_file()}
    assert main(["train", "--model-dir", str(model_dir), *TINY]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in model_dir.rglob("*") if p.is_file()} == before


def test_train_from_a_config_file_then_translate(tmp_path, capsys):
    config = tmp_path / "exp.yaml"
    config.write_text("model:\n  attention: dot\n  embed_size: 16\n  hidden_size: 32\ntrain:\n  epochs: 2\n")
    assert main(["train", str(config), "--model-dir", str(tmp_path / "m"), "--quiet"]) == 0
    assert main(["translate", str(tmp_path / "m"), "--text", "She loves cats."]) == 0
    assert capsys.readouterr().out.strip()


@pytest.mark.slow
def test_demo_translates_we_are_happy_and_saves_a_heatmap(tmp_path):
    result = _attnmt("demo", "-o", "heat.png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode()
    for step in range(1, 9):
        assert f"Step {step} ·" in out
    assert "'We are happy' → 'Nous sommes heureux'\n" in out  # clean: no stutter, no guessed '?'
    assert (tmp_path / "heat.png").read_bytes().startswith(b"\x89PNG")


def test_curves_plot_several_runs(tmp_path, capsys):
    for name, bleu in (("attention", [5.0, 12.0]), ("baseline", [3.0, 6.0])):
        (tmp_path / name).mkdir()
        records = [
            {"step": 10 * i, "minutes": i, "dev_loss": 3.0 - i, "bleu": b} for i, b in enumerate(bleu, 1)
        ]
        (tmp_path / name / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "curves.png"
    assert main(["curves", str(tmp_path / "attention"), str(tmp_path / "baseline"), "-o", str(out)]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")
    assert main(["curves", str(tmp_path / "nowhere"), "-o", str(out)]) == 1
    assert "nowhere/train.jsonl: no training log" in capsys.readouterr().err


def test_n_best_lists_each_sentences_best_translations_first(model_dir, capsys):
    texts = ["--text", "She loves cats.", "--text", "We are sad."]
    assert main(["translate", str(model_dir), "--beam", "3", *texts]) == 0
    one_best = capsys.readouterr().out.splitlines()
    assert main(["translate", str(model_dir), "--beam", "3", "--n-best", "3", *texts]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [r[0] for r in rows] == ["0", "0", "0", "1", "1", "1"]
    assert [rows[0][2], rows[3][2]] == one_best
    assert main(["translate", str(model_dir), "--beam", "2", "--n-best", "3", *texts]) == 1
    assert "n_best: must be between 1 and beam_size (2), got 3" in capsys.readouterr().err


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_attention_heatmap_grows_with_the_sentence(model_dir, tmp_path, capsys):
    short, long = tmp_path / "short.png", tmp_path / "long.png"
    assert main(["attention", str(model_dir), "--text", "We are happy.", "-o", str(short)]) == 0
    text, alignment = capsys.readouterr().out.rstrip("\n").split("\t")
    assert text and all(len(link.split("-")) == 2 for link in alignment.split())
    sentence = " ".join(["she loves cats and he loves dogs ."] * 6)  # 48 tokens
    assert main(["attention", str(model_dir), "--text", sentence, "-o", str(long)]) == 0
    (w1, h1), (w2, h2) = _png_size(short), _png_size(long)
    assert w2 > 3 * w1 and h2 >= h1  # rows follow the (model-dependent) translation


def test_attention_writes_one_picture_per_sentence(model_dir, tmp_path, capsys):
    texts = ["--text", "She loves cats.", "--text", "We are sad.", "--text", "He is tired."]
    assert main(["attention", str(model_dir), *texts, "-o", str(tmp_path / "pics"), "--format", "svg"]) == 0
    assert sorted(p.name for p in (tmp_path / "pics").iterdir()) == [
        f"sentence-000{i}.svg" for i in (1, 2, 3)
    ]
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert main(["attention", str(model_dir), *texts, "-o", str(tmp_path / "one.png")]) == 1
    assert "3 sentences need a directory" in capsys.readouterr().err


@pytest.fixture
def held_out_tsv(tmp_path) -> Path:
    pairs = [
        ("She loves cats.", "Elle aime les chats."),
        ("We are happy.", "Nous sommes heureux."),
        ("We are happy.", "Nous sommes contents."),  # a second reference
        (
            "He is tired and she is sad and they are hungry.",
            "Il est fatigué et elle est triste et ils ont faim.",
        ),
    ]
    path = tmp_path / "test.tsv"
    path.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    return path


def test_evaluate_scores_with_signatures_and_writes_hypotheses(model_dir, held_out_tsv, tmp_path, capsys):
    out = tmp_path / "hyps.txt"
    assert main(["evaluate", str(model_dir), "--data", str(held_out_tsv), "-o", str(out), "--by-length"]) == 0
    printed = capsys.readouterr().out
    assert "3 sentences, 4 references" in printed
    assert "BLEU" in printed and "nrefs:var|case:mixed|eff:no|tok:13a" in printed
    assert "nrefs:var|case:mixed|eff:yes|nc:6|nw:0" in printed  # chrF
    assert len(out.read_text(encoding="utf-8").splitlines()) == 3
    table = printed.split("chrF\n")[-1].splitlines()
    assert [row.split()[0] for row in table] == ["1-5", "11-15"]
    assert sum(int(row.split()[1]) for row in table) == 3


def test_evaluate_plots_bleu_by_length_for_several_models(
    model_dir, held_out_tsv, tmp_path, capsys, monkeypatch
):
    import shutil

    import attnmt.plotting

    twin = tmp_path / "twin" / model_dir.name  # same last name, another model directory
    shutil.copytree(model_dir, twin)
    drawn = {}
    real = attnmt.plotting.plot_bleu_by_length
    monkeypatch.setattr(
        attnmt.plotting, "plot_bleu_by_length", lambda r, path: drawn.update(r) or real(r, path)
    )
    plot = tmp_path / "by-length.svg"
    args = ["evaluate", str(model_dir), str(twin), "--data", str(held_out_tsv), "--by-length", "--beam", "1"]
    assert main([*args, "--plot", str(plot)]) == 0
    assert sorted(drawn) == sorted([str(model_dir), str(twin)])  # one line per model
    assert all(sum(b.sentences for b in buckets) == 3 for buckets in drawn.values())
    assert plot.read_text().count("<svg") == 1
    assert main([*args[:-3], "--plot", str(plot)]) == 1
    assert "--plot: draws the --by-length scores" in capsys.readouterr().err


def _assert_usage_error(args: list[str], capsys, *needles: str) -> None:
    """argparse refuses ``args`` before any work: one line on stderr, exit code 2."""
    with pytest.raises(SystemExit) as refused:
        main(args)
    err = capsys.readouterr().err
    assert refused.value.code == 2
    assert len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["serve", "m", "--port", "99999"], "argument --port: must be between 1 and 65535, got 99999"),
        (["serve", "m", "--port", "0"], "argument --port: must be between 1 and 65535, got 0"),
        (["serve", "m", "--port", "http"], "argument --port: expected an integer, got 'http'"),
        (["serve", "m", "--max-batch", "-1"], "argument --max-batch: must be at least 1, got -1"),
        (["serve", "m", "--max-sentences", "0"], "argument --max-sentences: must be at least 1"),
        (["serve", "m", "--max-chars", "0"], "argument --max-chars: must be at least 1"),
        (["serve", "m", "--timeout", "0"], "argument --timeout: must be more than 0, got 0"),
        (["serve", "m", "--timeout", "inf"], "argument --timeout: must be more than 0, got inf"),
        (["serve", "m", "--batch-window-ms", "-5"], "argument --batch-window-ms: must be at least 0"),
        (["translate", "m", "--beam", "0"], "argument --beam: must be at least 1, got 0"),
        (["translate", "m", "--n-best", "0"], "argument --n-best: must be at least 1, got 0"),
        (["translate", "m", "--batch-size", "0"], "argument --batch-size: must be at least 1, got 0"),
        (["translate", "m", "--alpha", "-1"], "argument --alpha: must be at least 0, got -1"),
        (["translate", "m", "--alpha", "nan"], "argument --alpha: must be at least 0, got nan"),
        (["evaluate", "m", "--batch-size", "-64"], "argument --batch-size: must be at least 1"),
        (["evaluate", "m", "--beam", "-5"], "argument --beam: must be at least 1"),
        (["attention", "m", "-o", "a.png", "--layer", "0"], "argument --layer: must be at least 1"),
        (["attention", "m", "-o", "a.png", "--head", "-2"], "argument --head: must be at least 1"),
        (
            ["attention", "m", "-o", "a.png", "--threshold", "1.5"],
            "--threshold: must be more than 0 and at most 1",
        ),
        (
            ["attention", "m", "-o", "a.png", "--threshold", "0"],
            "--threshold: must be more than 0 and at most 1",
        ),
        (["average", "m", "-o", "avg", "--last", "0"], "argument --last: must be at least 1, got 0"),
        (["demo", "--seed", "-1"], "argument --seed: must be between 0 and 4294967295, got -1"),
    ],
)
def test_a_numeric_option_out_of_range_is_refused_before_any_work(
    args, needle, capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # nothing may be written, but if it were, not into the checkout
    _assert_usage_error(args, capsys, needle)
    assert list(tmp_path.iterdir()) == []


def test_serve_on_an_impossible_port_is_one_line_not_a_server_elsewhere(tmp_path):
    result = _attnmt("serve", str(tmp_path), "--port", "99999")
    _assert_clean_error(result, "--port", "65535")
    assert result.returncode == 2 and b"serving" not in result.stderr


def test_an_unknown_command_is_a_one_line_usage_error():
    result = _attnmt("translat", "runs/toy")
    _assert_clean_error(result, "invalid choice: 'translat'")
    assert result.returncode == 2


def test_a_device_error_names_the_option_it_came_from(tmp_path, capsys):
    assert main(["translate", str(tmp_path), "--text", "Hi.", "--device", "cuda:99"]) == 1
    err = capsys.readouterr().err
    assert "--device: cuda:99 is not available" in err and "train.device" not in err
    assert main(["serve", str(tmp_path), "--device", "gpu"]) == 1
    assert "--device: 'gpu' is not one of auto, cpu, cuda" in capsys.readouterr().err


# ---- forced prefixes and scoring ----------------------------------------------------------------------


def test_prefix_begins_every_translation_as_the_python_api_does(model_dir, capsys):
    from attnmt.modeldir import load_model
    from attnmt.translator import DecodeOptions

    texts = ["She loves cats.", "We are sad."]
    args = ["translate", str(model_dir), "--beam", "2", *(x for t in texts for x in ("--text", t))]
    assert main([*args, "--prefix", "Nous sommes"]) == 0
    out = capsys.readouterr().out.splitlines()
    expected = load_model(model_dir).translate(texts, DecodeOptions(beam_size=2), prefix=["Nous sommes"] * 2)
    assert out == [t.text for t in expected] and all(line.startswith("Nous sommes") for line in out)
    assert main([*args, "--prefix", "Nous", "--tsv"]) == 1
    assert "--prefix: not with --tsv" in capsys.readouterr().err


def test_tsv_gives_each_line_its_own_prefix(model_dir, capsys):
    result = _attnmt("translate", str(model_dir), "--tsv", stdin=b"She loves cats.\tIls\nWe are sad.\t\n")
    assert result.returncode == 0, result.stderr
    prefixed, plain = result.stdout.decode().splitlines()
    assert main(["translate", str(model_dir), "--text", "She loves cats.", "--prefix", "Ils"]) == 0
    assert main(["translate", str(model_dir), "--text", "We are sad."]) == 0
    assert [prefixed, plain] == capsys.readouterr().out.splitlines()
    assert prefixed.startswith("Ils")


@pytest.mark.parametrize("command", ["translate --tsv", "score"])
def test_a_line_without_a_tab_is_named_by_its_number(model_dir, command):
    name, *options = command.split()
    result = _attnmt(name, str(model_dir), *options, stdin=b"She loves cats.\tElle\nno tab here\n")
    _assert_clean_error(result, "stdin line 2: expected source<TAB>", "one TAB; found 0")


def test_score_prints_each_pairs_log_probabilities_and_draws_its_attention(model_dir, tmp_path, capsys):
    from attnmt.modeldir import load_model

    pairs = [("She loves cats.", "Elle aime les chats."), ("We are sad.", "Nous sommes tristes.")]
    data = tmp_path / "pairs.tsv"
    data.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    pictures = tmp_path / "pictures"
    assert main(["score", str(model_dir), "--input", str(data), "--attention", str(pictures)]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    expected = load_model(model_dir).score([s for s, _ in pairs], [t for _, t in pairs])
    for (total, log_probs, tokens), e in zip(rows, expected, strict=True):
        assert tokens.split() == e.tokens and tokens.endswith("<eos>")
        assert float(total) == pytest.approx(e.total, abs=1e-4)
        assert [float(p) for p in log_probs.split()] == pytest.approx(e.log_probs, abs=1e-4)
    assert sorted(p.name for p in pictures.iterdir()) == ["pair-0001.png", "pair-0002.png"]
    assert _png_size(pictures / "pair-0001.png")[0] > 0
    assert main(["score", str(model_dir), "--input", str(tmp_path / "nope.tsv")]) == 1
    assert "--input" in capsys.readouterr().err
