"""F1 by depth for every method (SPEC §5, paper App. K): at each layer, the
threshold tuned on cal *for that layer* (each detector's
``layer_thresholds()``), evaluated on another split (test)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from jaxtyping import Bool
from torch import Tensor

from superact_lens.detection import detection_metrics
from superact_lens.errors import InputError
from superact_lens.scores import TokenScores

__all__ = ["f1_by_depth"]


def f1_by_depth(
    detectors: Mapping[str, Any], scores: TokenScores, labels: Bool[Tensor, "n C"]
) -> dict[str, Any]:
    """``{"layers", "methods", "per_concept": {method: [C, L]}, "weighted":
    {method: [L]}, "matrix": [methods, L]}`` — F1 per layer with per-layer cal
    thresholds; ``weighted`` uses test concept frequency."""
    if not detectors:
        raise InputError("detectors must map at least one method name to a fitted detector")
    layers = None
    per, weighted = {}, {}
    for name, det in detectors.items():
        pred = det.predict_layers(scores)  # [L, n, C]
        if layers is None:
            layers = list(det.layers_)
        elif list(det.layers_) != layers:
            raise InputError(f"detector {name!r} was fitted on layers {det.layers_}, not {layers}")
        rows = [detection_metrics(pred[i], labels) for i in range(pred.shape[0])]
        per[name] = np.stack([r["f1"] for r in rows], axis=1)
        weighted[name] = np.array([r["weighted_f1"] for r in rows])
    return {
        "layers": layers,
        "methods": list(detectors),
        "per_concept": per,
        "weighted": weighted,
        "matrix": np.stack([weighted[m] for m in detectors]),
    }
