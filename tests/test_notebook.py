"""notebooks/exploring_retries.ipynb is stored without outputs and executed here, so it never rots."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOK = NOTEBOOKS / "exploring_retries.ipynb"


@pytest.fixture(scope="module")
def executed():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # run where Jupyter would: in the notebook's own directory, so ../samples resolves as for a reader
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return notebook


def outputs_text(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        parts.append(output.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def test_stored_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert json.loads(NOTEBOOK.read_text())["metadata"]["kernelspec"]["name"] == "python3"


def test_samples_are_found_relative_to_the_notebook():
    source = "".join(cell.source for cell in nbformat.read(NOTEBOOK, as_version=4).cells)
    assert 'SAMPLES = Path("..") / "samples"' in source and "/work/" not in source


def test_runs_without_errors_and_shows_what_the_prose_says(executed):
    code = [cell for cell in executed.cells if cell.cell_type == "code"]
    errors = [o for cell in code for o in cell.outputs if o.output_type == "error"]
    assert errors == []
    text = "\n".join(outputs_text(cell) for cell in code)
    # section 1: the chains the prose describes
    assert "linear-then-doubling" in text and "doubling" in text
    for kind in ("SYN", "SYN-ACK", "FIN"):
        assert f" {kind} " in text
    # section 2: growth factors of the flood's SYN-ACKs and the SYN chains
    assert "[1.99, 2.06]" in text and "[1.02, 1.0, 1.97, 2.03]" in text
    # section 4: the census reaches 30 half-open connections
    census = next(outputs_text(c) for c in code if "seconds since the first SYN" in outputs_text(c))
    assert census.strip().splitlines()[-1].split()[-1] == "30"
    assert "half_open_flood       1" in text and "synack_unanswered    30" in text


def test_draws_its_pictures(executed):
    pictures = [o for cell in executed.cells if cell.cell_type == "code" for o in cell.outputs
                if "image/png" in o.get("data", {})]
    assert len(pictures) == 3  # two retry plots and the flood's census


def test_the_readme_mentions_it():
    readme = (NOTEBOOKS / "README.md").read_text()
    assert "exploring_retries.ipynb" in readme and "without outputs" in readme
