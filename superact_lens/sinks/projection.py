"""ProjectionSink: token and sample scores on a concept bank, computed while streaming.

Normalisation costs nothing extra: ``ConceptBank.fold`` turns
``<(z - mean) / scale, v> + bias`` into ``z @ W.T + b``. Cosine banks also
need ``|z_hat|``, the norm of the normalised token, which is computed from
the raw residual on the fly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from jaxtyping import Float
from torch import Tensor

from superact_lens.concepts.bank import ConceptBank
from superact_lens.errors import InputError, InputTypeError
from superact_lens.normalization import Normalizer
from superact_lens.scores import TokenScores, segment_positions
from superact_lens.sinks.base import Sink

if TYPE_CHECKING:
    from superact_lens.lens import TokenBatch

__all__ = ["ProjectionSink"]


class _Projector:
    """One bank with normalisation folded in, for a list of layers."""

    def __init__(self, bank: ConceptBank, normalizer: Normalizer | None, layers: list[int]):
        self.mean: Tensor | None
        self.scale: Tensor | None
        rows = [bank.row(layer) for layer in layers]
        weight, bias = bank.fold(normalizer)
        self.weight = weight[rows].float()
        self.bias = bias[rows].float()
        self.cosine = bank.cosine
        self.layers = list(layers)
        if normalizer is not None and bank.cosine:
            nrows = [normalizer.row(layer) for layer in layers]
            self.mean = normalizer.mean[nrows].float()
            self.scale = normalizer.scale[nrows].float()
        else:
            self.mean, self.scale = None, None

    def to(self, device: torch.device) -> None:
        for name in ("weight", "bias", "mean", "scale"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.to(device))

    def __call__(
        self,
        z: Float[Tensor, "... d_model"],
        layer: int,
        out: Float[Tensor, "n concepts"] | None = None,
    ) -> Float[Tensor, "... concepts"]:
        """Scores of ``z``; written into ``out`` (``[prod(...), concepts]``) when given.

        ``addmm`` (z @ W.T + b in one kernel, straight into the batch buffer) rather
        than ``einsum``: it is the hot loop, and on shared CPUs every extra small op
        costs a thread synchronisation.
        """
        r = self.layers.index(layer)
        flat = z.float().reshape(-1, z.shape[-1])
        if out is None:
            out = torch.empty(flat.shape[0], self.weight.shape[1], device=flat.device)
        torch.addmm(self.bias[r], flat, self.weight[r].T, out=out)
        if self.cosine:
            z_hat = flat
            if self.mean is not None and self.scale is not None:
                z_hat = (flat - self.mean[r]) / self.scale[r]
            out.div_(z_hat.norm(dim=-1, keepdim=True).clamp_min(1e-12))
        return out.view(*z.shape[:-1], out.shape[-1])


class ProjectionSink(Sink):
    """Project each chosen layer onto ``bank`` -> :class:`TokenScores`.

    Args:
        bank: ``[layers, concepts, d_model]`` concept vectors (token level).
        normalizer: train-split statistics, folded into the bank; None = raw residuals.
        cls_bank: vectors for the sample embedding; ``bank`` when None. Same
            concepts and layers as ``bank``.
        layers: the layers to score (default: all of the bank's).

    ``result().cls`` is the sample embedding ([CLS] or mean of content tokens,
    normalised with the same ``normalizer``) projected on ``cls_bank``.
    """

    def __init__(
        self,
        bank: ConceptBank,
        normalizer: Normalizer | None = None,
        cls_bank: ConceptBank | None = None,
        layers: list[int] | None = None,
    ) -> None:
        if not isinstance(bank, ConceptBank):
            raise InputTypeError(f"bank: expected a ConceptBank, got {type(bank).__name__}")
        if cls_bank is not None:
            if not isinstance(cls_bank, ConceptBank):
                raise InputTypeError(
                    f"cls_bank: expected a ConceptBank, got {type(cls_bank).__name__}"
                )
            if cls_bank.n_concepts != bank.n_concepts:
                raise InputError(
                    f"cls_bank: has {cls_bank.n_concepts} concepts, bank has {bank.n_concepts}"
                )
        if normalizer is not None and not isinstance(normalizer, Normalizer):
            raise InputTypeError(
                f"normalizer: expected a Normalizer, got {type(normalizer).__name__}"
            )
        for name, b in (("bank", bank), ("cls_bank", cls_bank)):
            if b is not None and not (
                torch.isfinite(b.vectors).all() and torch.isfinite(b.bias).all()  # type: ignore[arg-type]
            ):
                raise InputError(f"{name}: vectors or bias contain NaN or inf")
        self.bank = bank
        self.cls_bank = cls_bank if cls_bank is not None else bank
        self.normalizer = normalizer
        self.layers = list(layers) if layers is not None else list(bank.layers)
        for name, b in (("bank", self.bank), ("cls_bank", self.cls_bank)):
            missing = [layer for layer in self.layers if layer not in b.layers]
            if missing:
                raise InputError(
                    f"{name}: has no vectors for layers {missing}; it covers {b.layers}"
                )
        if normalizer is not None:
            missing = [layer for layer in self.layers if layer not in normalizer.layers]
            if missing:
                raise InputError(
                    f"normalizer: has no statistics for layers {missing}; "
                    f"it covers {normalizer.layers}"
                )

    def begin(self, n_samples: int, layers: list[int], d_model: int) -> None:
        super().begin(n_samples, layers, d_model)
        for name, b in (("bank", self.bank), ("cls_bank", self.cls_bank)):
            if b.d_model != d_model:
                raise InputError(
                    f"{name}: concept vectors have width {b.d_model}, model d_model is {d_model}"
                )
        self._tokens = _Projector(self.bank, self.normalizer, self.layers_)
        self._cls = _Projector(self.cls_bank, self.normalizer, self.layers_)
        self._device: torch.device | None = None
        self._chunks: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []

    def begin_batch(self, batch: TokenBatch) -> None:
        device = batch.input_ids.device
        if self._device != device:
            self._tokens.to(device)
            self._cls.to(device)
            self._device = device
        n_samples, n_pos = batch.input_ids.shape
        n_layers, n_concepts = len(self.layers_), self.bank.n_concepts
        # Every position is projected into one buffer; content tokens and the sample
        # score are picked out of it once per batch (fewer, larger ops per layer).
        self._batch_full = torch.empty(n_layers, n_samples, n_pos, n_concepts, device=device)
        has_cls = bool((batch.cls_index >= 0).all())
        # The sample score can be read off the token scores when both use the same bank
        # and the sample embedding is a [CLS] token, or a mean (projection is affine).
        self._shared_cls = self.cls_bank is self.bank and (has_cls or not self.bank.cosine)
        self._batch_cls = (
            None
            if self._shared_cls
            else torch.empty(n_layers, n_samples, n_concepts, device=device)
        )

    def on_layer(
        self, layer: int, resid: Float[Tensor, "batch pos d_model"], batch: TokenBatch
    ) -> None:
        r = self._row(layer)
        full = self._batch_full[r]
        self._tokens(resid, layer, out=full.view(-1, full.shape[-1]))
        if self._batch_cls is not None:
            self._batch_cls[r] = self._cls(batch.sample_embedding(resid), layer)

    def end_batch(self, batch: TokenBatch) -> None:
        full = self._batch_full
        tokens = full[:, batch.content_mask]
        if self._batch_cls is not None:
            cls = self._batch_cls
        elif bool((batch.cls_index >= 0).all()):
            cls = full[:, torch.arange(full.shape[1], device=full.device), batch.cls_index]
        else:
            weights = batch.content_mask.to(full.dtype)
            cls = torch.einsum("lbpc,bp->lbc", full, weights) / weights.sum(1)[:, None]
        self._chunks.append(
            (batch.sample_ids.cpu(), batch.n_content.cpu(), tokens.cpu(), cls.cpu())
        )
        del self._batch_full, self._batch_cls

    def result(self) -> TokenScores:
        """Scores in the original sample order (the stream batches by length)."""
        self._check_begun()
        sample_ids = torch.cat([c[0] for c in self._chunks])
        lengths = torch.cat([c[1] for c in self._chunks])
        tokens = torch.cat([c[2] for c in self._chunks], dim=1)
        cls = torch.cat([c[3] for c in self._chunks], dim=1)
        if len(sample_ids) != self.n_samples_ or len(set(sample_ids.tolist())) != self.n_samples_:
            raise RuntimeError("ProjectionSink saw an incomplete stream")
        starts = torch.cumsum(lengths, 0) - lengths
        order = torch.argsort(sample_ids)
        lengths_sorted, starts_sorted = lengths[order], starts[order]
        offsets = torch.zeros(self.n_samples_ + 1, dtype=torch.long)
        offsets[1:] = torch.cumsum(lengths_sorted, 0)
        token_index = segment_positions(starts_sorted, lengths_sorted)
        return TokenScores(
            layers=list(self.layers_),
            concepts=list(self.bank.names),
            tokens=tokens[:, token_index],
            offsets=offsets,
            cls=cls[:, order],
            metadata={"kind": self.bank.kind, "cosine": self.bank.cosine},
        )
