"""Cell helpers of the notebook build scripts (``python notebooks/_build_NN.py``).

Each script lists its cells with :func:`code` and :func:`markdown` and ends with
:func:`write_notebook`, which writes the notebook next to the scripts with its
outputs stripped and stable cell ids, so rebuilding does not churn the diff.
"""

from pathlib import Path

import nbformat as nbf

_KERNEL = {"name": "python3", "display_name": "Python 3", "language": "python"}


def code(source: str) -> nbf.NotebookNode:
    """A code cell; sources are kept ruff-formatted (``ruff format`` the notebook to check)."""
    return nbf.v4.new_code_cell(source.strip("\n"))


def markdown(text: str) -> nbf.NotebookNode:
    """A markdown cell."""
    return nbf.v4.new_markdown_cell(text)


def notebook(cells: list[nbf.NotebookNode]) -> nbf.NotebookNode:
    """The notebook of ``cells``: cell ids ``cell-00``, ``cell-01``, ..., a python3 kernel."""
    nb = nbf.v4.new_notebook(cells=cells)
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i:02d}"
    nb.metadata["kernelspec"] = dict(_KERNEL)
    return nb


def write_notebook(cells: list[nbf.NotebookNode], name: str) -> Path:
    """Write :func:`notebook` of ``cells`` as ``notebooks/<name>``; return its path."""
    path = Path(__file__).with_name(name)
    nbf.write(notebook(cells), path)
    return path
