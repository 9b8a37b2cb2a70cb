"""Helpers for the data tests: small dataset folders written on the fly."""

from __future__ import annotations

from pathlib import Path


def write_folder(root: Path, rows: list[dict], files: dict[str, str | bytes]) -> Path:
    """Write ``metadata.csv`` (columns in the order of the first row) and text files."""
    root.mkdir(parents=True, exist_ok=True)
    header = list(rows[0]) if rows else ["text_path"]
    lines = [",".join(header)] + [",".join(str(r.get(h, "")) for h in header) for r in rows]
    (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


def good_rows() -> tuple[list[dict], dict[str, str]]:
    """Six valid rows, two concepts, every concept positive in train and cal."""
    texts = {
        "p/0.txt": "I saw a <joy>happy</joy> dog.",
        "p/1.txt": "Plain text about nothing.",
        "p/2.txt": "We <Sad>cried</Sad> all night.",
        "p/3.txt": "<EMOTION>So glad and so blue!</EMOTION> Then we left.",
        "p/4.txt": "Nothing here either.",
        "p/5.txt": "A <joy>joyful</joy> and <sad>gloomy</sad> day.",
    }
    rows = [
        {"text_path": "p/0.txt", "split": "train", "joy": 1, "sad": 0},
        {"text_path": "p/1.txt", "split": "train", "joy": 0, "sad": 0},
        {"text_path": "p/2.txt", "split": "train", "joy": 0, "sad": 1},
        {"text_path": "p/3.txt", "split": "cal", "joy": 1, "sad": 1},
        {"text_path": "p/4.txt", "split": "test", "joy": 0, "sad": 0},
        {"text_path": "p/5.txt", "split": "test", "joy": 1, "sad": 1},
    ]
    return rows, texts
