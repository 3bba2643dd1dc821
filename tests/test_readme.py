"""The README's Python example runs as written and prints what it says."""

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"


@pytest.mark.slow
def test_readme_python_example(tmp_path, monkeypatch):
    (code,) = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {})
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("Nous sommes heureux")
    assert (tmp_path / "runs" / "toy" / "config.yaml").is_file()
    assert any(line.startswith("[") for line in lines)  # the batched translations
