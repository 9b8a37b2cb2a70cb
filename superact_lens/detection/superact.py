"""SuperActivator detectors (SPEC §4).

``SuperActivatorDetector``: per concept ``c``, layer ``l`` and sparsity ``N``,
``tau_c(N) = Quantile_{1-N/100}(D_in_cal(c, l))`` — the in-concept token scores
of cal (tokens inside ``c``'s mask in positive samples) — and ``c`` is predicted
in ``x`` iff ``max_t s_c(z_t(x)) > tau``. Layer and N are chosen per concept by
cal F1 (ties: smaller N, then earlier layer, then lower column index).

``FixedNDetector``: the weakly supervised variant (sample labels only). With N
fixed (percent of each sample's content tokens, at least one token), the top
tokens of every cal sample are pooled; per concept and layer one threshold is
learned that best separates (token-level F1) the top tokens of positive
samples from those of negative samples. A sample is positive iff one of its
tokens exceeds it (i.e. its max does). The layer is chosen by cal sample F1.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from superact_lens.errors import InputError
from superact_lens.scores import TokenScores

from .aggregators import aggregate
from .base import BaseDetector, as_token_masks, is_summary
from .calibration import (
    DEFAULT_N_GRID,
    chunk_rows,
    count_above,
    count_above_native,
    f1_from_counts,
    quantile_levels,
    select_best,
    superact_thresholds,
)
from .segments import segment_ids

if TYPE_CHECKING:
    from .base import Scores

__all__ = ["SuperActivatorDetector", "FixedNDetector", "superact_grid"]


def superact_grid(
    sample_max: Float[Tensor, "L n K"],
    labels: Bool[Tensor, "n C"],
    in_scores: Sequence[Float[Tensor, "L m K2"]],
    n_grid: Sequence[float],
    match_columns: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The whole calibration grid, vectorised over layers, columns and N.

    Args:
        sample_max: per-sample max token score of each column at each layer
            (``-inf`` for empty samples).
        labels: sample labels of the C ground-truth concepts.
        in_scores: per concept, its in-concept cal token scores for each
            candidate column: ``[L, m_c, 1]`` (its own column) or ``[L, m_c, K]``
            with ``match_columns``.
        n_grid: sparsity grid in percent.
    Returns:
        ``(tau, precision, recall, f1)``, each ``[C, K', L, N]`` (K' = 1 or K).
        Concepts without in-concept tokens get NaN thresholds and F1 0.
    """
    n_layers, n, n_cols = sample_max.shape
    n_c = labels.shape[1]
    tau = _thresholds_all(in_scores, n_grid)  # [C, K', L, N]
    tp, pp = count_above_native(sample_max, tau, labels, match_columns)
    n_pos = labels.sum(0).to(torch.float64).view(n_c, 1, 1, 1)
    precision, recall, f1 = f1_from_counts(tp, pp, n_pos)
    return tau, precision, recall, f1


def _thresholds_all(
    in_scores: Sequence[Tensor], n_grid: Sequence[float]
) -> Float[Tensor, "C K2 L N"]:
    """:func:`superact_thresholds` of every concept, on threads (the selection
    in ``numpy.partition`` releases the GIL)."""
    n_threads = min(torch.get_num_threads(), len(in_scores))
    if n_threads > 1 and sum(s.numel() for s in in_scores) > (1 << 20):
        with ThreadPoolExecutor(n_threads) as pool:
            parts = list(pool.map(lambda s: superact_thresholds(s, n_grid), in_scores))
    else:
        parts = [superact_thresholds(s, n_grid) for s in in_scores]
    return torch.stack(parts)


def in_concept_mask(
    cal: TokenScores, labels: Bool[Tensor, "n C"], token_masks: Bool[Tensor, "T C"]
) -> Bool[Tensor, "T C"]:
    """Tokens inside the concept's mask *in positive samples* (D_in, SPEC §2)."""
    return token_masks & labels[segment_ids(cal.offsets)]


