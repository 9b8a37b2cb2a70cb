"""The vectorised calibration equals a plain-loop reference (SPEC §4)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from superact_lens.detection import (
    AggregatorDetector,
    FixedNDetector,
    SuperActivatorDetector,
    best_f1_threshold,
    count_above,
)

from .synth import make_data

N_GRID = (2, 5, 10, 20, 50, 90, 95)


def _f1(tp: int, fp: int, fn: int) -> float:
    return 0.0 if tp == 0 else 2 * tp / (tp + fp + tp + fn)


def _sample_max(scores, layer: int, col: int) -> list[float]:
    out = []
    for i in range(scores.n_samples):
        toks = [float(x) for x in scores.sample(i)[layer, :, col]]
        out.append(max(toks) if toks else -math.inf)
    return out


def _counts(agg: list[float], labels: list[bool], thr: float) -> tuple[int, int, int]:
    tp = sum(1 for a, y in zip(agg, labels, strict=True) if a > thr and y)
    fp = sum(1 for a, y in zip(agg, labels, strict=True) if a > thr and not y)
    fn = sum(1 for a, y in zip(agg, labels, strict=True) if not a > thr and y)
    return tp, fp, fn


def loop_superact(scores, labels, masks, n_grid, match_columns):
    """Plain python loops: tau by torch.quantile on each 1-D D_in, F1 per cell,
    argmax with ties to smaller N, then earlier layer, then lower column."""
    n_layers, _, n_cols = scores.tokens.shape
    seg = [i for i in range(scores.n_samples) for _ in range(int(scores.lengths[i]))]
    result = []
    for c in range(labels.shape[1]):
        y = [bool(v) for v in labels[:, c]]
        cols = range(n_cols) if match_columns else [c]
        grid = {}
        for k in cols:
            for layer in range(n_layers):
                d_in = [
                    float(scores.tokens[layer, t, k])
                    for t in range(scores.n_tokens)
                    if masks[t, c] and y[seg[t]]
                ]
                agg = _sample_max(scores, layer, k)
                for j, n in enumerate(n_grid):
                    if not d_in:
                        grid[(k, layer, j)] = (0.0, math.nan)
                        continue
                    tau = float(torch.quantile(torch.tensor(d_in), 1 - n / 100))
                    grid[(k, layer, j)] = (_f1(*_counts(agg, y, tau)), tau)
        best = None
        for j in range(len(n_grid)):
            for layer in range(n_layers):
                for k in cols:
                    f, tau = grid[(k, layer, j)]
                    if best is None or f > best[0]:
                        best = (f, tau, k, layer, j)
        result.append((best, grid))
    return result


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("match_columns", [False, True])
def test_superact_matches_loop_reference(seed, match_columns):
    n_cols = 4 if match_columns else None
    scores, labels, masks = make_data(n=25, n_layers=3, n_concepts=3, n_cols=n_cols, seed=seed)
    det = SuperActivatorDetector(n_grid=N_GRID, match_columns=match_columns)
    det.fit(scores, labels, masks)
    ref = loop_superact(scores, labels, masks, N_GRID, match_columns)
    for c, ((f, tau, k, layer, j), grid) in enumerate(ref):
        if det.fallback_[c]:
            continue
        assert float(det.cal_f1_[c]) == f
        assert float(det.threshold_[c]) == tau
        assert int(det.column_[c]) == k
        assert int(det.layer_index_[c]) == layer
        assert float(det.n_[c]) == N_GRID[j]
        cols = list(range(scores.tokens.shape[2])) if match_columns else [c]
        for (kk, ll, jj), (fg, _tg) in grid.items():
            assert float(det.cal_f1_full_[c, cols.index(kk), ll, jj]) == fg
    # the predictions on cal reproduce the cal F1 of the chosen setting
    pred = det.predict(scores)
    for c in range(labels.shape[1]):
        tp = int((pred[:, c] & labels[:, c]).sum())
        fp = int((pred[:, c] & ~labels[:, c]).sum())
        fn = int((~pred[:, c] & labels[:, c]).sum())
        assert _f1(tp, fp, fn) == pytest.approx(float(det.cal_f1_[c]), abs=0)


def loop_best_threshold(values: list[float], y: list[bool]) -> tuple[float, float]:
    """Every distinct value (descending) as threshold, then 'below everything'."""
    finite = sorted({v for v in values if v > -math.inf}, reverse=True)
    best_f, best_t = _f1(*_counts(values, y, math.inf)), math.inf
    for t in finite[1:] + [-math.inf]:
        f = _f1(*_counts(values, y, t))
        if f > best_f:
            best_f, best_t = f, t
    return best_f, best_t


@pytest.mark.parametrize("seed", range(5))
def test_best_f1_threshold_matches_loop(seed):
    g = torch.Generator().manual_seed(seed)
    values = torch.round(torch.randn(6, 40, generator=g) * 2) / 2
    values[0, :5] = -math.inf
    values[1] = -math.inf
    pos = torch.rand(6, 40, generator=g) < 0.3
    pos[2] = False
    thr, f1 = best_f1_threshold(values, pos)
    for r in range(6):
        v, y = values[r].tolist(), pos[r].tolist()
        f_ref, _ = loop_best_threshold(v, y)
        assert float(f1[r]) == f_ref
        # the returned threshold achieves that F1 with the strict rule
        assert _f1(*_counts(v, y, float(thr[r]))) == f_ref
        assert math.isfinite(float(thr[r]))


def test_count_above_matches_loop():
    g = torch.Generator().manual_seed(3)
    agg = torch.round(torch.randn(5, 50, generator=g))
    agg[0, :3] = -math.inf
    tau = torch.round(torch.randn(5, 4, generator=g))
    tau[1, 2] = float("nan")
    pos = torch.rand(5, 50, generator=g) < 0.5
    tp, pp = count_above(agg, tau, pos)
    for r in range(5):
        for j in range(4):
            t = float(tau[r, j])
            above = [a > t if not math.isnan(t) else False for a in agg[r].tolist()]
            assert tp[r, j] == sum(a and p for a, p in zip(above, pos[r].tolist(), strict=True))
            assert pp[r, j] == sum(above)


@pytest.mark.parametrize("method", ["cls", "mean", "last", "random", "max"])
@pytest.mark.parametrize("match_columns", [False, True])
def test_aggregator_matches_loop(method, match_columns):
    scores, labels, _ = make_data(n=30, n_cols=4 if match_columns else None, seed=5)
    det = AggregatorDetector(method, seed=1, match_columns=match_columns).fit(scores, labels)
    agg = det._aggregate(scores)
    for c in range(labels.shape[1]):
        y = labels[:, c].tolist()
        cols = range(scores.tokens.shape[2]) if match_columns else [c]
        best = max(
            loop_best_threshold(agg[layer, :, k].tolist(), y)[0]
            for layer in range(len(scores.layers))
            for k in cols
        )
        assert float(det.cal_f1_[c]) == best
    pred = det.predict(scores)
    for c in range(labels.shape[1]):
        tp = int((pred[:, c] & labels[:, c]).sum())
        fp = int((pred[:, c] & ~labels[:, c]).sum())
        fn = int((~pred[:, c] & labels[:, c]).sum())
        assert _f1(tp, fp, fn) == float(det.cal_f1_[c])


def test_fixed_n_matches_loop():
    scores, labels, _ = make_data(n=30, seed=7, max_len=12)
    n_pct = 20.0
    det = FixedNDetector(n=n_pct).fit(scores, labels)
    for c in range(labels.shape[1]):
        y = labels[:, c].tolist()
        best = None
        for layer in range(len(scores.layers)):
            vals, ys = [], []
            for i in range(scores.n_samples):
                toks = sorted(scores.sample(i)[layer, :, c].tolist(), reverse=True)
                k = max(1, math.ceil(len(toks) * n_pct / 100)) if toks else 0
                vals += toks[:k]
                ys += [y[i]] * k
            _, thr = loop_best_threshold(vals, ys)
            agg = _sample_max(scores, layer, c)
            if thr == math.inf:  # predict nothing
                f = 0.0
            else:
                t = float(det.cal_f1_layers_[c, layer])  # compare per-layer F1
                f = _f1(*_counts(agg, y, thr))
                assert t == f
            if best is None or f > best[0]:
                best = (f, layer)
        assert float(det.cal_f1_[c]) == best[0]
        assert int(det.layer_index_[c]) == best[1]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([-math.inf, -1.0, 0.0, 0.5, 1.0, 2.0]), st.booleans()),
        min_size=1,
        max_size=12,
    )
)
def test_best_f1_threshold_property(pairs):
    """Any values (ties, -inf for empty samples) and labels: exact best F1, and
    the returned finite threshold reproduces it with the strict rule."""
    v = [a for a, _ in pairs]
    y = [b for _, b in pairs]
    thr, f1 = best_f1_threshold(torch.tensor([v]), torch.tensor([y]))
    f_ref, _ = loop_best_threshold(v, y)
    assert float(f1[0]) == f_ref
    assert math.isfinite(float(thr[0]))
    assert _f1(*_counts(v, y, float(thr[0]))) == f_ref
