"""Regenerate tests/theory/fixtures/trajectories.json (only after an intended change)."""

import json
from pathlib import Path

import torch

import theory

CASES = {
    "noiseless": {"beta": 0.7, "kappa": 1.3, "delta": 0.0, "eta": 0.0, "seed": None},
    "uniform": {"beta": 0.7, "kappa": 1.3, "delta": 0.2, "eta": 0.1, "seed": 7},
    "adversarial": {
        "beta": 0.7,
        "kappa": 1.3,
        "delta": 0.2,
        "eta": 0.1,
        "seed": None,
        "noise": "adversarial",
    },
}


def initial() -> torch.Tensor:
    gen = torch.Generator().manual_seed(1234)
    z = torch.randn(3, 6, dtype=torch.float64, generator=gen)
    return torch.exp(0.5 * z) - 1.0


def compute() -> dict:
    return {k: theory.simulate(initial(), 5, **v).tolist() for k, v in CASES.items()}


if __name__ == "__main__":
    path = Path(__file__).parent / "fixtures" / "trajectories.json"
    path.write_text(json.dumps(compute(), indent=1))
