"""A calibrated detector as one artefact: everything needed to apply it to new input.

``ConceptDetector`` bundles the token-level concept bank, the train-split
normaliser, a fitted SuperActivator detector (layer, N and threshold per
concept), the concept names and type, the identity of the model it was
calibrated on, and where it came from (command, dataset). ``superact run``
writes one per concept type to ``OUT/detectors/<concept_type>/``;
``superact detect`` and :class:`~superact_lens.monitor.ConceptMonitor` read it.

A concept ``c`` fires on a text iff some content token's score at
``layer_of(c)`` (on bank column ``column_of(c)``) is strictly greater than
``threshold_of(c)``: the SuperActivator rule, ``max_t s_c(z_t) > tau_c``.

On disk (``save`` / ``load``; tensors in safetensors, the rest in JSON)::

    DIR/detector.json                  format_version, concepts, type, model, provenance,
                                       normaliser layers, sha256 of every other file
    DIR/bank/bank.{safetensors,json}   ConceptBank.save
    DIR/normalizer.safetensors         mean, scale  [layers, d_model]
    DIR/detector/{state.safetensors,config.json}   BaseDetector.save
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from superact_lens.concepts.bank import ConceptBank
from superact_lens.errors import InputError, InputFileNotFoundError, InputTypeError
from superact_lens.normalization import Normalizer
from superact_lens.sinks.projection import _Projector

from .base import BaseDetector
from .superact import FixedNDetector, SuperActivatorDetector

if TYPE_CHECKING:
    from superact_lens.lens import ConceptLens
    from superact_lens.pipeline import Experiment

__all__ = ["FORMAT_VERSION", "ConceptDetector", "ModelIdentity", "vocab_hash"]

FORMAT_VERSION = 1
#: Detectors whose rule is "max token score > threshold" (the only rule an artefact applies).
MAX_TOKEN_DETECTORS = (SuperActivatorDetector, FixedNDetector)
_INDEX = "detector.json"
_BANK, _DETECTOR, _NORMALIZER = "bank", "detector", "normalizer.safetensors"


def vocab_hash(tokenizer: Any) -> str:
    """sha256 of the tokenizer's vocabulary: its sorted ``(token, id)`` pairs as JSON."""
    try:
        vocab = tokenizer.get_vocab()
    except (AttributeError, NotImplementedError):
        raise InputTypeError(
            f"tokenizer: a {type(tokenizer).__name__} has no get_vocab() to identify it by"
        ) from None
    pairs = sorted((str(t), int(i)) for t, i in vocab.items())
    return "sha256:" + hashlib.sha256(json.dumps(pairs, ensure_ascii=False).encode()).hexdigest()


@dataclass(frozen=True)
class ModelIdentity:
    """What a detector was calibrated on: enough to refuse a different model.

    ``vocab_hash`` is a hash of the tokenizer's vocabulary (token -> id pairs); for
    an image model, of its image processor's settings, input and patch size.
    """

    name: str
    n_layers: int
    d_model: int
    vocab_hash: str

    @classmethod
    def from_lens(cls, lens: ConceptLens, name: str | None = None) -> ModelIdentity:
        """Identity of ``lens``'s model. ``name`` is what loads it again ("minilm", a
        Hugging Face id, a folder: made absolute so that it works from any directory);
        by default the model's own ``name_or_path``."""
        if name is None:
            config = getattr(lens.model, "config", None)
            name = getattr(lens.model, "name_or_path", None) or getattr(
                config, "_name_or_path", None
            )
            name = name or type(lens.model).__name__
        local = Path(name).expanduser()
        if local.is_dir():
            name = str(local.resolve())
        if lens.is_vision:  # an image model: its processor settings stand in for a vocabulary
            from superact_lens.vision.detect import processor_hash

            return cls(str(name), int(lens.n_layers), int(lens.d_model), processor_hash(lens))
        return cls(str(name), int(lens.n_layers), int(lens.d_model), vocab_hash(lens.tokenizer))

    def differences(self, other: ModelIdentity) -> list[str]:
        """What differs in ``other`` (width, depth, tokenizer), as short phrases."""
        out = []
        if other.d_model != self.d_model:
            out.append(f"width d_model {other.d_model} != {self.d_model}")
        if other.n_layers != self.n_layers:
            out.append(f"depth n_layers {other.n_layers} != {self.n_layers}")
        if other.vocab_hash != self.vocab_hash:
            out.append("tokenizer vocabulary differs")
        return out


