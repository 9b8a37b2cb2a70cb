"""The fast path of the benchmark equals the reference path: each distinct masked input
of a text runs once (both targets, every curve) and the maps, curves and areas are
those of running every row (``AttributionConfig(reuse=False)``)."""

from __future__ import annotations

import math

import pytest
import torch

from superact_lens.localization import METHODS, AttributionConfig, Localizer, attribute
from superact_lens.localization.evaluate import LocalizationCase, evaluate_cases, select_cases

TEXTS = ["the cat sat on the mat", "a small house near the river with a dog in the garden"]


def _run(lens, detector, cases, reuse: bool) -> list[LocalizationCase]:
    config = AttributionConfig(n_steps=4, n_samples=12, batch_size=5, reuse=reuse)
    fresh = [LocalizationCase(c.row, c.concept, c.text, c.mask) for c in cases]
    return evaluate_cases(
        Localizer(lens, detector, config), fresh, METHODS, keep_maps=len(cases), progress=False
    )


def _assert_same(fast: list[LocalizationCase], slow: list[LocalizationCase]) -> None:
    for a, b in zip(fast, slow, strict=True):
        assert [(r["target"], r["method"]) for r in a.records] == [
            (r["target"], r["method"]) for r in b.records
        ]
        for ra, rb in zip(a.records, b.records, strict=True):
            for key, value in ra.items():
                if isinstance(value, float) and not math.isnan(value):
                    assert value == pytest.approx(rb[key], rel=1e-5, abs=1e-6), (ra, key)
        for target, maps in a.maps.items():
            for method, scores in maps.items():
                torch.testing.assert_close(
                    torch.tensor(scores), torch.tensor(b.maps[target][method]), atol=1e-5, rtol=1e-4
                )


class _RowCounter:
    """Counts the input rows reaching the model's token embedding."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.rows = 0
        self.handle = module.register_forward_hook(self._count)

    def _count(self, module, args, output) -> None:
        self.rows += int(args[0].shape[0])


def test_planted_records_equal_the_reference_path_with_fewer_forward_rows(planted):
    lens, detector = planted
    masks = [torch.tensor([False, True, False, False, False, False])]
    masks.append(torch.zeros(12, dtype=torch.bool))
    masks[1][8] = True
    cases = [
        LocalizationCase(i, 0, t, m) for i, (t, m) in enumerate(zip(TEXTS, masks, strict=True))
    ]
    counter = _RowCounter(lens.adapter.model.embed)
    try:
        fast = _run(lens, detector, cases, reuse=True)
        fast_rows, counter.rows = counter.rows, 0
        slow = _run(lens, detector, cases, reuse=False)
        slow_rows = counter.rows
    finally:
        counter.handle.remove()
    _assert_same(fast, slow)
    assert len(fast[0].records) == 2 * len(METHODS)
    assert fast_rows < 0.8 * slow_rows, (fast_rows, slow_rows)


def test_second_target_reuses_every_perturbation_forward(planted):
    lens, detector = planted
    localizer = Localizer(lens, detector, AttributionConfig(n_samples=16))
    problem, sa = localizer.problem(TEXTS[1], "animal")
    counter = _RowCounter(lens.adapter.model.embed)
    try:
        by_target = {}
        for target in ("global", "local"):
            localizer.set_target(problem, "animal", target, sa)
            counter.rows = 0
            by_target[target] = {
                m: attribute(problem, m, localizer.config)
                for m in ("occlusion", "rise", "lime", "kernelshap")
            }
            by_target[target]["rows"] = counter.rows
    finally:
        counter.handle.remove()
    assert by_target["global"]["rows"] > 0 and by_target["local"]["rows"] == 0
    # and the local maps are those of a text run from scratch with the local target
    reference, _ = localizer.problem(TEXTS[1], "animal")
    reference.reuse = False
    localizer.set_target(reference, "animal", "local", sa)
    for method in ("occlusion", "rise", "lime", "kernelshap"):
        torch.testing.assert_close(
            by_target["local"][method],
            attribute(reference, method, localizer.config),
            atol=1e-5,
            rtol=1e-4,
        )


def test_tiny_bert_benchmark_is_unchanged_by_reuse(tmp_path, minilm_folder):
    """A real transformer (attention, LayerNorm) on the synthetic dataset: batch
    composition differs between the two paths, the records agree to float tolerance."""
    from superact_lens.data import make_synthetic_dataset, token_masks
    from superact_lens.lens import ConceptLens
    from tests.detection.tiny_detector import build_detector, tiny_bert_folder

    model = str(tiny_bert_folder(tmp_path / "model", minilm_folder))
    lens = ConceptLens(model)
    detector = build_detector(lens, model)
    data = make_synthetic_dataset(n=40, seed=3)
    rows = list(range(len(data.texts)))
    masks = token_masks(data, lens.content_offsets(list(data.texts)))
    cases = select_cases(
        lens, detector, data.texts, data.labels, masks, rows, max_per_concept=1, progress=False
    )
    assert len(cases) >= 2
    cases = cases[:3]
    _assert_same(_run(lens, detector, cases, reuse=True), _run(lens, detector, cases, reuse=False))