class SuperActivatorDetector(BaseDetector):
    """Tuned SuperActivator detector: ``max_t s > tau_c(N)``, layer and N by cal F1.

    Fitted state beyond :class:`BaseDetector`: ``cal_f1_grid_`` ``[C, L, N]``
    and ``cal_threshold_grid_`` ``[C, L, N]`` at the chosen column,
    ``cal_f1_full_`` ``[C, K', L, N]`` over candidate columns, ``n_in_`` ``[C]``
    (in-concept cal tokens) and ``fallback_`` ``[C]``: concepts without any
    in-concept cal token cannot define ``tau``; they fall back to the MaxTok
    rule (exact best-F1 threshold on cal sample maxima, ``n_`` = NaN) and a
    warning names them.
    """

    method = "superact"
    _params = ("n_grid", "match_columns")
    _tensor_attrs = ("cal_f1_grid_", "cal_threshold_grid_", "cal_f1_full_", "n_in_", "fallback_")

    def __init__(self, n_grid: Sequence[float] = DEFAULT_N_GRID, match_columns: bool = False):
        self.n_grid = tuple(float(x) for x in n_grid)
        self.match_columns = bool(match_columns)

    def _aggregate(self, scores: Scores) -> Tensor:
        return aggregate(scores, "max")

    def _in_scores(
        self, cal: Scores, labels: Tensor, token_masks: Tensor | Sequence[Tensor] | None
    ) -> tuple[list[Tensor], Tensor]:
        """Per concept its in-concept cal token scores (``[L, m_c, K']``), and ``m_c``."""
        n_c = labels.shape[1]
        if is_summary(cal):
            if token_masks is not None:
                raise InputError(
                    "token_masks: a SplitSummary keeps its in-concept tokens; pass None"
                )
            if cal.match_columns != self.match_columns or cal.n_labels != n_c:  # type: ignore[attr-defined]
                raise InputError(
                    "cal: the summary was built with match_columns="
                    f"{cal.match_columns} for {cal.n_labels} concepts; the detector has "  # type: ignore[attr-defined]
                    f"match_columns={self.match_columns} and {n_c} label columns"
                )
            return [cal.in_scores(c) for c in range(n_c)], cal.n_in  # type: ignore[attr-defined]
        if token_masks is None:
            raise InputError("token_masks: required to calibrate on TokenScores")
        token_masks = as_token_masks(token_masks, cal.n_tokens, n_c)
        in_mask = in_concept_mask(cal, labels, token_masks.to(labels.device))
        in_scores = []
        rows = in_mask.T.contiguous()  # one contiguous row per concept, not a strided column
        for c in range(n_c):
            idx = torch.nonzero(rows[c]).squeeze(1)
            if self.match_columns:  # every column is a candidate for every concept
                in_scores.append(cal.tokens[:, idx])
            else:  # gather concept c's column first: copying all columns per concept is C x slower
                in_scores.append(cal.tokens[:, :, c][:, idx].unsqueeze(-1))
        return in_scores, in_mask.sum(0).long()

    def fit(
        self,
        cal: Scores,
        labels: Bool[Tensor, "n C"],
        token_masks: Bool[Tensor, "T C"] | Sequence[Tensor] | None = None,
    ) -> SuperActivatorDetector:
        """Calibrate on cal. ``token_masks``: ``[n_tokens, C]`` aligned with
        ``cal.tokens`` (or the list of per-sample ``[n_content, C]`` masks); None
        when ``cal`` is a :class:`~superact_lens.stats.summary.SplitSummary`,
        which holds the in-concept tokens itself."""
        quantile_levels(self.n_grid)  # validates the grid
        labels = self._check_fit_inputs(cal, labels)
        n_c = labels.shape[1]
        in_scores, n_in = self._in_scores(cal, labels, token_masks)
        sample_max = self._aggregate(cal)
        tau, _, _, f1 = superact_grid(
            sample_max, labels, in_scores, self.n_grid, self.match_columns
        )
        col_i, layer_i, n_i = select_best(f1)
        cs = torch.arange(n_c)
        threshold = tau[cs, col_i, layer_i, n_i]
        cal_f1 = f1[cs, col_i, layer_i, n_i]
        n_sel = torch.tensor(self.n_grid, dtype=torch.float64)[n_i]

        self.n_in_ = n_in
        self.fallback_ = self.n_in_ == 0
        if bool(self.fallback_.any()):
            kl = sample_max.permute(2, 0, 1)
            thr_b, f1_b = self._rowwise_best(kl, labels)  # [C, K', L]
            fc, fl, _ = select_best(f1_b.unsqueeze(-1))
            for c in torch.nonzero(self.fallback_).flatten().tolist():
                col_i[c], layer_i[c] = fc[c], fl[c]
                threshold[c] = thr_b[c, fc[c], fl[c]]
                cal_f1[c] = f1_b[c, fc[c], fl[c]]
                n_sel[c] = math.nan
            warnings.warn(
                f"concepts {torch.nonzero(self.fallback_).flatten().tolist()} have no "
                "in-concept cal tokens: SuperActivator threshold undefined, using the "
                "MaxTok best-F1 threshold instead (sparsity reported as None)",
                stacklevel=2,
            )
        cols = col_i if self.match_columns else torch.zeros_like(col_i)
        self._store_selection(cal, cols, layer_i, threshold, cal_f1, n_sel)
        self.cal_f1_full_ = f1
        self.cal_f1_grid_ = f1[cs, col_i]  # [C, L, N]
        self.cal_threshold_grid_ = tau[cs, col_i]
        return self

    def layer_thresholds(self) -> Float[Tensor, "C L"]:
        """Per layer, ``tau`` at the N with the best cal F1 at that layer (ties:
        smaller N). NaN for fallback concepts (no in-concept cal token)."""
        self._check_fitted()
        best_n = torch.nan_to_num(self.cal_f1_grid_, nan=-1.0).argmax(dim=2, keepdim=True)
        return self.cal_threshold_grid_.gather(2, best_n).squeeze(2)

    def threshold_grid(self) -> Float[Tensor, "C L N"]:
        """``tau`` for every layer and N at each concept's chosen column."""
        self._check_fitted()
        return self.cal_threshold_grid_


