"""Execute a notebook with nbclient and read back the findings it states.

Each notebook keeps the numbers its prose states in a dict named ``findings``.
We append one cell that prints it as JSON (after a marker), execute the
notebook in a temporary folder, parse that output and drop the cell again, so
the tests assert on what the notebook computed rather than on printed labels.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat

_MARK = "NOTEBOOK-FINDINGS "
_DUMP = f"print({_MARK!r} + __import__('json').dumps(findings))"


def run_notebook(path: Path, tmp_path: Path, *, timeout: int = 900):
    """``(executed notebook, findings dict)``; cell errors raise ``CellExecutionError``."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(_DUMP))
    NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    dump = nb.cells.pop()
    text = "".join(o.get("text", "") for o in dump.outputs if o.get("name") == "stdout")
    lines = [line for line in text.splitlines() if line.startswith(_MARK)]
    if len(lines) != 1:
        raise ValueError(f"path: {path.name} printed no findings (output: {text[:200]!r})")
    return nb, json.loads(lines[0][len(_MARK) :])


def stdout_text(nb) -> str:
    """All stream output of the executed code cells, joined."""
    return "\n".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )
