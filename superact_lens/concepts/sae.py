"""Sparse-autoencoder units as concepts (SPEC §3.5), from a SAELens-format folder.

A SAELens SAE on disk is ``cfg.json`` + ``sae_weights.safetensors`` with
``W_enc [d_in, d_sae]``, ``b_enc [d_sae]``, ``W_dec [d_sae, d_in]``, ``b_dec [d_in]``
(plus ``threshold [d_sae]`` for JumpReLU, ``b_gate`` for gated SAEs). A unit's score
is its encoder pre-activation on the RAW residual,
``pre = (x - b_dec) @ W_enc + b_enc`` (``b_dec`` subtracted when
``apply_b_dec_to_input``), which is affine in ``x`` and so fits a ConceptBank row
(``vectors = W_enc.T``, ``bias = b_enc - b_dec @ W_enc``). With a Normalizer the
affine map is re-expressed on normalised inputs, so the bank is used like any other.

A SAE lives on one residual layer (from ``hook_name``: ``blocks.{i}.hook_resid_pre``
is layer ``i``, ``blocks.{i}.hook_resid_post`` is layer ``i + 1``; or pass ``layer``),
so the bank has one layer row. Units are filtered on the TRAIN token sample
(paper appendix Q.1): drop units that fire on no samples or on nearly all of them
(``fire_frac`` of samples with at least one firing token outside
``(min_fire_frac, max_fire_frac]``) and units whose largest activation is weak
(below ``min_strength`` x the median largest activation of the firing units).
A unit fires when its activation is positive (ReLU/TopK) or above its threshold (JumpReLU).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from jaxtyping import Float
from safetensors.torch import load_file
from torch import Tensor

from superact_lens.concepts._common import ConceptEstimator, normalizer_note
from superact_lens.concepts.bank import ConceptBank
from superact_lens.errors import InputError, InputFileNotFoundError
from superact_lens.normalization import Normalizer
from superact_lens.sinks.token_sample import TokenSample

__all__ = ["SAEConcepts", "load_sae", "sae_layer"]

_HOOK = re.compile(r"blocks\.(\d+)\.hook_resid_(pre|post)$")


def load_sae(path: str | Path) -> tuple[dict, dict[str, Tensor]]:
    """Read a SAELens folder: ``(cfg, weights)``; checks the weight shapes against ``cfg``."""
    path = Path(path)
    for name in ("cfg.json", "sae_weights.safetensors"):
        if not (path / name).is_file():
            raise InputFileNotFoundError(
                f"SAE folder {path} has no {name} (SAELens format expected)"
            )
    cfg = json.loads((path / "cfg.json").read_text())
    weights = load_file(str(path / "sae_weights.safetensors"))
    for key in ("W_enc", "b_enc", "b_dec"):
        if key not in weights:
            raise InputError(f"SAE weights in {path} have no {key}")
    d_in, d_sae = weights["W_enc"].shape
    if cfg.get("d_in", d_in) != d_in or cfg.get("d_sae", d_sae) != d_sae:
        raise InputError(
            f"SAE cfg says d_in={cfg.get('d_in')}, d_sae={cfg.get('d_sae')} but W_enc is "
            f"{tuple(weights['W_enc'].shape)}"
        )
    norm = cfg.get("normalize_activations", "none") or "none"
    if norm != "none":
        raise InputError(
            f"SAE normalize_activations={norm!r} is not affine in the residual; only 'none' is "
            "supported"
        )
    return cfg, weights


def sae_layer(cfg: dict) -> int:
    """Residual layer index the SAE reads (our convention: 0 = embeddings output)."""
    hook = cfg.get("hook_name") or cfg.get("metadata", {}).get("hook_name") or ""
    match = _HOOK.search(hook)
    if match is None:
        raise InputError(
            f"cannot infer the residual layer from SAE hook_name {hook!r}; pass layer=..."
        )
    return int(match.group(1)) + (match.group(2) == "post")


def _affine(cfg: dict, weights: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """``W [d_in, d_sae]``, ``b [d_sae]`` with ``pre = x @ W + b``, and firing thresholds."""
    w = weights["W_enc"].float()
    arch = cfg.get("architecture", "standard")
    b = weights["b_gate"].float() if arch == "gated" else weights["b_enc"].float()
    if cfg.get("apply_b_dec_to_input", True):
        b = b - torch.einsum("d,du->u", weights["b_dec"].float(), w)
    thr = weights.get("threshold", torch.zeros(w.shape[1])).float()
    if arch != "jumprelu":
        thr = torch.zeros_like(thr)
    return w, b, thr


class SAEConcepts(ConceptEstimator):
    """Filtered SAE encoder units as concept vectors (unsupervised; names ``sae_{unit}``).

    Args:
        path: SAELens folder (``cfg.json`` + ``sae_weights.safetensors``).
        layer: residual layer the SAE reads; None = from ``hook_name`` in the cfg.
        min_fire_frac, max_fire_frac: keep units firing on a fraction of samples in
            ``(min_fire_frac, max_fire_frac]``.
        min_strength: drop units whose max activation < this x median max activation.
        max_units: keep at most this many units (the strongest by max activation).
        chunk_units, chunk_tokens: bound the ``[tokens, units]`` block held in memory.
        level: label of the bank fitted by ``fit`` ("token"); ``fit_cls`` gives "cls".

    Attributes:
        bank_: ConceptBank ``[1, kept_units, d_model]``, kind "sae", cosine=False,
            scores = encoder pre-activations.
        units_: kept unit indices; ``fire_frac_``, ``max_act_``: per-unit statistics.
    """

    def __init__(
        self,
        path: str | Path,
        layer: int | None = None,
        min_fire_frac: float = 0.0,
        max_fire_frac: float = 0.9,
        min_strength: float = 0.1,
        max_units: int | None = None,
        chunk_units: int = 2048,
        chunk_tokens: int = 8192,
        level: str = "token",
    ) -> None:
        self.path = path
        self.layer = layer
        self.min_fire_frac = min_fire_frac
        self.max_fire_frac = max_fire_frac
        self.min_strength = min_strength
        self.max_units = max_units
        self.chunk_units = chunk_units
        self.chunk_tokens = chunk_tokens
        self.level = level

    def _stats(
        self,
        x: Float[Tensor, "n d"],
        groups: Tensor,
        n_groups: int,
        w: Tensor,
        b: Tensor,
        thr: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """Per unit: fraction of samples with a firing token, and the max activation."""
        d_sae = w.shape[1]
        fire_frac = torch.zeros(d_sae, device=x.device)
        max_act = torch.zeros(d_sae, device=x.device)
        for u0 in range(0, d_sae, self.chunk_units):
            u = slice(u0, u0 + self.chunk_units)
            fired = torch.zeros(n_groups, w[:, u].shape[1], device=x.device)
            for t0 in range(0, x.shape[0], self.chunk_tokens):
                t = slice(t0, t0 + self.chunk_tokens)
                pre = torch.einsum("nd,du->nu", x[t], w[:, u]) + b[u]
                fires = pre > thr[u]
                act = torch.where(fires, pre, torch.zeros_like(pre))
                max_act[u] = torch.maximum(max_act[u], act.amax(0))
                fired.index_add_(0, groups[t], fires.float())  # firing tokens per sample
            fire_frac[u] = (fired > 0).float().mean(0)
        return fire_frac, max_act

    def _fit(
        self,
        sample: TokenSample,
        normalizer: Normalizer | None,
        names: Sequence[str] | None,
        level: str,
    ) -> ConceptBank:
        if not 0 <= self.min_fire_frac < self.max_fire_frac <= 1:
            raise InputError("need 0 <= min_fire_frac < max_fire_frac <= 1")
        cfg, weights = load_sae(self.path)
        layer = sae_layer(cfg) if self.layer is None else int(self.layer)
        device = sample.embeddings.device
        x = sample.layer(layer).float()
        if x.shape[1] != weights["W_enc"].shape[0]:
            raise InputError(f"SAE d_in {weights['W_enc'].shape[0]} != sample d_model {x.shape[1]}")
        w, b, thr = (t.to(device) for t in _affine(cfg, weights))
        _, groups = torch.unique(sample.sample_ids.to(device), return_inverse=True)
        n_groups = int(groups.max()) + 1
        fire_frac, max_act = self._stats(x, groups, n_groups, w, b, thr)
        alive = fire_frac > self.min_fire_frac
        dense = fire_frac > self.max_fire_frac
        median = max_act[alive].median() if alive.any() else max_act.new_tensor(0.0)
        weak = alive & (max_act < self.min_strength * median)
        keep = alive & ~dense & ~weak
        units = torch.nonzero(keep).flatten()
        if self.max_units is not None and len(units) > self.max_units:
            units = units[max_act[units].argsort(descending=True)[: self.max_units]].sort().values
        if len(units) == 0:
            raise InputError(f"no SAE unit of {self.path} survives the filters on this sample")
        self.units_, self.fire_frac_, self.max_act_ = units, fire_frac, max_act
        vec, bias = w[:, units].T, b[units]  # raw-space affine map, [kept, d], [kept]
        if normalizer is not None:
            # pre = x @ w + b with x = z_hat * scale + mean.
            r = normalizer.row(layer)
            mean, scale = normalizer.mean[r].to(vec), normalizer.scale[r].to(vec)
            bias = bias + torch.einsum("d,ud->u", mean, vec)
            vec = vec * scale
        arch = cfg.get("architecture", "standard")
        metadata = {
            **normalizer_note(normalizer),
            "unsupervised": True,
            "sae_path": str(self.path),
            "hook_name": cfg.get("hook_name") or cfg.get("metadata", {}).get("hook_name"),
            "architecture": arch,
            "units": units.tolist(),
            "filter": {
                "d_sae": int(w.shape[1]),
                "dead": int((~alive).sum()),
                "dense": int(dense.sum()),
                "weak": int((weak & ~dense).sum()),
                "kept": len(units),
                "params": {
                    "min_fire_frac": self.min_fire_frac,
                    "max_fire_frac": self.max_fire_frac,
                    "min_strength": self.min_strength,
                    "max_units": self.max_units,
                },
            },
        }
        if arch == "jumprelu":
            metadata["thresholds"] = thr[units].tolist()
        return ConceptBank(
            layers=[layer],
            names=[f"sae_{u}" for u in units.tolist()],
            vectors=vec[None],
            bias=bias[None],
            cosine=False,
            kind="sae",
            level=level,
            metadata=metadata,
        )
