"""The tutorial notebook runs top to bottom, as a student would run it."""

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "eight-steps.ipynb"


@pytest.mark.slow
def test_the_eight_steps_notebook_runs_and_shows_the_heatmap(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    last = notebook.cells[-1].outputs
    text = "".join(o.get("text", "") for o in last if o.output_type == "stream")
    assert "Nous sommes heureux" in text
    assert any("image/png" in o.get("data", {}) for o in last)
    code = "".join(c.source for c in notebook.cells if c.cell_type == "code")
    assert "nn.Module" not in code and "def " not in code  # a client of the package: no model code
