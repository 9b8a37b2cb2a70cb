"""CLEVR-style scenes: determinism, exact visible masks, labels, the folder and the CLI."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from superact_lens.cli import main
from superact_lens.data import CLEVR_CONCEPTS, generate_clevr, read_image_folder
from superact_lens.data.clevr import COLOURS, SceneObject, render_scene, sample_scene
from superact_lens.errors import InputError

SIZE = 64


def _scene(seed: int, size: int = SIZE):
    rng = np.random.default_rng(seed)
    objects = sample_scene(rng, size)
    image, masks = render_scene(objects, size, rng)
    return objects, image, masks


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return generate_clevr(tmp_path_factory.mktemp("clevr") / "d", n=24, seed=3, size=SIZE)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_masks_are_exactly_the_visible_object_pixels(seed: int) -> None:
    objects, image, masks = _scene(seed)
    assert 1 <= len(objects) <= 3 and masks.shape == (len(objects), SIZE, SIZE)
    assert (masks.sum(0) <= 1).all()  # one owner per pixel
    rgb = image.astype(int)
    chroma = rgb.max(-1) - rgb.min(-1)
    union = masks.any(0)
    # the ground is grey, every object pixel is strongly coloured: the masks
    # are right to the pixel or a boundary pixel lands on the wrong side
    assert (chroma[~union] < 20).all()
    for obj, m in zip(objects, masks, strict=True):
        c = COLOURS.index(obj.colour)
        others = [k for k in range(3) if k != c]
        assert (rgb[m][:, c] > rgb[m][:, others].max(-1)).all()
        assert (chroma[m] >= 20).all()


def test_later_objects_cover_earlier_ones() -> None:
    far = SceneObject("red", "cube", x=32.0, y=40.0, u=6.0)
    near = SceneObject("blue", "sphere", x=34.0, y=44.0, u=6.0)
    _, alone = render_scene([far], SIZE, np.random.default_rng(0))
    _, both = render_scene([far, near], SIZE, np.random.default_rng(0))
    _, near_alone = render_scene([near], SIZE, np.random.default_rng(0))
    assert (both[1] == near_alone[0]).all()
    assert (both[0] == (alone[0] & ~near_alone[0])).all()
    assert both[0].sum() < alone[0].sum()


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    a = generate_clevr(tmp_path / "a", n=15, seed=1, size=48)
    b = generate_clevr(tmp_path / "b", n=15, seed=1, size=48)
    c = generate_clevr(tmp_path / "c", n=15, seed=2, size=48)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert (a / "images/00000.png").read_bytes() != (c / "images/00000.png").read_bytes()


def test_folder_masks_are_unions_and_labels_follow_masks(folder: Path) -> None:
    ds = read_image_folder(folder)
    assert ds.concepts == list(CLEVR_CONCEPTS) and len(ds) == 24
    assert ds.meta["ignored_columns"] == ["objects"]
    for s in ("train", "cal"):
        assert ds.labels[ds.split_indices(s)].any(0).all()
    with open(folder / "metadata.csv", encoding="utf-8") as fh:
        described = [row["objects"].split(";") for row in csv.DictReader(fh)]
    for i in range(len(ds)):
        masks = ds.masks(i)
        assert masks.shape == (6, SIZE, SIZE)
        assert (masks.any((1, 2)) == ds.labels[i]).all()
        # colours partition the object pixels, and so do shapes
        assert (masks[:3].sum(0) == masks[3:].sum(0)).all() and masks[:3].sum(0).max() <= 1
        named = {w for obj in described[i] for w in obj.split()}
        assert named == {c for c, on in zip(CLEVR_CONCEPTS, ds.labels[i], strict=True) if on}
        assert all(ds.has_mask(i, c) == ds.labels[i, c] for c in range(6))


def test_objects_cover_a_minority_of_patches(folder: Path) -> None:
    ds = read_image_folder(folder)
    for i in range(len(ds)):
        in_concept, content = ds.patch_masks(i, target=SIZE, patch_size=SIZE // 8)
        assert content.all() and in_concept[:3].any(0).mean() < 0.5


def test_images_are_shaded_not_flat(folder: Path) -> None:
    ds = read_image_folder(folder)
    image = np.asarray(ds.image(0)).astype(int)
    for c in range(3):
        m = ds.concept_mask(0, c)
        if m.any():
            assert len(np.unique(image[m][:, c])) > 5  # shading, not one flat colour


def test_bad_arguments() -> None:
    with pytest.raises(InputError, match="n:"):
        generate_clevr("/nonexistent/x", n=3)
    with pytest.raises(InputError, match="size:"):
        generate_clevr("/nonexistent/x", n=20, size=8)


def test_refuses_a_foreign_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="out:"):
        generate_clevr(tmp_path, n=15, size=48)


def test_cli_writes_a_readable_folder(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    assert main(["data", "clevr", "--out", str(out), "--n", "18", "--size", "48"]) == 0
    assert "wrote 18 scenes" in capsys.readouterr().out
    ds = read_image_folder(out)
    assert len(ds) == 18 and Image.open(out / ds.paths[0]).size == (48, 48)
    assert main(["data", "clevr", "--out", str(out / "metadata.csv"), "--n", "18"]) == 2
