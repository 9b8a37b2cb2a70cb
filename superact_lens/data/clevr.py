"""CLEVR-style scenes: shaded cubes, spheres and cylinders on a ground, with exact masks.

Each scene holds 1-3 objects; each object has one colour (red, green, blue)
and one shape (cube, sphere, cylinder). Objects stand on a grey gradient
ground under a light from the upper left: spheres get Lambert shading plus a
specular highlight, cubes a lit top face, a mid front face and a dark side
face, cylinders a shaded round body under a lighter elliptical top; each casts
a soft shadow on the ground. Objects are drawn far to near, so a nearer object
covers a farther one, and each object's mask is its *visible* pixels (no
anti-aliasing: a pixel belongs to one object or to the ground).

:func:`generate_clevr` writes the dataset folder of INTERFACES.md section 1
(``metadata.csv`` with ``image_path``, ``split`` and six 0/1 concept columns,
``images/*.png``, ``masks/<stem>/<concept>.png`` for the concepts present).
At 224 px an object is 2-4 16-px patches wide, so it covers a minority of the
196 patches, as in the paper's CLEVR. Everything is drawn from one
``numpy.random.Generator`` seeded by ``seed``: the same seed gives the same bytes.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from superact_lens.data.folder import stratified_split
from superact_lens.errors import InputError

__all__ = [
    "CLEVR_CONCEPTS",
    "COLOURS",
    "SHAPES",
    "SceneObject",
    "generate_clevr",
    "render_scene",
    "sample_scene",
]

COLOURS: tuple[str, ...] = ("red", "green", "blue")
SHAPES: tuple[str, ...] = ("cube", "sphere", "cylinder")
CLEVR_CONCEPTS: tuple[str, ...] = COLOURS + SHAPES

_BASE_RGB = {
    "red": (0.80, 0.13, 0.11),
    "green": (0.14, 0.62, 0.20),
    "blue": (0.14, 0.28, 0.84),
}
_LIGHT = np.array([-0.55, -0.65, 0.75]) / np.linalg.norm([-0.55, -0.65, 0.75])  # x right, y down
_HALF = (_LIGHT + [0.0, 0.0, 1.0]) / np.linalg.norm(_LIGHT + [0.0, 0.0, 1.0])
_MIN_VISIBLE = 0.6  # a layout is redrawn when an object shows less than this fraction


@dataclass(frozen=True)
class SceneObject:
    """One object: colour, shape, ground contact point ``(x, y)`` in pixels, size unit ``u``.

    ``u`` is about a sixth of the object's width; ``flip`` puts a cube's side face
    on the left instead of the right.
    """

    colour: str
    shape: str
    x: float
    y: float
    u: float
    flip: bool = False


def _box(size: int, x0: float, y0: float, x1: float, y1: float):
    """Integer pixel box covering ``[x0, x1] x [y0, y1]``, clipped, and its pixel-centre grids."""
    c0, c1 = max(int(np.floor(x0)) - 1, 0), min(int(np.ceil(x1)) + 1, size)
    r0, r1 = max(int(np.floor(y0)) - 1, 0), min(int(np.ceil(y1)) + 1, size)
    xs = np.arange(c0, c1, dtype=np.float32)[None, :] + 0.5
    ys = np.arange(r0, r1, dtype=np.float32)[:, None] + 0.5
    return (slice(r0, r1), slice(c0, c1)), xs, ys


def _in_convex(xs: np.ndarray, ys: np.ndarray, pts: list[tuple[float, float]]) -> np.ndarray:
    """Pixels inside the convex polygon ``pts`` (any orientation): same side of every edge."""
    sides = []
    for (ax, ay), (bx, by) in zip(pts, pts[1:] + pts[:1], strict=True):
        sides.append((bx - ax) * (ys - ay) - (by - ay) * (xs - ax))
    s = np.stack(np.broadcast_arrays(*sides))
    return np.asarray((s >= 0).all(0) | (s <= 0).all(0))


def _draw_object(obj: SceneObject, size: int):
    """Silhouette and shading of one object in its pixel box.

    Returns ``(box, inside [h, w] bool, shade [h, w], spec [h, w])``: the colour is
    ``base * shade + spec``.
    """
    u, cx, yb = obj.u, obj.x, obj.y
    if obj.shape == "sphere":
        r = 1.15 * u
        cy = yb - r
        box, xs, ys = _box(size, cx - r, cy - r, cx + r, cy + r)
        nx, ny = (xs - cx) / r, (ys - cy) / r
        rr = nx**2 + ny**2
        inside = rr <= 1.0
        nz = np.sqrt(np.clip(1.0 - rr, 0.0, None))
        lam = np.clip(nx * _LIGHT[0] + ny * _LIGHT[1] + nz * _LIGHT[2], 0.0, None)
        hl = np.clip(nx * _HALF[0] + ny * _HALF[1] + nz * _HALF[2], 0.0, None)
        return box, inside, 0.22 + 0.78 * lam, 0.35 * hl**40
    if obj.shape == "cube":
        w = 1.85 * u
        d = 0.45 * w * (-1 if obj.flip else 1)
        fx0 = cx - (w + d) / 2
        top, bot = yb - w, yb
        box, xs, ys = _box(size, min(fx0, fx0 + d), top - abs(d), max(fx0 + w, fx0 + w + d), bot)
        front = (xs >= fx0) & (xs <= fx0 + w) & (ys >= top) & (ys <= bot)
        lid = _in_convex(xs, ys, [(fx0, top), (fx0 + w, top), (fx0 + w + d, top - abs(d)),
                                  (fx0 + d, top - abs(d))])  # fmt: skip
        ex = fx0 if obj.flip else fx0 + w  # the edge the side face hangs on
        side = _in_convex(xs, ys, [(ex, top), (ex + d, top - abs(d)), (ex + d, bot - abs(d)),
                                   (ex, bot)])  # fmt: skip
        v = np.clip((ys - top) / w, 0.0, 1.0)  # faces darken a little towards the ground
        shade = np.where(front, 0.78 - 0.12 * v, 0.48 - 0.10 * v)
        shade = np.where(lid & ~front, 1.0 - 0.08 * (top - ys) / abs(d), shade)
        return box, front | lid | side, shade, np.zeros_like(shade)
    if obj.shape == "cylinder":
        rc, h = 0.85 * u, 2.7 * u  # taller than wide: a silhouette unlike the cube's
        ry = 0.35 * rc
        ybot, ytop = yb - ry, yb - ry - h
        box, xs, ys = _box(size, cx - rc, ytop - ry, cx + rc, yb)
        nx = (xs - cx) / rc
        body = (np.abs(nx) <= 1.0) & (ys >= ytop) & (ys <= ybot)
        body |= nx**2 + ((ys - ybot) / ry) ** 2 <= 1.0
        lid = nx**2 + ((ys - ytop) / ry) ** 2 <= 1.0
        nz = np.sqrt(np.clip(1.0 - nx**2, 0.0, None))
        lam = np.clip(nx * _LIGHT[0] + nz * _LIGHT[2], 0.0, None)
        hl = np.clip(nx * _HALF[0] + nz * _HALF[2], 0.0, None)
        shade = np.broadcast_to(0.2 + 0.7 * lam, body.shape)
        spec = np.broadcast_to(0.25 * hl**30, body.shape)
        shade = np.where(lid, 0.95 + 0.05 * nx, shade)
        spec = np.where(lid, 0.0, spec)
        return box, body | lid, shade, spec
    raise InputError(f"shape: expected one of {SHAPES}, got {obj.shape!r}")


def _ground(size: int, rng: np.random.Generator) -> np.ndarray:
    """Grey ground ``float32 [S, S, 3]``: lighter far away and towards the light, a little noise."""
    t = (np.arange(size, dtype=np.float32) + 0.5) / size
    vert = 0.66 - 0.20 * t[:, None]
    horiz = 0.04 * (0.5 - t[None, :])
    tint = np.array([1.0, 1.0, 1.03], dtype=np.float32)
    img = (vert + horiz)[:, :, None] * tint
    return img + rng.normal(0.0, 0.008, (size, size, 3)).astype(np.float32)


def _shadow(img: np.ndarray, obj: SceneObject) -> None:
    """Darken the ground under ``obj`` with a soft elliptical shadow cast to the lower right."""
    u, size = obj.u, img.shape[0]
    sx, sy, ax, ay = obj.x + 0.9 * u, obj.y - 0.2 * u, 1.9 * u, 0.6 * u
    box, xs, ys = _box(size, sx - 2 * ax, sy - 2 * ay, sx + 2 * ax, sy + 2 * ay)
    q = ((xs - sx) / ax) ** 2 + ((ys - sy) / ay) ** 2
    img[box] *= (1.0 - 0.45 * np.exp(-1.5 * q**2))[:, :, None]


def render_scene(
    objects: list[SceneObject], size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``objects`` in list order (later covers earlier).

    Returns:
        image: ``uint8 [S, S, 3]``.
        masks: ``bool [k, S, S]``, the visible pixels of each object (disjoint).
    """
    img = _ground(size, rng)
    for obj in objects:
        _shadow(img, obj)
    owner = np.full((size, size), -1, dtype=np.int16)
    for k, obj in enumerate(objects):
        box, inside, shade, spec = _draw_object(obj, size)
        base = np.clip(np.asarray(_BASE_RGB[obj.colour]) + rng.normal(0.0, 0.03, 3), 0.05, 0.95)
        rgb = base[None, None, :] * shade[:, :, None] + spec[:, :, None]
        img[box] = np.where(inside[:, :, None], rgb, img[box])
        owner[box][inside] = k
    image = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return image, owner[None, :, :] == np.arange(len(objects))[:, None, None]


