"""Notebooks run top to bottom and their stated findings hold (nbclient, temporary folder)."""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

import nbformat
import pytest

from tests.extras import needs_extra
from tests.notebook_helpers import run_notebook, stdout_text

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_committed_notebooks_have_no_outputs():
    for path in NOTEBOOKS.glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs, f"{path.name}: strip outputs before committing"


@pytest.mark.parametrize("number", ["01", "03", "04"])
def test_committed_notebooks_are_what_their_build_scripts_write(number, monkeypatch):
    """Edit the build script, not the notebook: rebuilding must give the committed file
    (sources, cell ids, metadata), so the script stays the one place to change a cell."""
    monkeypatch.syspath_prepend(str(NOTEBOOKS))
    monkeypatch.delitem(sys.modules, "_cells", raising=False)
    import _cells

    built: dict = {}
    monkeypatch.setattr(_cells, "write_notebook", lambda cells, name: built.update({name: cells}))
    runpy.run_path(str(NOTEBOOKS / f"_build_{number}.py"))
    ((name, cells),) = built.items()
    assert _cells.notebook(cells) == nbformat.read(NOTEBOOKS / name, as_version=4), name


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


def check_monitor_findings(findings: dict, model: str) -> None:
    """What notebook 03 says: detect's `present` is the detector's rule on the lens's
    scores; the monitor's step-by-step scores equal one full forward pass, over every
    content token; the callback saw every event; no hook is left; watching does not
    change the generated tokens."""
    assert findings["model"] == model
    assert findings["detect_matches_predict"] is True
    assert findings["monitor_vs_full_forward"] <= 1e-4, findings
    assert findings["n_scored"] == findings["n_content"] > 0, findings
    assert findings["callback_saw_every_event"] is True
    assert findings["n_events"] > 0 and findings["n_present"] > 0, findings
    assert findings["hooks_left"] == 0
    assert findings["same_as_plain"] is True


def _html_outputs(nb) -> list[str]:
    return [
        o["data"]["text/html"]
        for c in nb.cells
        for o in c.get("outputs", [])
        if "text/html" in o.get("data", {})
    ]


def test_monitor_notebook_on_a_small_random_decoder(tmp_path, monkeypatch):
    monkeypatch.setenv("SUPERACT_NOTEBOOK_MODEL", "tiny")
    nb, findings = run_notebook(NOTEBOOKS / "03_monitor.ipynb", tmp_path)
    assert any("<iframe srcdoc=" in h for h in _html_outputs(nb)), "the detect page was not shown"
    assert (tmp_path / "detector-linsep" / "detector.json").is_file()
    check_monitor_findings(findings, "tiny")


@pytest.mark.slow
@needs_extra("gemma-270m")
def test_monitor_notebook_on_gemma(tmp_path, monkeypatch):
    monkeypatch.setenv("SUPERACT_NOTEBOOK_MODEL", "gemma-270m")
    nb, findings = run_notebook(NOTEBOOKS / "03_monitor.ipynb", tmp_path, timeout=1800)
    check_monitor_findings(findings, "gemma-270m")


def check_images_findings(findings: dict, scale: str) -> None:
    """What notebook 04 states: patch masks have one row per scored patch, detect's
    `present` is the detector's rule, and every method has a weighted F1 in [0, 1];
    the SuperActivator-on-object share and the object-patch share are fractions."""
    assert findings["scale"] == scale
    assert findings["masks_match_lens"] is True
    assert findings["detect_matches_predict"] is True
    assert findings["n_test"] > 0
    f1 = findings["weighted_f1"]
    assert {"superact", "superact_fixed", "cls", "mean", "last", "random", "max"} <= set(f1)
    assert all(0.0 <= v <= 1.0 for v in f1.values()), f1
    assert 0.0 < findings["object_patch_share"] < 1.0
    assert 0.0 <= findings["superactivators_on_object"] <= 1.0


def test_images_notebook_tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("SUPERACT_NOTEBOOK_SCALE", "tiny")
    monkeypatch.delenv("SUPERACT_NOTEBOOK_CLEVR", raising=False)
    monkeypatch.delenv("SUPERACT_NOTEBOOK_VIT", raising=False)
    nb, findings = run_notebook(NOTEBOOKS / "04_images.ipynb", tmp_path)
    pngs = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(pngs) == 2, "the scenes and the SuperActivator overlays were not shown"
    assert (tmp_path / "detector-linsep" / "detector.json").is_file()
    check_images_findings(findings, "tiny")


def _default_images() -> tuple[str, str] | None:
    """The default-size scene folder and trained ViT named by the notebook's own
    variables, when both are there (``superact data clevr`` / ``superact vit train``)."""
    clevr, vit = os.environ.get("SUPERACT_NOTEBOOK_CLEVR"), os.environ.get("SUPERACT_NOTEBOOK_VIT")
    if not (clevr and vit):
        return None
    if not (Path(clevr, "metadata.csv").is_file() and Path(vit, "training.json").is_file()):
        return None
    return clevr, vit


@pytest.mark.slow
@pytest.mark.skipif(
    _default_images() is None,
    reason="needs the default CLEVR set and a trained ViT: SUPERACT_NOTEBOOK_CLEVR=D "
    "SUPERACT_NOTEBOOK_VIT=M from `superact data clevr --out D` and "
    "`superact vit train --dataset D --out M` (README, Images)",
)
def test_images_notebook_default(tmp_path, monkeypatch):
    """At the default scale the notebook's closing comparison holds: the model is
    trained, SuperActivator patches lie on the concept's object well above the rate
    of a detector blind to location, and detection beats the random-token baseline."""
    monkeypatch.setenv("SUPERACT_NOTEBOOK_SCALE", "default")
    nb, findings = run_notebook(NOTEBOOKS / "04_images.ipynb", tmp_path, timeout=3600)
    pngs = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(pngs) == 2, "the scenes and the SuperActivator overlays were not shown"
    check_images_findings(findings, "default")
    assert findings["vit_test_macro_f1"] >= 0.8, findings
    assert findings["superactivators_on_object"] > 2 * findings["object_patch_share"], findings
    f1 = findings["weighted_f1"]
    assert f1["superact"] > f1["random"], f1
