"""Pixel masks -> patch masks, and where the image content lies after resizing.

A vision transformer sees a ``T x T`` input cut into ``p x p`` patches. An
image of another shape reaches that input by one of three fits:

- ``"resize"``: stretched to ``T x T`` (what ``ViTImageProcessor`` does);
- ``"letterbox"``: scaled so the long side is ``T``, centred, the rest padded;
  the padding patches are not content and are excluded like padding tokens;
- ``"crop"``: scaled so the short side is ``T``, centre-cropped (what CLIP's
  processor does).

Rule for both concept and content masks: a patch is in when at least half of
its pixels are.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Bool
from PIL import Image

from superact_lens.errors import InputError, InputTypeError

__all__ = ["FITS", "content_pixels", "fit_geometry", "fit_image", "fit_mask", "patch_masks"]

FITS: tuple[str, ...] = ("resize", "letterbox", "crop")


def _check_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def patch_masks(
    mask_pixels: Bool[np.ndarray, "*batch H W"],
    patch_size: int,
    content: Bool[np.ndarray, "H W"] | None = None,
) -> Bool[np.ndarray, "*batch h w"]:
    """Per-patch masks: a patch is in when at least half of its ``p x p`` pixels are.

    Args:
        mask_pixels: ``bool [..., H, W]``; ``H`` and ``W`` multiples of ``patch_size``.
        patch_size: ``p``.
        content: optional ``bool [H, W]`` of image-content pixels; patches that are
            not content (by the same rule) are out whatever the mask says.

    Returns:
        ``bool [..., H // p, W // p]``.
    """
    p = _check_int("patch_size", patch_size)
    m = np.asarray(mask_pixels)
    if m.ndim < 2:
        raise InputError(f"mask_pixels: expected shape [..., H, W], got {m.shape}")
    h, w = m.shape[-2:]
    if h % p or w % p:
        raise InputError(f"mask_pixels: size {h}x{w} is not a multiple of patch_size {p}")
    counts = m.astype(bool).reshape(*m.shape[:-2], h // p, p, w // p, p).sum(axis=(-3, -1))
    out = 2 * counts >= p * p
    if content is not None:
        c = np.asarray(content, dtype=bool)
        if c.shape != (h, w):
            raise InputError(f"content: expected shape ({h}, {w}), got {c.shape}")
        out &= patch_masks(c, p)
    return out


def fit_geometry(width: int, height: int, target: int, fit: str = "letterbox"):
    """Where a ``width x height`` image lands on the ``target x target`` input.

    Returns ``(new_w, new_h, left, top)``: the image is resized to ``new_w x new_h``
    and pasted with its top-left corner at ``(left, top)`` (negative = cropped).
    """
    width, height = _check_int("width", width), _check_int("height", height)
    t = _check_int("target", target)
    if fit == "resize":
        return t, t, 0, 0
    if fit not in FITS:
        raise InputError(f"fit: expected one of {FITS}, got {fit!r}")
    side = max(width, height) if fit == "letterbox" else min(width, height)
    new_w = max(1, round(width * t / side))
    new_h = max(1, round(height * t / side))
    return new_w, new_h, (t - new_w) // 2, (t - new_h) // 2


def content_pixels(
    width: int, height: int, target: int, fit: str = "letterbox"
) -> Bool[np.ndarray, "T T"]:
    """``bool [T, T]``: the input pixels covered by the image (False on letterbox padding)."""
    new_w, new_h, left, top = fit_geometry(width, height, target, fit)
    out = np.zeros((target, target), dtype=bool)
    out[max(top, 0) : max(top + new_h, 0), max(left, 0) : max(left + new_w, 0)] = True
    return out


def _place(img: Image.Image, target: int, fit: str, resample, fill) -> Image.Image:
    new_w, new_h, left, top = fit_geometry(img.width, img.height, target, fit)
    canvas = Image.new(img.mode, (target, target), fill)
    canvas.paste(img.resize((new_w, new_h), resample), (left, top))
    return canvas


def fit_image(
    image: Image.Image, target: int, fit: str = "letterbox", fill=(0, 0, 0)
) -> tuple[Image.Image, Bool[np.ndarray, "T T"]]:
    """An RGB image fitted to ``target x target`` (bicubic), and its content pixels."""
    if not isinstance(image, Image.Image):
        raise InputTypeError(f"image: expected a PIL.Image, got {type(image).__name__}")
    out = _place(image.convert("RGB"), target, fit, Image.Resampling.BICUBIC, fill)
    return out, content_pixels(image.width, image.height, target, fit)


def fit_mask(mask: Bool[np.ndarray, "H W"], target: int, fit: str = "letterbox"):
    """A pixel mask ``bool [H, W]`` fitted like :func:`fit_image` (nearest) -> ``bool [T, T]``."""
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise InputError(f"mask: expected shape [H, W], got {m.shape}")
    img = Image.fromarray(m.astype(np.uint8) * 255)
    return np.asarray(_place(img, target, fit, Image.Resampling.NEAREST, 0)) > 127
