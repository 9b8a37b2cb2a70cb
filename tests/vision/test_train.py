"""The small ViT trained here: saved like a hub model, seeded, validated settings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from superact_lens.cli import main
from superact_lens.data import generate_clevr, read_image_folder
from superact_lens.errors import InputError
from superact_lens.vision.train import ViTTrainConfig, per_label_f1, train_vit

TINY = dict(image_size=32, patch_size=8, hidden_size=32, num_layers=2, num_heads=2, epochs=1)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    return generate_clevr(tmp_path_factory.mktemp("vit") / "clevr", n=24, seed=0, size=32)


def test_saved_folder_loads_like_a_hub_model(scenes: Path, tmp_path: Path) -> None:
    from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification

    out = tmp_path / "model"
    info = train_vit(scenes, out, ViTTrainConfig(**TINY), progress=False)
    assert (out / "model.safetensors").is_file() and (out / "preprocessor_config.json").is_file()
    assert set(info["f1"]) == {"train", "cal", "test"} and len(info["f1"]["test"]) == 6
    assert json.loads((out / "training.json").read_text())["config"]["epochs"] == 1

    ds = read_image_folder(scenes)
    processor = AutoImageProcessor.from_pretrained(out)
    pixels = processor(images=[ds.image(0), ds.image(1)], return_tensors="pt")["pixel_values"]
    assert pixels.shape == (2, 3, 32, 32)
    model = AutoModel.from_pretrained(out)
    with torch.no_grad():
        hidden = model(pixel_values=pixels, output_hidden_states=True).hidden_states
    assert len(hidden) == 3 and hidden[-1].shape == (2, 1 + 4 * 4, 32)  # [CLS] + 4x4 patches
    classifier = AutoModelForImageClassification.from_pretrained(out)
    assert classifier.config.id2label == dict(enumerate(ds.concepts))
    assert classifier.config.problem_type == "multi_label_classification"


def test_same_seed_same_weights(scenes: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    cfg = dict(TINY, num_layers=1)
    a = train_vit(scenes, tmp_path / "a", ViTTrainConfig(**cfg), progress=False)
    b = train_vit(scenes, tmp_path / "b", ViTTrainConfig(**cfg), progress=False)
    c = train_vit(scenes, tmp_path / "c", ViTTrainConfig(**cfg, seed=1), progress=False)
    wa, wb, wc = (load_file(tmp_path / k / "model.safetensors") for k in "abc")
    assert all(torch.equal(wa[k], wb[k]) for k in wa) and a["f1"] == b["f1"]
    assert not all(torch.equal(wa[k], wc[k]) for k in wa) and c["config"]["seed"] == 1
    assert torch.get_num_threads() >= 1


def test_cli_prints_f1_per_label(scenes: Path, tmp_path: Path, capsys) -> None:
    args = ["vit", "train", "--dataset", str(scenes), "--out", str(tmp_path / "m"), "--quiet"]
    args += ["--epochs", "1", "--image-size", "32", "--patch-size", "8", "--hidden-size", "32"]
    assert main([*args, "--layers", "1", "--heads", "2"]) == 0
    out = capsys.readouterr().out
    assert "cylinder" in out and "macro" in out and "test" in out
    assert main([*args, "--image-size", "30"]) == 2  # not a multiple of the patch size


def test_per_label_f1() -> None:
    truth = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0]], bool)
    pred = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 0]], bool)
    assert per_label_f1(pred, truth).tolist() == [2 / 3, 2 / 3, 0.0]
    assert per_label_f1(truth, truth)[:2].tolist() == [1.0, 1.0]


@pytest.mark.parametrize(
    "bad", [dict(image_size=30), dict(hidden_size=30, num_heads=4), dict(epochs=0), dict(lr=0.0)]
)
def test_bad_settings_are_refused(bad: dict) -> None:
    with pytest.raises(InputError):
        ViTTrainConfig(**bad)


def test_bad_threads_refused(scenes: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="threads"):
        train_vit(scenes, tmp_path, ViTTrainConfig(**TINY), threads=0)
