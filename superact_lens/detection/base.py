"""Shared machinery of the detectors: input checks, prediction, summary, persistence.

Every detector reduces a sample's token scores to one aggregate per (layer,
column) — max for SuperActivator detectors, mean/last/random/max/CLS for the
baselines — and predicts concept ``c`` iff the aggregate of the chosen
``column_[c]`` at the chosen ``layer_[c]`` exceeds ``threshold_[c]``.

``match_columns=True`` is for unsupervised score columns (k-means clusters, SAE
units): columns and ground-truth concepts differ, so each concept may pick any
column (the one with the best cal F1), as in SPEC §3.3.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from jaxtyping import Bool, Float
from safetensors.torch import load_file, save_file
from torch import Tensor

from superact_lens.errors import InputError, InputTypeError
from superact_lens.scores import TokenScores

from .calibration import best_f1_threshold_sorted, chunk_rows, select_best

if TYPE_CHECKING:  # stats imports detection: only for annotations
    from typing import TypeAlias

    from typing_extensions import TypeIs

    from superact_lens.stats.summary import SplitSummary

    #: What detectors read a split as: its token scores, or its per-sample reductions.
    Scores: TypeAlias = TokenScores | SplitSummary

__all__ = ["BaseDetector", "load_detector"]

_REGISTRY: dict[str, type[BaseDetector]] = {}


def _as_bool_2d(x: Any, name: str, rows: int, cols: int | None) -> Tensor:
    if not isinstance(x, Tensor):
        try:
            x = torch.as_tensor(x)
        except Exception as exc:  # noqa: BLE001
            raise InputTypeError(
                f"{name} must be a boolean tensor, got {type(x).__name__}"
            ) from exc
    if x.ndim != 2:
        raise InputError(f"{name} must be 2-D, got shape {tuple(x.shape)}")
    if x.shape[0] != rows or (cols is not None and x.shape[1] != cols):
        want = f"[{rows}, {cols if cols is not None else 'C'}]"
        raise InputError(f"{name} must have shape {want}, got {tuple(x.shape)}")
    if x.dtype != torch.bool:
        if x.is_floating_point() and not torch.all((x == 0) | (x == 1)):
            raise InputError(f"{name} must be boolean (0/1), got non-binary values")
        x = x != 0
    return x


def as_token_masks(token_masks: Any, n_tokens: int, n_concepts: int) -> Tensor:
    """``[n_tokens, C]`` boolean masks; a list of per-sample ``[n_content, C]``
    masks (the data module's output) is concatenated first."""
    if isinstance(token_masks, (list, tuple)):
        parts = [torch.as_tensor(m).reshape(-1, n_concepts) for m in token_masks]
        token_masks = torch.cat(parts) if parts else torch.zeros(0, n_concepts, dtype=torch.bool)
    return _as_bool_2d(token_masks, "token_masks", n_tokens, n_concepts)


def is_summary(scores: Any) -> TypeIs[SplitSummary]:
    """Whether ``scores`` is a :class:`~superact_lens.stats.summary.SplitSummary`
    (per-sample reductions that detectors read instead of the token scores)."""
    from superact_lens.stats.summary import SplitSummary  # stats imports detection

    return isinstance(scores, SplitSummary)


def check_scores(scores: Any, name: str) -> None:
    """Detectors read a split as TokenScores or as its SplitSummary."""
    if not isinstance(scores, TokenScores) and not is_summary(scores):
        raise InputTypeError(
            f"{name} must be a TokenScores or a SplitSummary, got {type(scores).__name__}"
        )


class BaseDetector:
    """Common fitted state (all ``[C]``, one entry per ground-truth concept):

    - ``column_``: score column used (== concept index unless ``match_columns``).
    - ``layer_``: residual-stream layer (value from ``scores.layers``).
    - ``layer_index_``: position of that layer in the cal ``scores.layers``.
    - ``threshold_``: predict iff aggregate > threshold.
    - ``n_``: sparsity N in percent (NaN for baselines).
    - ``cal_f1_``: F1 of the chosen setting on cal.
    """

    method: ClassVar[str] = "base"
    _params: ClassVar[tuple[str, ...]] = ("match_columns",)
    _tensor_attrs: ClassVar[tuple[str, ...]] = ()

    match_columns: bool

    # ----------------------------------------------------------- subclass API
    def _aggregate(self, scores: Scores) -> Float[Tensor, "layers n cols"]:
        raise NotImplementedError

    # -------------------------------------------------------------- checking
    def _check_fit_inputs(self, cal: Any, labels: Any) -> Tensor:
        check_scores(cal, "cal")
        n_cols = cal.n_columns
        labels = _as_bool_2d(
            labels, "labels", cal.n_samples, None if self.match_columns else n_cols
        ).to(cal.device)
        if labels.shape[1] == 0:
            raise InputError("labels must have at least one concept column")
        return labels

    def _check_fitted(self) -> None:
        if not hasattr(self, "threshold_"):
            raise InputError(f"{type(self).__name__} is not fitted: call fit() first")

    def _candidates(self, c: int, n_cols: int) -> list[int]:
        return list(range(n_cols)) if self.match_columns else [c]

    # ------------------------------------------------------------ selection
    def _store_selection(
        self,
        cal: Scores,
        col_idx: Tensor,
        layer_idx: Tensor,
        threshold: Tensor,
        cal_f1: Tensor,
        n: Tensor,
    ) -> None:
        n_cols = cal.n_columns
        self.column_ = col_idx.long() if self.match_columns else torch.arange(len(col_idx))
        self.layer_index_ = layer_idx.long()
        self.layer_ = torch.tensor([cal.layers[int(i)] for i in layer_idx], dtype=torch.long)
        self.threshold_ = threshold.to(cal.dtype)
        self.cal_f1_ = cal_f1.to(torch.float64)
        self.n_ = n.to(torch.float64)
        self.layers_ = list(cal.layers)
        self.columns_ = list(cal.concepts)
        self.n_columns_ = n_cols

    def _store_best_per_layer(
        self,
        cal: Scores,
        thr: Float[Tensor, "C K L"],
        f1: Float[Tensor, "C K L"],
        n: Tensor,
    ) -> None:
        """Pick, per concept, the (column, layer) with the best cal F1 among
        per-layer best-F1 thresholds; keep the per-layer F1 and thresholds at
        that column (``cal_f1_layers_``, ``cal_threshold_layers_``, ``[C, L]``)
        for the F1-by-depth analysis."""
        col_i, layer_i, _ = select_best(f1.unsqueeze(-1))
        cs = torch.arange(f1.shape[0])
        self._store_selection(
            cal, col_i, layer_i, thr[cs, col_i, layer_i], f1[cs, col_i, layer_i], n
        )
        self.cal_f1_layers_ = f1[cs, col_i]
        self.cal_threshold_layers_ = thr[cs, col_i]

    def _rowwise_best(
        self, values: Float[Tensor, "K L m"], pos: Bool[Tensor, "m C"]
    ) -> tuple[Tensor, Tensor]:
        """Exact best-F1 threshold for every (concept, candidate column, layer).

        ``values[k, l]`` are the cal values of column ``k`` at layer ``l``
        (sample aggregates or tokens) and ``pos[:, c]`` their labels for
        concept ``c``. Returns ``(threshold, f1)``, each ``[C, K', L]``.
        """
        n_cols, n_layers, m = values.shape
        n_concepts = pos.shape[1]
        kk = n_cols if self.match_columns else 1
        thr = torch.empty(n_concepts, kk, n_layers, dtype=values.dtype)
        f1 = torch.empty(n_concepts, kk, n_layers, dtype=torch.float64)
        if m == 0:
            return thr.zero_(), f1.zero_()
        # sort every (column, layer) row once; concepts only permute their labels
        v_sorted, order = values.reshape(n_cols * n_layers, m).sort(
            dim=1, descending=True, stable=True
        )
        v_sorted = v_sorted.view(n_cols, n_layers, m)
        order = order.view(n_cols, n_layers, m)
        for sl in chunk_rows(n_concepts, kk * n_layers * m):
            cs = torch.arange(sl.start, sl.stop)
            if self.match_columns:
                v = v_sorted.unsqueeze(0).expand(len(cs), -1, -1, -1)
                o = order.unsqueeze(0).expand(len(cs), -1, -1, -1)
            else:
                v, o = v_sorted[cs].unsqueeze(1), order[cs].unsqueeze(1)
            p = pos[:, cs].T  # [cc, m]
            p_sorted = torch.gather(p.view(len(cs), 1, 1, m).expand(-1, kk, n_layers, -1), 3, o)
            t, f = best_f1_threshold_sorted(v.reshape(-1, m), p_sorted.reshape(-1, m))
            thr[sl] = t.view(len(cs), kk, n_layers)
            f1[sl] = f.view(len(cs), kk, n_layers)
        return thr, f1

    # ------------------------------------------------------------ prediction
    def _layer_positions(self, scores: Scores) -> Tensor:
        index = {layer: i for i, layer in enumerate(scores.layers)}
        missing = sorted({int(x) for x in self.layer_} - set(index))
        if missing:
            raise InputError(f"scores lacks layers {missing} chosen on cal (has {scores.layers})")
        return torch.tensor([index[int(x)] for x in self.layer_], dtype=torch.long)

    def _selected(self, scores: Scores) -> Float[Tensor, "n C"]:
        self._check_fitted()
        check_scores(scores, "scores")
        if scores.n_columns != self.n_columns_:
            raise InputError(
                f"scores has {scores.n_columns} columns, detector was fitted on {self.n_columns_}"
            )
        agg = self._aggregate(scores)  # [L, n, K]
        pos = self._layer_positions(scores).to(agg.device)
        return agg[pos, :, self.column_.to(agg.device)].T  # [n, C]

    def decision_function(self, scores: Scores) -> Float[Tensor, "n C"]:
        """``aggregate - threshold_`` per sample and concept: > 0 means present;
        ``-inf`` for samples without content tokens."""
        return self._selected(scores) - self.threshold_.to(scores.device)

    def predict(self, scores: Scores) -> Bool[Tensor, "n C"]:
        """Concept presence per sample: aggregate > threshold_."""
        return self._selected(scores) > self.threshold_.to(scores.device)

    def layer_thresholds(self) -> Float[Tensor, "C L"]:
        """Threshold tuned on cal for every layer of ``layers_`` (at each concept's
        chosen column): what the detector would use if that layer were forced.
        Used by the F1-by-depth analysis."""
        raise NotImplementedError

    def predict_layers(self, scores: Scores) -> Bool[Tensor, "L n C"]:
        """Predictions at every cal layer, each with its own cal-tuned threshold
        (:meth:`layer_thresholds`), at each concept's chosen column."""
        self._check_fitted()
        self._selected(scores)  # validates scores
        index = {layer: i for i, layer in enumerate(scores.layers)}
        missing = [x for x in self.layers_ if x not in index]
        if missing:
            raise InputError(f"scores lacks layers {missing} seen on cal (has {scores.layers})")
        agg = self._aggregate(scores)[[index[x] for x in self.layers_]]  # [L, n, K]
        sel = agg[:, :, self.column_.to(agg.device)]  # [L, n, C]
        thr = self.layer_thresholds().to(agg.device)  # [C, L]
        return sel > thr.T.unsqueeze(1)

    # ---------------------------------------------------------------- report
    def summary(self, concept_names: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """Per concept: layer, sparsity (N %, None for baselines), threshold,
        column (index and name) and cal F1 — ready for results.json."""
        self._check_fitted()
        n_c = len(self.threshold_)
        names = (
            concept_names
            if concept_names is not None
            else (self.columns_ if not self.match_columns else [str(i) for i in range(n_c)])
        )
        if len(names) != n_c:
            raise InputError(f"concept_names must list {n_c} names, got {len(names)}")
        out = {}
        for c, name in enumerate(names):
            n = float(self.n_[c])
            col = int(self.column_[c])
            out[name] = {
                "layer": int(self.layer_[c]),
                "sparsity": None if math.isnan(n) else n,
                "threshold": float(self.threshold_[c]),
                "column": col,
                "column_name": self.columns_[col],
                "cal_f1": float(self.cal_f1_[c]),
            }
        return out

    # ----------------------------------------------------------- persistence
    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        _REGISTRY[cls.__name__] = cls

    def save(self, path: str | Path) -> Path:
        """Write ``path/`` with ``config.json`` (parameters + small state) and
        ``state.safetensors`` (thresholds, F1 grids)."""
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {
            "column_": self.column_,
            "layer_index_": self.layer_index_,
            "layer_": self.layer_,
            "threshold_": self.threshold_,
            "cal_f1_": self.cal_f1_,
            "n_": self.n_,
        }
        for name in self._tensor_attrs:
            if getattr(self, name, None) is not None:
                tensors[name] = getattr(self, name)
        save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, path / "state.safetensors")
        config = {
            "class": type(self).__name__,
            "params": {p: getattr(self, p) for p in self._params},
            "layers_": self.layers_,
            "columns_": self.columns_,
            "n_columns_": self.n_columns_,
            "extra": self._extra_state(),
        }
        (path / "config.json").write_text(json.dumps(config, indent=2))
        return path

    def _extra_state(self) -> dict[str, Any]:
        return {}

    @classmethod
    def load(cls, path: str | Path) -> BaseDetector:
        """Read a detector written by :meth:`save` (any detector class)."""
        path = Path(path)
        if not (path / "config.json").is_file():
            raise InputError(f"path {str(path)!r} has no config.json written by save()")
        config = json.loads((path / "config.json").read_text())
        klass = _REGISTRY.get(config.get("class", ""))
        if klass is None:
            raise InputError(f"unknown detector class {config.get('class')!r} in {path}")
        if cls is not BaseDetector and not issubclass(klass, cls):
            raise InputTypeError(f"{path} holds a {klass.__name__}, not a {cls.__name__}")
        params = dict(config["params"])
        if "n_grid" in params:
            params["n_grid"] = tuple(params["n_grid"])
        det = klass(**params)
        for k, v in load_file(path / "state.safetensors").items():
            setattr(det, k, v)
        det.layers_ = config["layers_"]
        det.columns_ = config["columns_"]
        det.n_columns_ = config["n_columns_"]
        for k, v in config.get("extra", {}).items():
            setattr(det, k, v)
        return det


def load_detector(path: str | Path) -> BaseDetector:
    """Load any detector saved with ``save``."""
    return BaseDetector.load(path)
