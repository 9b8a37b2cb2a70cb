"""Image dataset folders: loading, lazy masks, patch masks, letterbox content, malformed input."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from superact_lens.data import (
    DatasetError,
    content_pixels,
    fit_mask,
    generate_clevr,
    patch_masks,
    read_dataset_folder,
    read_image_folder,
)
from superact_lens.errors import InputError


@pytest.fixture(scope="module")
def clevr(tmp_path_factory) -> Path:
    return generate_clevr(tmp_path_factory.mktemp("img") / "clevr", n=18, seed=0, size=48)


@pytest.fixture
def folder(clevr: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(clevr, tmp_path / "copy"))


def _problems(folder: Path) -> list[str]:
    with pytest.raises(DatasetError) as info:
        read_image_folder(folder)
    assert isinstance(info.value, ValueError)
    return info.value.problems


def _a_mask(folder: Path) -> Path:
    return sorted((folder / "masks").rglob("*.png"))[0]


# ---- patch masks -------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    p=st.integers(1, 6),
    grid=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    data=st.data(),
)
def test_patch_in_concept_iff_at_least_half_its_pixels(p, grid, data) -> None:
    h, w = grid[0] * p, grid[1] * p
    m = data.draw(arrays(bool, (2, h, w)))
    out = patch_masks(m, p)
    assert out.shape == (2, grid[0], grid[1])
    for b in range(2):
        for i in range(grid[0]):
            for j in range(grid[1]):
                frac = m[b, i * p : (i + 1) * p, j * p : (j + 1) * p].mean()
                assert out[b, i, j] == (frac >= 0.5)


def test_patch_mask_threshold_is_exactly_half() -> None:
    m = np.zeros((2, 2), dtype=bool)
    m[0, :] = True  # 2 of 4 pixels: in
    assert patch_masks(m, 2).tolist() == [[True]]
    m[0, 1] = False
    assert patch_masks(m, 2).tolist() == [[False]]


def test_patch_masks_bad_input() -> None:
    with pytest.raises(InputError, match="patch_size"):
        patch_masks(np.zeros((4, 4), bool), 0)
    with pytest.raises(InputError, match="multiple"):
        patch_masks(np.zeros((5, 4), bool), 2)
    with pytest.raises(InputError, match="content"):
        patch_masks(np.zeros((4, 4), bool), 2, content=np.ones((2, 2), bool))


@settings(max_examples=40, deadline=None)
@given(w=st.integers(1, 300), h=st.integers(1, 300))
def test_letterbox_content_is_the_centred_image(w: int, h: int) -> None:
    t = 32
    c = content_pixels(w, h, t, "letterbox")
    rows, cols = np.flatnonzero(c.any(1)), np.flatnonzero(c.any(0))
    # the long side fills the input; the image is one centred rectangle
    assert max(len(rows), len(cols)) == t
    assert c.sum() == len(rows) * len(cols)
    assert abs(rows[0] - (t - 1 - rows[-1])) <= 1 and abs(cols[0] - (t - 1 - cols[-1])) <= 1
    assert abs(len(cols) - w * t / max(w, h)) <= 1 and abs(len(rows) - h * t / max(w, h)) <= 1
    assert content_pixels(w, h, t, "resize").all() and content_pixels(w, h, t, "crop").all()


def test_letterbox_padding_patches_are_not_content() -> None:
    # a 2:1 image in a 32-px input with 8-px patches: 16 px of content, 8 px pad each side
    content = patch_masks(content_pixels(64, 32, 32, "letterbox"), 8)
    assert content.tolist() == [[False] * 4, [True] * 4, [True] * 4, [False] * 4]
    m = np.ones((32, 64), bool)  # a concept everywhere in the image stays off the padding
    assert (patch_masks(fit_mask(m, 32), 8, content=content_pixels(64, 32, 32)) == content).all()


def test_dataset_patch_masks_follow_the_pixels(clevr: Path) -> None:
    ds = read_image_folder(clevr)
    in_concept, content = ds.patch_masks(0, target=48, patch_size=8)
    assert content.all() and in_concept.shape == (6, 6, 6)
    assert (in_concept == patch_masks(ds.masks(0), 8)).all()


# ---- loading -------------------------------------------------------------------------


def test_loads_lazily_and_selects(clevr: Path) -> None:
    ds = read_image_folder(clevr)
    assert len(ds) == 18 and ds.sizes[0] == (48, 48)
    assert ds.image(0).mode == "RGB" and ds.image(0).size == (48, 48)
    test = ds.subset("test")
    assert (test.labels == ds.labels[ds.split_indices("test")]).all()
    assert (test.masks(0) == ds.masks(int(ds.split_indices("test")[0]))).all()
    with pytest.raises(InputError, match="concept"):
        ds.concept_mask(0, "purple")


def test_select_copies_per_image_fields_and_checks_them_as_text_datasets_do(clevr: Path) -> None:
    """Images and texts share one select/check: the copy's mask dicts are its own, the
    file reader is kept, and an unknown split name is named (as TextDataset names it)."""
    ds = read_image_folder(clevr)
    part = ds.select([2, 0])
    assert part.paths == [ds.paths[2], ds.paths[0]] and part.sizes == [ds.sizes[2], ds.sizes[0]]
    assert part.read_bytes is ds.read_bytes and (part.image(1).size == ds.image(0).size)
    part.mask_paths[1].clear()
    assert ds.mask_paths[0], "select shared a mask dict with the original"
    with pytest.raises(InputError, match=r"unknown split name\(s\) \['valid'\]"):
        type(ds)(
            ds.name,
            ds.concepts,
            ds.paths,
            ds.labels,
            ["valid"] * len(ds),
            ds.sizes,
            ds.mask_paths,
        )


def test_reads_an_archive(clevr: Path, tmp_path: Path) -> None:
    archive = tmp_path / "clevr.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(clevr, arcname="clevr")
    ds = read_image_folder(archive)
    assert (ds.masks(1) == read_image_folder(clevr).masks(1)).all()


def test_positive_without_mask_is_location_unknown(folder: Path) -> None:
    mask = _a_mask(folder)
    mask.unlink()
    ds = read_image_folder(folder)
    i = ds.paths.index(f"images/{mask.parent.name}.png")
    c = ds.concepts.index(mask.stem)
    assert ds.labels[i, c] and not ds.has_mask(i, c) and not ds.concept_mask(i, c).any()


def test_text_reader_points_to_the_image_reader(clevr: Path) -> None:
    with pytest.raises(DatasetError, match="read_image_folder"):
        read_dataset_folder(clevr)


# ---- malformed folders: every problem names its file -----------------------------------


def test_missing_image(folder: Path) -> None:
    (folder / "images/00004.png").unlink()
    (problem,) = _problems(folder)
    assert "images/00004.png" in problem and "not found" in problem


def test_unreadable_image_and_mask(folder: Path) -> None:
    (folder / "images/00002.png").write_bytes(b"not a png")
    mask = _a_mask(folder)
    mask.write_bytes(mask.read_bytes()[:40])  # truncated
    problems = _problems(folder)
    assert any("images/00002.png" in p and "unreadable image" in p for p in problems)
    rel = mask.relative_to(folder).as_posix()
    assert any(rel in p and "unreadable mask" in p for p in problems)


def test_mask_of_the_wrong_size(folder: Path) -> None:
    mask = _a_mask(folder)
    Image.new("L", (40, 48), 255).save(mask)
    (problem,) = _problems(folder)
    assert mask.relative_to(folder).as_posix() in problem and "40x48" in problem


def test_mask_for_unknown_concept_or_image(folder: Path) -> None:
    Image.new("L", (48, 48), 0).save(folder / "masks/00001/purple.png")
    (folder / "masks/99999").mkdir()
    Image.new("L", (48, 48), 0).save(folder / "masks/99999/red.png")
    (folder / "masks/00001/notes.txt").write_text("x")
    problems = _problems(folder)
    assert any("masks/00001/purple.png" in p and "unknown concept" in p for p in problems)
    assert any("masks/99999/red.png" in p and "unknown image" in p for p in problems)
    assert any("masks/00001/notes.txt" in p for p in problems)
    assert len(problems) == 3


def test_white_mask_for_a_negative_concept(folder: Path) -> None:
    ds = read_image_folder(folder)
    i, c = map(int, np.argwhere(~ds.labels)[0])
    stem = Path(ds.paths[i]).stem
    Image.new("L", (48, 48), 255).save(folder / f"masks/{stem}/{ds.concepts[c]}.png")
    (problem,) = _problems(folder)
    assert f"masks/{stem}/{ds.concepts[c]}.png" in problem and "is 0" in problem


def test_duplicate_image_paths_and_stems(folder: Path) -> None:
    lines = (folder / "metadata.csv").read_text().splitlines()
    dup = lines[1]
    clash = lines[2].replace("images/00001.png", "other/00001.jpg")
    (folder / "other").mkdir()
    Image.new("RGB", (48, 48)).save(folder / "other/00001.jpg")
    (folder / "metadata.csv").write_text("\n".join([*lines, dup, clash]) + "\n")
    problems = _problems(folder)
    assert any("images/00000.png" in p and "duplicate image_path" in p for p in problems)
    assert any("other/00001.jpg" in p and "stem '00001'" in p for p in problems)


def test_row_problems_read_as_the_text_reader_words_them(folder: Path) -> None:
    """One row check for text and image folders: same wording, same order, row prefix."""
    lines = (folder / "metadata.csv").read_text().splitlines()
    lines[1] = lines[1].replace("images/00000.png,train,0,", "images/00000.png,valid,maybe,", 1)
    (folder / "metadata.csv").write_text("\n".join(lines) + "\n")
    where = "metadata.csv row 1 (file images/00000.png)"
    assert _problems(folder)[:2] == [
        f"{where}: column 'red': expected 0 or 1, got 'maybe'",
        f"{where}: unknown split 'valid' (expected train, cal, test)",
    ]


def test_missing_column_and_bad_split(folder: Path) -> None:
    text = (folder / "metadata.csv").read_text()
    (folder / "metadata.csv").write_text(text.replace(",train,", ",valid,", 1))
    assert any("unknown split 'valid'" in p and "images/" in p for p in _problems(folder))
    (folder / "metadata.csv").write_text(text.replace("image_path", "img", 1))
    assert _problems(folder) == ["metadata.csv: missing column 'image_path'"]
