"""Scalar attention dynamics of the SuperActivator mechanism (paper Appendix D).

Stands on its own: importing it needs only torch. ``simulate`` runs the scalar
layer map; ``check_d1`` ... ``check_d10`` turn every statement of Appendix D into
a measured residual or slack; ``theory.population`` shows the mechanism behind
Figures 3-4; ``theory.heads`` measures real heads, ``theory.measured`` (lazy model
imports; ``python -m theory.measured --model gemma-270m``) any model ``theory.specs``
knows (BERT, Llama, Gemma 3).
"""

from theory.checks import CHECKS, run_checks
from theory.checks_noiseless import check_d1, check_d2, check_d3, check_d4, check_d5
from theory.checks_noisy import (
    check_d6,
    check_d7,
    check_d8,
    check_d9,
    check_d10,
    sharp_remainder_bound,
)
from theory.configs import CheckResult, Config, random_configs
from theory.quantities import (
    attention,
    attention_moments,
    g,
    mean_variance,
    noisy_remainder_bound,
    off_pole_attention,
    off_pole_bound,
    pole_margins,
)
from theory.simulate import layer_update, sample_noise, simulate

__all__ = [
    "CHECKS",
    "CheckResult",
    "Config",
    "attention",
    "attention_moments",
    "check_d1",
    "check_d2",
    "check_d3",
    "check_d4",
    "check_d5",
    "check_d6",
    "check_d7",
    "check_d8",
    "check_d9",
    "check_d10",
    "g",
    "layer_update",
    "mean_variance",
    "noisy_remainder_bound",
    "off_pole_attention",
    "off_pole_bound",
    "pole_margins",
    "random_configs",
    "run_checks",
    "sample_noise",
    "sharp_remainder_bound",
    "simulate",
]
