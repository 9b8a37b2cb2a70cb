"""Images for the lens: ``ImageBatch`` plays for vision transformers the role
:class:`~superact_lens.adapters.tokenize.TokenBatch` plays for text.

A ViT-style model sees ``n_prefix`` special positions ([CLS], and register or
distillation tokens where the model has them) followed by one position per
patch, row-major over the patch grid. Positions:

* ``special``: the prefix positions (never content);
* ``content_mask``: patches holding image content. With the model's own
  processor alone every patch is content: ViT's processor resizes the whole
  image to the model's size (distorting the aspect ratio) and CLIP's resizes
  the short side and centre-crops (cutting the long side off), so no patch is
  padding. With ``letterbox=True`` each image is first fitted into the model's
  ``T x T`` input keeping its aspect ratio (long side scaled to ``T``, centred,
  padded with the processor's mean colour, which normalises to about 0;
  :func:`superact_lens.data.patches.fit_image`), as the reference code does; a
  patch is then content when at least half of its pixels are image (the rule
  that maps concept masks to patches), and padding patches are excluded like
  padding tokens.

Scores follow the content patches of each image in row-major order, one
"token" per patch (``TokenScores``). Pixel values come from the model's image
processor (``AutoImageProcessor`` saved with the model: resize, rescale,
normalise from its config).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from superact_lens.data.patches import fit_geometry, fit_image, patch_masks
from superact_lens.errors import InputError, InputFileNotFoundError, InputTypeError

__all__ = ["ImageBatch", "ImageEncoder", "check_images", "load_image"]

ImageLike = str | Path | Image.Image | np.ndarray


@dataclass
class ImageBatch:
    """A batch of preprocessed images and what the sinks need to read its residuals.

    ``patch_index`` is each position's row-major index in the patch grid (-1 on
    special positions); ``image_boxes`` is where each image's content sits in the
    model's input pixels, ``(top, left, bottom, right)`` (the whole input unless
    letterboxed). ``cls_index`` is the [CLS] position (0) of each row, or -1 for a
    model without one (or a lens told ``has_cls = False``): the sample embedding is
    then the mean of the content patches.
    """

    pixel_values: Float[Tensor, "batch channels height width"]
    content_mask: Bool[Tensor, "batch pos"]
    special: Bool[Tensor, "batch pos"]
    patch_index: Int[Tensor, "batch pos"]
    cls_index: Int[Tensor, " batch"]
    sample_ids: Int[Tensor, " batch"]
    image_boxes: Int[Tensor, "batch 4"]
    grid: tuple[int, int]

    @property
    def n_content(self) -> Int[Tensor, " batch"]:
        return self.content_mask.sum(dim=1)

    @property
    def n_positions(self) -> int:
        """Positions the model sees per image: prefix tokens + patches."""
        return self.content_mask.shape[1]

    @property
    def input_ids(self) -> Int[Tensor, "batch pos"]:
        """The patch index, standing in for token ids where sinks read a batch's shape/device."""
        return self.patch_index

    @property
    def attention_mask(self) -> Int[Tensor, "batch pos"]:
        """All ones: a vision transformer attends to every position (letterbox padding too)."""
        return torch.ones_like(self.patch_index)

    @property
    def truncated(self) -> Bool[Tensor, " batch"]:
        """Never: images are resized, not truncated (kept for the TokenBatch interface)."""
        return torch.zeros(len(self.sample_ids), dtype=torch.bool, device=self.sample_ids.device)

    def model_inputs(self) -> dict[str, Tensor]:
        return {"pixel_values": self.pixel_values}

    def content(self, resid: Float[Tensor, "batch pos d"]) -> Float[Tensor, "n_content d"]:
        """Content patches of every row, rows concatenated in order (TokenScores order)."""
        return resid[self.content_mask]

    def sample_embedding(self, resid: Float[Tensor, "batch pos d"]) -> Float[Tensor, "batch d"]:
        """[CLS] residual where the model has one, else the mean of the content patches.

        The same definition as text (SPEC §1), so CLS-level concepts, the ``cls``
        detector and SampleEmbeddingSink read images as they read texts.
        """
        if bool((self.cls_index >= 0).all()):
            return resid[torch.arange(resid.shape[0], device=resid.device), self.cls_index]
        weights = self.content_mask.to(resid.dtype)
        total = torch.einsum("bpd,bp->bd", resid, weights)
        return total / weights.sum(dim=1, keepdim=True).clamp_min(1.0)

    def content_patches(self) -> list[Int[Tensor, "n_content 2"]]:
        """``(row, col)`` in the patch grid of each image's content patches, in stream order."""
        cols = self.grid[1]
        out = []
        for i in range(len(self.sample_ids)):
            index = self.patch_index[i][self.content_mask[i]]
            out.append(torch.stack([index // cols, index % cols], dim=1))
        return out

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> ImageBatch:
        """On ``device``; ``dtype`` (floating) applies to the pixel values only."""
        tensors = {
            name: getattr(self, name).to(device)
            for name in (
                "content_mask",
                "special",
                "patch_index",
                "cls_index",
                "sample_ids",
                "image_boxes",
            )
        }
        return ImageBatch(
            pixel_values=self.pixel_values.to(device=device, dtype=dtype),
            grid=self.grid,
            **tensors,
        )


def check_images(images: Any) -> list[ImageLike]:
    """A list of images (paths, PIL images, ``[H W]`` / ``[H W 3]`` arrays), checked.

    Paths must exist and hold an image PIL can identify (the header is read now,
    the pixels when the image is streamed); errors name the entry and the file.
    """
    if isinstance(images, (str, Path, Image.Image)):
        raise InputTypeError("images: expected a list of images, got one (wrap it in a list)")
    try:
        images = list(images)
    except TypeError:
        raise InputTypeError(
            f"images: expected a list of images, got {type(images).__name__}"
        ) from None
    if not images:
        raise InputError("images: the list is empty")
    for i, item in enumerate(images):
        if isinstance(item, (str, Path)):
            path = Path(item)
            if not path.is_file():
                raise InputFileNotFoundError(f"images[{i}]: no such image file {str(path)!r}")
            try:
                with Image.open(path) as img:
                    img.size  # noqa: B018 - the header is parsed on open
            except (UnidentifiedImageError, OSError) as err:
                raise InputError(
                    f"images[{i}]: cannot read {str(path)!r} as an image ({type(err).__name__})"
                ) from None
        elif isinstance(item, np.ndarray):
            if item.ndim not in (2, 3) or (item.ndim == 3 and item.shape[2] not in (1, 3, 4)):
                raise InputError(
                    f"images[{i}]: expected an array [H W] or [H W 3], got shape {item.shape}"
                )
        elif not isinstance(item, Image.Image):
            raise InputTypeError(
                f"images[{i}]: expected a path, PIL image or array, got {type(item).__name__}"
            )
    return images


def load_image(item: ImageLike, where: str = "image") -> Image.Image:
    """``item`` as an RGB PIL image; a file that fails to decode is an error naming it."""
    if isinstance(item, Image.Image):
        return item.convert("RGB")
    if isinstance(item, np.ndarray):
        array = item
        if array.dtype != np.uint8:
            scale = 255.0 if array.size and float(np.nanmax(array)) <= 1.0 else 1.0
            array = np.clip(np.asarray(array, dtype=np.float64) * scale, 0, 255).astype(np.uint8)
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        return Image.fromarray(array).convert("RGB")
    path = Path(item)
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except FileNotFoundError:
        raise InputFileNotFoundError(f"{where}: no such image file {str(path)!r}") from None
    except (UnidentifiedImageError, OSError) as err:
        raise InputError(
            f"{where}: cannot read {str(path)!r} as an image ({type(err).__name__}: {err})"
        ) from None


class ImageEncoder:
    """Turn images into :class:`ImageBatch` es for one vision model.

    Args:
        processor: the model's image processor (``AutoImageProcessor``).
        image_size: the model's input side ``T`` (``config.image_size``).
        patch_size: the model's patch side ``p`` (``config.patch_size``).
        n_prefix: special positions before the patches (1 for ViT / CLIP: [CLS]).
        letterbox: fit each image into ``T x T`` keeping its aspect ratio, padded
            with the processor's mean colour, and mark padding patches non-content
            (``superact_lens.data.patches``: the geometry the dataset's patch masks
            use, so both agree patch for patch).
        has_cls: whether position 0 is a [CLS] token used as the sample embedding.
    """

    def __init__(
        self,
        processor: Any,
        image_size: int,
        patch_size: int,
        n_prefix: int = 1,
        letterbox: bool = False,
        has_cls: bool = True,
    ) -> None:
        if not callable(processor):
            raise InputTypeError(
                f"processor: expected an image processor, got {type(processor).__name__}"
            )
        if image_size % patch_size:
            raise InputError(f"image_size: {image_size} is not a multiple of patch {patch_size}")
        self.processor = processor
        self.image_size, self.patch_size = image_size, patch_size
        self.n_prefix = n_prefix
        self.letterbox = bool(letterbox)
        self.has_cls = has_cls and n_prefix > 0
        mean = list(getattr(processor, "image_mean", None) or [0.0, 0.0, 0.0])
        if max(mean) <= 1.0:  # a mean in 0..1 units: the fill colour normalises to ~0
            mean = [m * 255.0 for m in mean]
        self.fill = tuple(int(round(m)) for m in mean)

    @property
    def fit(self) -> str:
        """How an image reaches the model's square input (a ``data.patches.FITS`` name).

        ``"letterbox"`` when asked; else what the processor does: ``"crop"`` (resize
        the short side, centre-crop: CLIP) or ``"resize"`` (stretch: ViT). Map concept
        masks with the same fit (``ImageDataset.patch_masks(i, T, p, fit=...)``).
        """
        if self.letterbox:
            return "letterbox"
        return "crop" if getattr(self.processor, "do_center_crop", False) else "resize"

    @property
    def grid(self) -> tuple[int, int]:
        side = self.image_size // self.patch_size
        return side, side

    def encode(
        self, images: list[ImageLike], sample_ids: list[int], has_cls: bool | None = None
    ) -> ImageBatch:
        """Load, (letterbox,) preprocess ``images``; ``sample_ids`` are their global indices.

        ``has_cls`` overrides the encoder's (False: sample embedding = mean of patches).
        """
        cls = self.has_cls if has_cls is None else has_cls and self.n_prefix > 0
        t, n = self.image_size, len(images)
        rows, cols = self.grid
        n_pos = self.n_prefix + rows * cols
        pil = []
        content = torch.zeros(n, n_pos, dtype=torch.bool)
        content[:, self.n_prefix :] = True
        boxes = torch.tensor([[0, 0, t, t]] * n, dtype=torch.long)
        for i, (item, sid) in enumerate(zip(images, sample_ids, strict=True)):
            image = load_image(item, where=f"images[{sid}]")
            if self.letterbox:
                new_w, new_h, left, top = fit_geometry(image.width, image.height, t, "letterbox")
                image, pixels = fit_image(image, t, "letterbox", fill=self.fill)
                grid = torch.from_numpy(patch_masks(pixels, self.patch_size))
                if not bool(grid.any()):
                    raise InputError(
                        f"images[{sid}]: no patch is at least half image once letterboxed "
                        "(a very thin image?)"
                    )
                content[i, self.n_prefix :] = grid.flatten()
                boxes[i] = torch.tensor([top, left, top + new_h, left + new_w])
            pil.append(image)
        pixel_values = self.processor(images=pil, return_tensors="pt")["pixel_values"]
        if tuple(pixel_values.shape[-2:]) != (t, t):
            raise InputError(
                f"processor: makes {tuple(pixel_values.shape[-2:])} inputs but the model "
                f"takes {t}x{t} (config.image_size)"
            )
        special = torch.zeros(n, n_pos, dtype=torch.bool)
        special[:, : self.n_prefix] = True
        patch_index = torch.full((n, n_pos), -1, dtype=torch.long)
        patch_index[:, self.n_prefix :] = torch.arange(rows * cols)
        return ImageBatch(
            pixel_values=pixel_values,
            content_mask=content,
            special=special,
            patch_index=patch_index,
            cls_index=torch.full((n,), 0 if cls else -1, dtype=torch.long),
            sample_ids=torch.tensor(sample_ids, dtype=torch.long),
            image_boxes=boxes,
            grid=(rows, cols),
        )
