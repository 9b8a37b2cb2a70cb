"""Train a small ViT on an image dataset folder, saved like a hub model.

No pretrained vision transformer is reachable here, so the image pipeline runs on
one trained in minutes on CPU: a Hugging Face ``ViTForImageClassification``
from a random init, multi-label (one sigmoid per concept, binary cross-entropy),
trained on the ``train`` split. :func:`train_vit` writes ``save_pretrained``
weights (safetensors), ``config.json`` with ``id2label``, the
``ViTImageProcessor`` config it trained with (``preprocessor_config.json``) and
``training.json`` (settings, per-label F1 on every split, time), so
``AutoModel.from_pretrained(out)`` and ``AutoImageProcessor.from_pretrained(out)``
read it like ``google/vit-base-patch16-224``.

Defaults, sized for minutes on 2 shared CPU cores: 224-px CLEVR images are
resized to 80 px and cut into 8-px patches, a 10 x 10 grid (an object is about
2 patches wide, a minority of the 100); width 128, 4 layers, 4 heads, MLP 2x.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from superact_lens.data.images import ImageDataset, read_image_folder
from superact_lens.errors import InputError

__all__ = ["ViTTrainConfig", "per_label_f1", "train_vit"]


@dataclass
class ViTTrainConfig:
    """Model and optimisation settings of :func:`train_vit` (validated on creation)."""

    image_size: int = 80
    patch_size: int = 8
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    mlp_ratio: int = 2
    epochs: int = 40
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("image_size", "patch_size", "hidden_size", "num_layers", "num_heads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name}: expected a positive integer, got {value!r}")
        for name in ("mlp_ratio", "epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name}: expected a positive integer, got {value!r}")
        if self.image_size % self.patch_size:
            raise InputError(
                f"image_size: {self.image_size} is not a multiple of patch_size {self.patch_size}"
            )
        if self.hidden_size % self.num_heads:
            raise InputError(
                f"hidden_size: {self.hidden_size} is not a multiple of num_heads {self.num_heads}"
            )
        if not (self.lr > 0 and self.weight_decay >= 0):
            raise InputError(f"lr, weight_decay: expected > 0 and >= 0, got {self.lr}, "
                             f"{self.weight_decay}")  # fmt: skip


def per_label_f1(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """F1 per label of ``bool [n, C]`` predictions (0 where a label is never predicted nor true)."""
    pred, truth = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
    tp = (pred & truth).sum(0)
    denom = pred.sum(0) + truth.sum(0)
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)


def _processor(cfg: ViTTrainConfig):
    import transformers

    # transformers >= 5: the PIL backend, without the warning about torchvision
    processor_class = getattr(transformers, "ViTImageProcessorPil", transformers.ViTImageProcessor)
    return processor_class(
        do_resize=True,
        size={"height": cfg.image_size, "width": cfg.image_size},
        resample=2,  # bilinear
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )


def _pixels(ds: ImageDataset, processor, chunk: int = 64) -> torch.Tensor:
    """``float16 [n, 3, S, S]`` pixel values of every image, through the saved processor."""
    out = []
    for start in range(0, len(ds), chunk):
        images = [ds.image(i) for i in range(start, min(start + chunk, len(ds)))]
        values = processor(images=images, return_tensors="pt")["pixel_values"]
        out.append(values.to(torch.float16))
    return torch.cat(out)


@torch.no_grad()
def _predict(model, pixels: torch.Tensor, device: torch.device, batch_size: int) -> np.ndarray:
    model.eval()
    logits = [
        model(pixel_values=pixels[i : i + batch_size].to(device, torch.float32)).logits.cpu()
        for i in range(0, len(pixels), batch_size)
    ]
    return (torch.cat(logits) > 0).numpy()


def train_vit(
    dataset: ImageDataset | str | Path,
    out: str | Path,
    config: ViTTrainConfig | None = None,
    device: str = "cpu",
    progress: bool = True,
    threads: int | None = 1,
) -> dict:
    """Train a multi-label ViT on ``dataset``'s train split; save it to ``out``.

    Args:
        dataset: an :class:`ImageDataset` or its folder.
        out: model folder to write (created; files in it are overwritten).
        config: model and optimisation settings (default :class:`ViTTrainConfig`).
        device: torch device.
        progress: show the "train vit" progress bar on stderr.
        threads: CPU threads for torch during training (restored after); ``None``
            keeps torch's setting. One by default: the matrices are small, and on a
            shared machine a second thread mostly spin-waits (measured here under
            load: 1.4 s/step with 1 thread, 11 s/step with 2).

    Returns:
        The ``training.json`` dict: ``config``, ``concepts``, ``f1`` per split
        (``{split: {label: f1}}``), ``macro_f1`` per split, ``seconds``.
    """
    cfg = config or ViTTrainConfig()
    ds = dataset if isinstance(dataset, ImageDataset) else read_image_folder(dataset)
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise InputError(f"device: {err}") from None
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):  # fmt: skip
        raise InputError(f"threads: expected a positive integer or None, got {threads!r}")
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _train(ds, Path(out), cfg, dev, progress)
    finally:
        torch.set_num_threads(before)


def _train(ds: ImageDataset, out: Path, cfg: ViTTrainConfig, dev: torch.device, progress: bool):
    from transformers import ViTConfig, ViTForImageClassification

    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    processor = _processor(cfg)
    pixels = _pixels(ds, processor)
    labels = torch.from_numpy(ds.labels.astype(np.float32))
    train = torch.from_numpy(ds.split_indices("train"))
    model_cfg = ViTConfig(
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.mlp_ratio * cfg.hidden_size,
        id2label=dict(enumerate(ds.concepts)),  # also sets num_labels
        label2id={c: i for i, c in enumerate(ds.concepts)},
        problem_type="multi_label_classification",
    )
    model = ViTForImageClassification(model_cfg)
    model.to(dev)  # type: ignore[arg-type]  # transformers types .to oddly
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warmup = max(1, total // 10)

    def lr_at(step: int) -> float:  # linear warm-up, then cosine to 0
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    bar = tqdm(total=total, desc="train vit", disable=not progress, file=sys.stderr, unit="step")
    for _ in range(cfg.epochs):
        model.train()
        order = train[torch.randperm(len(train), generator=gen)]
        for b in range(steps_per_epoch):
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            x = pixels[idx].to(torch.float32)
            flip = torch.rand(len(idx), generator=gen) < 0.5  # scenes are mirror-symmetric
            x[flip] = x[flip].flip(-1)
            loss = model(pixel_values=x.to(dev), labels=labels[idx].to(dev)).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()

    pred = _predict(model, pixels, dev, 2 * cfg.batch_size)
    f1, macro = {}, {}
    for split in ("train", "cal", "test"):
        rows = ds.split_indices(split)
        scores = per_label_f1(pred[rows], ds.labels[rows])
        f1[split] = {c: float(s) for c, s in zip(ds.concepts, scores, strict=True)}
        macro[split] = float(scores.mean())
    out.mkdir(parents=True, exist_ok=True)
    model.cpu().save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    info = {
        "dataset": ds.name,
        "concepts": list(ds.concepts),
        "config": asdict(cfg),
        "n_samples": {s: int(len(ds.split_indices(s))) for s in ("train", "cal", "test")},
        "f1": f1,
        "macro_f1": macro,
        "seconds": round(time.perf_counter() - start, 1),
    }
    (out / "training.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    return info
