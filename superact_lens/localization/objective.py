"""One text's objective ``f(x; target)`` as a function of its inputs.

:class:`TextObjective` ties a tokenised text to the truncated forward pass, the
detector's normaliser and a target, and exposes ``f`` two ways:

* ``f_embeds(E)``: of token embeddings ``[B, pos, d]`` (differentiable; what the
  gradient methods explain);
* ``f_keep(M)``: of a keep-mask ``[B, n_content]`` over the content tokens
  (1 = the token's own embedding, 0 = the baseline, fractions interpolate);
  what the perturbation methods and the insertion/deletion curves evaluate.
  Rows are run ``batch_size`` at a time, without gradients.

The residual of a masked input does not depend on the target, so ``f_keep``
keeps the content-token ``z_hat`` of every keep-mask it has run (per text) and
only runs masks it has not seen: the two targets share the forward passes of
occlusion, RISE, LIME and KernelSHAP (they draw the same masks under the same
seed) and of every curve point two maps have in common. :meth:`prefetch` runs a
list of masks in full batches ahead of their use. ``reuse=False`` runs every
row (the reference path the tests compare against).

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
        reuse: keep the residuals of the masks already run (for any target).

    Set :attr:`target` (``[d_model]``, normalised space) before calling ``f``.
    """

    def __init__(
        self,
        forward: TruncatedForward,
        normalizer: Any,
        text: str,
        batch_size: int = 64,
        reuse: bool = True,
    ) -> None:
        self.forward = forward
        self.normalizer = normalizer
        self.batch_size = batch_size
        self.reuse = reuse
        self._seen: dict[bytes, Tensor] = {}  # keep-mask -> its content z_hat [n, d_model]
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

    def _content_z(self, keep: Float[Tensor, "B n_content"]) -> Float[Tensor, "B n d_model"]:
        """Content-token ``z_hat`` of keep-masks, ``batch_size`` rows per pass (no gradient)."""
        out = []
        with torch.no_grad():
            for start in range(0, keep.shape[0], self.batch_size):
                z = self.z_hat(self.embeds_for(keep[start : start + self.batch_size]))
                out.append(z[:, self.content])
        return torch.cat(out)

    def prefetch(self, keep: Float[Tensor, "B n_content"]) -> None:
        """Run the masks not seen yet (deduplicated, in full batches) and keep their ``z_hat``."""
        if not self.reuse:
            return
        keep = keep.reshape(-1, self.n_tokens).float().cpu()
        new: dict[bytes, Tensor] = {}
        for row in keep:
            key = row.numpy().tobytes()
            if key not in self._seen and key not in new:
                new[key] = row
        if new:
            z = self._content_z(torch.stack(list(new.values())))
            self._seen.update(zip(new, z, strict=True))

    def f_keep(self, keep: Float[Tensor, "B n_content"]) -> Float[Tensor, " B"]:
        """``f`` of keep-masks (no gradient); with ``reuse``, each distinct mask runs once."""
        keep = keep.reshape(-1, self.n_tokens)
        if keep.shape[0] == 0:
            return torch.zeros(0)
        if not self.reuse:
            return token_cosines(self._content_z(keep), self._target()).mean(dim=1)
        self.prefetch(keep)
        z = torch.stack([self._seen[row.numpy().tobytes()] for row in keep.float().cpu()])
        return token_cosines(z, self._target()).mean(dim=1)
