"""ConceptBank: one direction per concept per layer, saved as safetensors + JSON.

A concept's activation on a (normalised) embedding ``z_hat`` is
``s = <z_hat, v> + bias`` (a separator's signed distance when ``v = w/|w|``),
or, for cosine banks, ``s = <z_hat, v> / |z_hat|`` (cosine similarity with a
unit prototype). Normalisation can be folded into the vectors so streaming
costs one matmul: ``<(z - m)/s, v> = <z, v/s> - <m/s, v>``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from jaxtyping import Float
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as save_bytes
from torch import Tensor

from superact_lens.errors import InputError, InputFileNotFoundError, InputTypeError
from superact_lens.normalization import Normalizer

__all__ = ["FORMAT_VERSION", "ConceptBank"]

FORMAT_VERSION = 1  # of bank.json; a file without the key is version 1


@dataclass
class ConceptBank:
    """Concept vectors for several residual layers.

    Attributes:
        layers: residual layer indices, one per row of ``vectors``.
        names: one name per concept.
        vectors: ``[layers, concepts, d_model]``.
        bias: ``[layers, concepts]`` added to the score (zeros by default).
        cosine: score is cosine similarity (divide by the embedding norm).
        kind: how the vectors were made ("mean", "linsep", "kmeans", "klinsep", "sae", ...).
        level: "token" or "cls".
        metadata: free JSON-serialisable information (hyper-parameters, cluster matches, ...).
    """

    layers: list[int]
    names: list[str]
    vectors: Float[Tensor, "layers concepts d_model"]
    bias: Float[Tensor, "layers concepts"] | None = None
    cosine: bool = False
    kind: str = "custom"
    level: str = "token"
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.vectors, Tensor) or self.vectors.ndim != 3:
            raise InputError(
                "vectors must be a tensor [layers, concepts, d_model]; got "
                f"{getattr(self.vectors, 'shape', type(self.vectors))}"
            )
        n_layers, n_concepts, _ = self.vectors.shape
        if n_layers != len(self.layers):
            raise InputError(
                f"vectors has {n_layers} layer rows but layers lists {len(self.layers)}"
            )
        if n_concepts != len(self.names):
            raise InputError(f"vectors has {n_concepts} concepts but names lists {len(self.names)}")
        if self.bias is None:
            self.bias = torch.zeros(n_layers, n_concepts, dtype=self.vectors.dtype)
        if tuple(self.bias.shape) != (n_layers, n_concepts):
            raise InputError(f"bias must be [layers, concepts] = {(n_layers, n_concepts)}")
        if not torch.isfinite(self.vectors).all():
            raise InputError("concept bank vectors contain NaN or inf")
        if not torch.isfinite(self.bias).all():
            raise InputError("concept bank bias contains NaN or inf")
        if self.level not in ("token", "cls"):
            raise InputError(f"level must be 'token' or 'cls', got {self.level!r}")

    @property
    def d_model(self) -> int:
        return self.vectors.shape[2]

    @property
    def n_concepts(self) -> int:
        return self.vectors.shape[1]

    def row(self, layer: int) -> int:
        try:
            return self.layers.index(layer)
        except ValueError:
            raise InputError(
                f"concept bank has no vectors for layer {layer}; it covers {self.layers}"
            ) from None

    def fold(
        self, normalizer: Normalizer | None
    ) -> tuple[Float[Tensor, "layers concepts d_model"], Float[Tensor, "layers concepts"]]:
        """Weights and offsets with normalisation folded in (non-cosine banks).

        ``z @ W[l].T + b[l]`` equals ``<(z - mean)/scale, v> + bias`` for every row.
        """
        if normalizer is None:
            return self.vectors, self.bias  # type: ignore[return-value]
        rows = [normalizer.row(layer) for layer in self.layers]
        mean = normalizer.mean[rows].to(self.vectors)
        scale = normalizer.scale[rows].to(self.vectors)
        weight = self.vectors / scale[:, None, :]
        bias = self.bias - torch.einsum("ld,lcd->lc", mean, weight)  # type: ignore[operator]
        return weight, bias

    def score(
        self,
        resid: Float[Tensor, "... d_model"],
        layer: int,
        normalizer: Normalizer | None = None,
    ) -> Float[Tensor, "... concepts"]:
        """Reference (unfused) score of raw residuals at one layer: normalise, then project."""
        if resid.shape[-1] != self.d_model:
            raise InputError(
                f"residual width {resid.shape[-1]} != concept bank d_model {self.d_model}"
            )
        r = self.row(layer)
        z = normalizer.apply(resid, layer) if normalizer is not None else resid
        v = self.vectors[r].to(z)
        out = torch.einsum("...d,cd->...c", z, v) + self.bias[r].to(z)  # type: ignore[index]
        if self.cosine:
            out = out / z.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return out

    def select(self, names: list[str]) -> ConceptBank:
        idx = [self.names.index(n) for n in names]
        return ConceptBank(
            layers=list(self.layers),
            names=list(names),
            vectors=self.vectors[:, idx],
            bias=self.bias[:, idx],  # type: ignore[index]
            cosine=self.cosine,
            kind=self.kind,
            level=self.level,
            metadata=dict(self.metadata),
        )

    @staticmethod
    def concat(banks: list[ConceptBank]) -> ConceptBank:
        """Stack banks with the same layers and cosine flag along the concept axis."""
        if not banks:
            raise InputError("concat needs at least one bank")
        first = banks[0]
        for b in banks[1:]:
            if b.layers != first.layers or b.cosine != first.cosine or b.d_model != first.d_model:
                raise InputError("banks to concatenate must share layers, d_model and cosine flag")
        return ConceptBank(
            layers=list(first.layers),
            names=[n for b in banks for n in b.names],
            vectors=torch.cat([b.vectors for b in banks], dim=1),
            bias=torch.cat([b.bias for b in banks], dim=1),  # type: ignore[misc]
            cosine=first.cosine,
            kind="+".join(sorted({b.kind for b in banks})),
            level=first.level,
        )

    def to_dict(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "layers": list(self.layers),
            "names": list(self.names),
            "cosine": self.cosine,
            "kind": self.kind,
            "level": self.level,
            "metadata": self.metadata,
        }

    def save(self, path: str | Path) -> None:
        """Write ``path/bank.safetensors`` and ``path/bank.json``.

        Both are encoded in memory first (metadata that JSON cannot hold is an error
        before anything is written), then each file is written under a temporary
        name and renamed into place: a failure never leaves a half-written file.
        """
        path = Path(path)
        try:
            config = json.dumps(self.to_dict(), indent=2, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise InputTypeError(f"metadata: cannot be saved as JSON ({err})") from None
        tensors = save_bytes(
            {"vectors": self.vectors.contiguous().cpu(), "bias": self.bias.contiguous().cpu()}  # type: ignore[union-attr]
        )
        path.mkdir(parents=True, exist_ok=True)
        for name, data in (("bank.safetensors", tensors), ("bank.json", config.encode())):
            tmp = path / f".{name}.tmp"
            try:
                tmp.write_bytes(data)
                os.replace(tmp, path / name)
            finally:
                tmp.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: str | Path) -> ConceptBank:
        """Read a folder written by :meth:`save`; a missing, truncated or foreign file is one
        InputError naming it."""
        path = Path(path)
        for name in ("bank.safetensors", "bank.json"):
            if not (path / name).is_file():
                raise InputFileNotFoundError(f"concept bank folder {path} has no {name}")
        file = path / "bank.json"
        try:
            config = json.loads(file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise InputError(
                f"concept bank file {file} is not valid JSON (truncated?): {err}"
            ) from None
        if not isinstance(config, dict):
            raise InputError(f"concept bank file {file}: expected a JSON object")
        version = config.pop("format_version", 1)
        if version != FORMAT_VERSION:
            raise InputError(
                f"concept bank file {file}: unknown format_version {version!r} "
                f"(this superact_lens reads version {FORMAT_VERSION})"
            )
        file = path / "bank.safetensors"
        try:
            tensors = load_file(str(file))
            return cls(vectors=tensors["vectors"], bias=tensors["bias"], **config)
        except (SafetensorError, KeyError, TypeError) as err:
            raise InputError(
                f"concept bank {path}: unreadable {file} or {path / 'bank.json'} "
                f"({type(err).__name__}: {err})"
            ) from None