def _silhouettes(objects: list[SceneObject], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Full and visible pixel counts per object, for the layout check."""
    owner = np.full((size, size), -1, dtype=np.int16)
    full = np.zeros(len(objects))
    for k, obj in enumerate(objects):
        box, inside, _, _ = _draw_object(obj, size)
        full[k] = inside.sum()
        owner[box][inside] = k
    visible = np.bincount(owner[owner >= 0].ravel(), minlength=len(objects))
    return full, visible[: len(objects)]


def sample_scene(
    rng: np.random.Generator, size: int, first: tuple[str, str] | None = None
) -> list[SceneObject]:
    """1-3 random objects sorted far to near, each showing >= 60 % of itself when possible.

    ``first`` fixes the colour and shape of one object (used to balance concepts).
    """
    k = int(rng.integers(1, 4))
    kinds = [(COLOURS[rng.integers(3)], SHAPES[rng.integers(3)]) for _ in range(k)]
    if first is not None:
        kinds[0] = first
    objects: list[SceneObject] = []
    for _ in range(30):
        objects = []
        for colour, shape in kinds:
            depth = rng.uniform()  # 0 far, 1 near: nearer objects sit lower and look bigger
            u = size * 0.09 * (0.75 + 0.45 * depth)
            objects.append(
                SceneObject(
                    colour=str(colour),
                    shape=str(shape),
                    x=float(rng.uniform(0.16, 0.84) * size),
                    y=float(size * (0.42 + 0.50 * depth)),
                    u=float(u),
                    flip=bool(rng.uniform() < 0.3),
                )
            )
        objects.sort(key=lambda o: o.y)
        full, visible = _silhouettes(objects, size)
        if (visible >= _MIN_VISIBLE * full).all():
            break
    return objects


def generate_clevr(out: str | Path, n: int = 1200, seed: int = 0, size: int = 224) -> Path:
    """Write ``n`` CLEVR-style scenes as a dataset folder at ``out``; return ``out``.

    Labels are "a visible pixel of this colour/shape exists". Splits are 60/20/20,
    stratified and seeded. One object per scene cycles through the nine
    colour x shape pairs (in a seeded order), and the split is redrawn (seeded)
    until every concept has positives in every split.

    Raises:
        InputError: ``n`` or ``size`` too small, or ``out`` holds a non-empty
            folder without ``metadata.csv`` (it is not ours to overwrite).
    """
    if not isinstance(n, int) or n < 15:
        raise InputError(f"n: expected an integer >= 15 (scenes), got {n!r}")
    if not isinstance(size, int) or size < 32:
        raise InputError(f"size: expected an integer >= 32 (pixels), got {size!r}")
    out = Path(out)
    if out.is_file() or (
        out.is_dir() and any(out.iterdir()) and not (out / "metadata.csv").is_file()
    ):
        raise InputError(f"out: {out} exists and is not a dataset folder; give a new folder")
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    order = rng.permutation(len(pairs))
    width = max(5, len(str(n - 1)))
    labels = np.zeros((n, len(CLEVR_CONCEPTS)), dtype=bool)
    rows = []
    for i in range(n):
        objects = sample_scene(rng, size, first=pairs[order[i % len(pairs)]])
        image, masks = render_scene(objects, size, rng)
        stem = f"{i:0{width}d}"
        Image.fromarray(image).save(out / "images" / f"{stem}.png", compress_level=1)
        for j, concept in enumerate(CLEVR_CONCEPTS):
            union = np.zeros((size, size), dtype=bool)
            for obj, m in zip(objects, masks, strict=True):
                if concept in (obj.colour, obj.shape):
                    union |= m
            if union.any():
                labels[i, j] = True
                (out / "masks" / stem).mkdir(parents=True, exist_ok=True)
                mask_img = Image.fromarray(union.astype(np.uint8) * 255)
                mask_img.save(out / "masks" / stem / f"{concept}.png")
        described = ";".join(f"{o.colour} {o.shape}" for o in objects)
        rows.append((f"images/{stem}.png", described))
    # the first split seed from ``seed`` on that puts every concept in every split
    # (small n only; at n >= 100 the first one does)
    for split_seed in range(seed, seed + 100):
        splits = stratified_split(labels, seed=split_seed)
        if all(labels[splits == s].any(0).all() for s in ("train", "cal", "test")):
            break
    else:
        raise InputError(f"n: {n} scenes leave a concept out of a split; use more")
    with open(out / "metadata.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["image_path", "split", *CLEVR_CONCEPTS, "objects"])
        for i, (rel, described) in enumerate(rows):
            w.writerow([rel, splits[i], *(int(v) for v in labels[i]), described])
    return out
