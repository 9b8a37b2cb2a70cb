"""One text's objective ``f(x; target)`` as a function of its inputs.

:class:`TextObjective` ties a tokenised text to the truncated forward pass, the
detector's normaliser and a target, and exposes ``f`` two ways:

* ``f_embeds(E)``: of token embeddings ``[B, pos, d]`` (differentiable; what the
  gradient methods explain);
* ``f_keep(M)``: of a keep-mask ``[B, n_content]`` over the content tokens
  (1 = the token's own embedding, 0 = the baseline, fractions interpolate);
  what the perturbation methods and the insertion/deletion curves evaluate.
  Rows are run ``batch_size`` at a time, without gradients.

Text baseline: a removed token's embedding is replaced by the embedding of the
tokenizer's pad token (zeros if it has none). The token stays in place and
attended, so positions and length are unchanged; special tokens ([CLS], [SEP],
BOS) are never perturbed and never attributed.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from superact_lens.adapters.tokenize import TokenBatch

from .forward import TruncatedForward
from .targets import objective, token_cosines

__all__ = ["TextObjective"]


class TextObjective:
    """``f(x; target) = mean_t cos(z_hat_t(x), target)`` for one text ``x``.

    Args:
        forward: the truncated forward pass at the detector's layer.
        normalizer: the detector's train-split normaliser.
        text: the text.
        batch_size: rows per forward pass in :meth:`f_keep`.

    Set :attr:`target` (``[d_model]``, normalised space) before calling ``f``.
    """

    def __init__(
        self, forward: TruncatedForward, normalizer: Any, text: str, batch_size: int = 64
    ) -> None:
        self.forward = forward
        self.normalizer = normalizer
        self.batch_size = batch_size
        self.batch: TokenBatch = forward.lens.tokenize([text])
        self.content: Bool[Tensor, " pos"] = self.batch.content_mask[0]
        self.x: Float[Tensor, "1 pos d"] = forward.embed(self.batch)
        pad = getattr(forward.lens.tokenizer, "pad_token_id", None)
        self.baseline_token: Float[Tensor, " d"] = forward.token_embedding(pad)
        self.baseline = self.x.clone()
        self.baseline[:, self.content] = self.baseline_token
        self.target: Tensor | None = None

    @property
    def n_tokens(self) -> int:
        """Number of content tokens (the length of every attribution map)."""
        return int(self.content.sum())

    @property
    def token_ids(self) -> list[int]:
        return self.batch.input_ids[0][self.content].tolist()

    def resid(self, embeds: Float[Tensor, "B pos d"]) -> Float[Tensor, "B pos d_model"]:
        """Raw residual at the layer."""
        return self.forward(self.batch, embeds)

    def z_hat(self, embeds: Float[Tensor, "B pos d"]) -> Float[Tensor, "B pos d_model"]:
        """Normalised residual at the layer (the bank's space)."""
        return self.normalizer.apply(self.resid(embeds).float(), self.forward.layer)

    def _target(self) -> Tensor:
        if self.target is None:
            raise RuntimeError("TextObjective.target is not set")
        return self.target

    def f_embeds(self, embeds: Float[Tensor, "B pos d"]) -> Float[Tensor, " B"]:
        """``f`` of token embeddings (differentiable)."""
        return objective(self.z_hat(embeds), self.content, self._target())

    def token_scores(self) -> Float[Tensor, " n_content"]:
        """``cos(z_hat_t(x), target)`` of every content token of the unperturbed text."""
        with torch.no_grad():
            z = self.z_hat(self.x)[0, self.content]
        return token_cosines(z, self._target())

    def embeds_for(self, keep: Float[Tensor, "B n_content"]) -> Float[Tensor, "B pos d"]:
        """Token embeddings with content token ``t`` at ``keep_t * x_t + (1 - keep_t) * b``."""
        keep = keep.to(self.x)
        embeds = self.x.expand(keep.shape[0], -1, -1).clone()
        own, base = self.x[0, self.content], self.baseline_token
        embeds[:, self.content] = keep[..., None] * own + (1 - keep[..., None]) * base
        return embeds

    def f_keep(self, keep: Float[Tensor, "B n_content"]) -> Float[Tensor, " B"]:
        """``f`` of keep-masks, ``batch_size`` rows per forward pass (no gradient)."""
        keep = keep.reshape(-1, self.n_tokens)
        out = []
        with torch.no_grad():
            for start in range(0, keep.shape[0], self.batch_size):
                out.append(self.f_embeds(self.embeds_for(keep[start : start + self.batch_size])))
        return torch.cat(out) if out else torch.zeros(0)
