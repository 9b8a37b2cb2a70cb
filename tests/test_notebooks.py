"""Notebooks run top to bottom and their stated findings hold (nbclient, temporary folder)."""

from __future__ import annotations

from pathlib import Path

import nbformat

from tests.notebook_helpers import run_notebook, stdout_text

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_committed_notebooks_have_no_outputs():
    for path in NOTEBOOKS.glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs, f"{path.name}: strip outputs before committing"


def check_attach_hooks_findings(findings: dict) -> None:
    """What notebook 01 says about its slice of wordnet-supersenses (250 test samples)."""
    f1 = findings["weighted_f1"]
    assert findings["n_test"] == 250
    # "SuperActivator detection beats pooling the mean token score (and the last token's)"
    assert f1["superact"] >= f1["mean"], f1
    assert f1["superact"] >= f1["last"], f1
    # "Max pooling ... is about as good here": within 0.05 weighted F1
    assert abs(f1["max"] - f1["superact"]) <= 0.05, f1


def test_attach_hooks_notebook(tmp_path):
    nb, findings = run_notebook(NOTEBOOKS / "01_attach_hooks.ipynb", tmp_path)
    assert "TransformerBridge" in stdout_text(nb)
    html = [o for c in nb.cells for o in c.get("outputs", []) if "text/html" in o.get("data", {})]
    assert html, "the heat maps were not displayed"
    check_attach_hooks_findings(findings)