@dataclass
class ConceptDetector:
    """A calibrated SuperActivator detector, ready to apply to new text.

    Attributes:
        bank: token-level concept vectors (at least the detector's layers).
        normalizer: train-split statistics the bank expects.
        detector: a fitted max-token detector (``SuperActivatorDetector``; the
            per-concept ``layer_``, ``column_`` and ``threshold_`` are what is used).
        concepts: ground-truth concept names, one per detector entry.
        concept_type: "linsep", "mean", "kmeans", ...
        model: the model it was calibrated on.
        provenance: free JSON (command, dataset, seed, ...).
        source: the folder it was loaded from (None if built in memory); not saved.
    """

    bank: ConceptBank
    normalizer: Normalizer
    detector: BaseDetector
    concepts: list[str]
    concept_type: str
    model: ModelIdentity
    provenance: dict[str, Any] = field(default_factory=dict)
    source: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.bank, ConceptBank):
            raise InputTypeError(f"bank: expected a ConceptBank, got {type(self.bank).__name__}")
        if not isinstance(self.normalizer, Normalizer):
            raise InputTypeError(
                f"normalizer: expected a Normalizer, got {type(self.normalizer).__name__}"
            )
        if not isinstance(self.detector, MAX_TOKEN_DETECTORS):
            raise InputTypeError(
                f"detector: a {type(self.detector).__name__} does not apply the max-token "
                "rule; a ConceptDetector holds a SuperActivatorDetector or FixedNDetector"
            )
        if not hasattr(self.detector, "threshold_"):
            raise InputError("detector: not fitted (call fit() first)")
        if len(self.detector.threshold_) != len(self.concepts):
            raise InputError(
                f"concepts: {len(self.concepts)} names for a detector of "
                f"{len(self.detector.threshold_)} concepts"
            )
        if self.detector.n_columns_ != self.bank.n_concepts:
            raise InputError(
                f"bank: {self.bank.n_concepts} concept columns, the detector was fitted on "
                f"{self.detector.n_columns_}"
            )
        missing = sorted({int(x) for x in self.detector.layer_} - set(self.bank.layers))
        if missing:
            raise InputError(f"bank has no vectors for the detector's layers {missing}")
        missing = sorted(set(self.layers) - set(self.normalizer.layers))
        if missing:
            raise InputError(f"normalizer has no statistics for the detector's layers {missing}")
        if self.bank.d_model != self.model.d_model:
            raise InputError(
                f"bank: width {self.bank.d_model} != the model's d_model {self.model.d_model}"
            )

    # --- what the detector uses, per concept -------------------------------------------
    def layer_of(self, c: int) -> int:
        return int(self.detector.layer_[c])

    def column_of(self, c: int) -> int:
        return int(self.detector.column_[c])

    def threshold_of(self, c: int) -> float:
        return float(self.detector.threshold_[c])

    @property
    def layers(self) -> list[int]:
        """The residual layers any concept is read at (sorted, unique)."""
        return sorted({int(x) for x in self.detector.layer_})

    def concepts_at(self, layer: int) -> list[int]:
        """Indices of the concepts read at ``layer``."""
        return [c for c in range(len(self.concepts)) if self.layer_of(c) == layer]

    def projector(self) -> _Projector:
        """Bank and normaliser folded for :attr:`layers` (what the stream applies)."""
        return _Projector(self.bank, self.normalizer, self.layers)

    def concept_scores(
        self, resid: Float[Tensor, "... d_model"], layer: int, projector: _Projector | None = None
    ) -> Float[Tensor, "... C_at_layer"]:
        """Scores of the concepts read at ``layer`` (order of :meth:`concepts_at`)."""
        proj = projector if projector is not None else self.projector()
        cols = torch.tensor([self.column_of(c) for c in self.concepts_at(layer)], dtype=torch.long)
        return proj(resid, layer)[..., cols.to(resid.device)]

    @classmethod
    def from_experiment(
        cls, exp: Experiment, kind: str, provenance: dict[str, Any] | None = None
    ) -> ConceptDetector:
        """The SuperActivator detector ``superact run`` calibrated for concept type ``kind``."""
        if kind not in exp.detectors or "superact" not in exp.detectors[kind]:
            raise InputError(f"experiment has no calibrated superact detector for {kind!r}")
        return cls(
            bank=exp.banks[kind],
            normalizer=exp.normalizer,
            detector=exp.detectors[kind]["superact"],  # type: ignore[arg-type]
            concepts=list(exp.dataset.concepts),
            concept_type=kind,
            model=ModelIdentity.from_lens(exp.lens, exp.config.model),
            provenance=dict(provenance or {}),
        )

    # --- applying it ---------------------------------------------------------------------
    def check_model(self, lens: ConceptLens) -> None:
        """Raise one clear InputError if ``lens``'s model is not the calibration model."""
        found = ModelIdentity.from_lens(lens, self.model.name)
        diffs = self.model.differences(found)
        if diffs:
            where = f"detector {self.source}" if self.source is not None else "detector"
            raise InputError(
                f"{where} was calibrated on {self.model.name!r} (n_layers {self.model.n_layers}, "
                f"d_model {self.model.d_model}); the given model does not match: "
                + "; ".join(diffs)
            )

    def detect(self, lens: ConceptLens, texts: list[str], **kwargs: Any) -> list[dict[str, Any]]:
        """One detection record per text (see :func:`~superact_lens.detection.apply.detect`)."""
        from .apply import detect

        return detect(self, lens, texts, **kwargs)

    # --- persistence ---------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the detector folder ``path`` (replacing a detector folder already there).

        Written to a temporary sibling folder first and renamed into place, so an
        error never leaves a half-written detector.
        """
        path = Path(path)
        if path.exists() and not (path / _INDEX).is_file():
            raise InputError(f"{path}: exists and is not a detector folder; not overwriting it")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            self._write(tmp)
            replace_folder(tmp, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return path

    def _write(self, folder: Path) -> None:
        self.bank.save(folder / _BANK)
        self.detector.save(folder / _DETECTOR)
        save_file(
            {
                "mean": self.normalizer.mean.contiguous().cpu(),
                "scale": self.normalizer.scale.contiguous().cpu(),
            },
            str(folder / _NORMALIZER),
        )
        files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        index = {
            "format_version": FORMAT_VERSION,
            "concept_type": self.concept_type,
            "concepts": list(self.concepts),
            "model": asdict(self.model),
            "normalizer": {"layers": list(self.normalizer.layers)},
            "provenance": self.provenance,
            "summary": self.detector.summary(list(self.concepts)),  # for readers; not loaded
            "files": {name: _sha256(folder / name) for name in files},
        }
        (folder / _INDEX).write_text(json.dumps(index, indent=2, allow_nan=False))

    @classmethod
    def load(cls, path: str | Path, lens: ConceptLens | None = None) -> ConceptDetector:
        """Read a folder written by :meth:`save`; with ``lens``, also :meth:`check_model`.

        Every problem (missing, truncated or corrupted file, unknown format version,
        model mismatch) is one InputError naming the file.
        """
        path = Path(path)
        if not path.is_dir():
            what = "is not a folder" if path.exists() else "does not exist"
            raise InputFileNotFoundError(f"detector folder {path} {what}")
        index = _read_index(path)
        for name, digest in index["files"].items():
            file = path / name
            if not file.is_file():
                raise InputFileNotFoundError(f"detector file {file} is missing")
            if _sha256(file) != digest:
                raise InputError(
                    f"detector file {file} is corrupted or truncated (its sha256 differs "
                    f"from the one in {path / _INDEX})"
                )
        try:
            bank = ConceptBank.load(path / _BANK)
            detector = BaseDetector.load(path / _DETECTOR)
            stats = load_file(str(path / _NORMALIZER))
            normalizer = Normalizer(index["normalizer"]["layers"], stats["mean"], stats["scale"])
            model = ModelIdentity(**index["model"])
        except (KeyError, TypeError, ValueError, OSError, SafetensorError) as err:
            if isinstance(err, InputError):
                raise InputError(f"detector {path}: {err}") from None
            raise InputError(f"detector {path}: unreadable ({type(err).__name__}: {err})") from None
        out = cls(
            bank=bank,
            normalizer=normalizer,
            detector=detector,
            concepts=list(index["concepts"]),
            concept_type=str(index["concept_type"]),
            model=model,
            provenance=dict(index["provenance"]),
            source=path,
        )
        if lens is not None:
            out.check_model(lens)
        return out


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_INDEX_KEYS = ("concept_type", "concepts", "model", "normalizer", "provenance", "files")


def _read_index(path: Path) -> dict[str, Any]:
    """``detector.json``, checked: valid JSON, a known format version, every key there."""
    file = path / _INDEX
    if not file.is_file():
        raise InputFileNotFoundError(f"detector file {file} is missing (not a detector folder?)")
    try:
        index = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"detector file {file} is not valid JSON (truncated?): {err}") from None
    if not isinstance(index, dict):
        raise InputError(f"detector file {file}: expected a JSON object")
    version = index.get("format_version")
    if version != FORMAT_VERSION:
        raise InputError(
            f"detector file {file}: unknown format_version {version!r} "
            f"(this superact_lens reads version {FORMAT_VERSION})"
        )
    missing = [k for k in _INDEX_KEYS if k not in index]
    if missing:
        raise InputError(f"detector file {file}: missing keys {missing}")
    files = index["files"]
    if not isinstance(files, dict) or not all(
        isinstance(k, str)
        and isinstance(v, str)
        and ".." not in Path(k).parts
        and not Path(k).is_absolute()
        for k, v in files.items()
    ):
        raise InputError(f"detector file {file}: 'files' must map relative paths to sha256")
    return index


def replace_folder(new: Path, dest: Path) -> None:
    """Move the finished folder ``new`` to ``dest``, replacing what is there.

    Renames only (same parent folder): the old folder is moved aside first and
    removed once the new one is in place, so ``dest`` is never half-written.
    """
    old = None
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old.", dir=dest.parent))
        os.replace(dest, old / dest.name)
    try:
        os.replace(new, dest)
    except OSError:
        if old is not None:
            os.replace(old / dest.name, dest)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