class FixedNDetector(BaseDetector):
    """Fixed-N SuperActivator detector from sample labels only (SPEC §4, paper App. N).

    ``n``: percent of each sample's content tokens treated as its top tokens
    (``ceil(n/100 * T)``, at least 1). Fitted ``n_`` holds ``n`` for every concept.
    """

    method = "superact_fixed"
    _params = ("n", "match_columns")
    _tensor_attrs = ("cal_f1_layers_", "cal_threshold_layers_")

    def __init__(self, n: float = 5.0, match_columns: bool = False):
        if not (0.0 < float(n) <= 100.0):
            raise InputError(f"n must be a percentage in (0, 100], got {n}")
        self.n = float(n)
        self.match_columns = bool(match_columns)

    def _aggregate(self, scores: Scores) -> Tensor:
        return aggregate(scores, "max")

    def top_tokens(self, scores: Scores) -> Float[Tensor, "L n k K"]:
        """Each sample's top ``ceil(n% * T)`` token scores per layer and column,
        descending, padded with ``-inf`` (k = the largest count)."""
        if is_summary(scores):
            return scores.top_tokens(self.n)  # type: ignore[attr-defined]
        lengths = scores.lengths
        # (T * n) / 100 in float64, so that e.g. 5 tokens at 20 % give exactly 1
        k_i = torch.ceil(lengths.to(torch.float64) * self.n / 100.0).long().clamp(min=1)
        k_i = torch.where(lengths > 0, k_i, torch.zeros_like(k_i))
        k_max = max(int(k_i.max()) if len(k_i) else 0, 1)
        n_layers, n_tok, n_cols = scores.tokens.shape
        n = scores.n_samples
        t_max = max(int(lengths.max()) if n else 0, k_max)
        seg = segment_ids(scores.offsets)
        slot = seg * t_max + (torch.arange(n_tok) - scores.offsets[:-1][seg])  # padded position
        parts = []
        for sl in chunk_rows(n_cols, n_layers * n * t_max):
            x = scores.tokens[:, :, sl].permute(2, 0, 1)  # [k, L, T]
            buf = torch.full((x.shape[0], n_layers, n * t_max), float("-inf"), dtype=x.dtype)
            buf[:, :, slot] = x
            top_k = buf.view(x.shape[0], n_layers, n, t_max).topk(k_max, dim=3).values
            parts.append(top_k.permute(1, 2, 3, 0))  # [L, n, k, cols]
        top = torch.cat(parts, dim=3) if parts else torch.empty(n_layers, n, k_max, 0)
        keep = torch.arange(k_max).view(1, k_max) < k_i.view(-1, 1)  # [n, k]
        return torch.where(keep.view(1, *keep.shape, 1), top, torch.full_like(top, float("-inf")))

    def fit(self, cal: Scores, labels: Bool[Tensor, "n C"]) -> FixedNDetector:
        labels = self._check_fit_inputs(cal, labels)
        n_c = labels.shape[1]
        top = self.top_tokens(cal)  # [L, n, k, K]
        n_layers, n, k, _ = top.shape
        values = top.permute(3, 0, 1, 2).reshape(top.shape[3], n_layers, n * k)
        # padding slots (-inf) are not tokens: they must not count as positives
        is_token = torch.isfinite(values[0, 0]) | (values[0, 0] > 0)  # [n*k], same for all
        token_pos = labels.repeat_interleave(k, dim=0) & is_token.unsqueeze(1)  # [n*k, C]
        thr, _ = self._rowwise_best(values, token_pos)  # [C, K', L]
        sample_max = top[:, :, 0, :].permute(2, 0, 1)  # [K, L, n]
        kk = thr.shape[1]
        f1 = torch.empty(n_c, kk, n_layers, dtype=torch.float64)
        for c in range(n_c):
            a = sample_max if self.match_columns else sample_max[c : c + 1]
            p = labels[:, c].view(1, n).expand(kk * n_layers, n)
            tp, pp = count_above(a.reshape(-1, n), thr[c].reshape(-1, 1), p)
            _, _, f = f1_from_counts(tp, pp, labels[:, c].sum().to(torch.float64))
            f1[c] = f.view(kk, n_layers)
        self._store_best_per_layer(cal, thr, f1, torch.full((n_c,), self.n, dtype=torch.float64))
        return self

    def layer_thresholds(self) -> Float[Tensor, "C L"]:
        """The token-level threshold learned at every layer (chosen column)."""
        self._check_fitted()
        return self.cal_threshold_layers_
