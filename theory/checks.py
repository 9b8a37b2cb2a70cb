"""Registry of the statement checks of Appendix D and a one-call runner."""

from __future__ import annotations

from collections.abc import Callable

from theory.checks_noiseless import check_d1, check_d2, check_d3, check_d4, check_d5
from theory.checks_noisy import check_d6, check_d7, check_d8, check_d9, check_d10
from theory.configs import CheckResult, Config

__all__ = ["CHECKS", "run_checks"]

CHECKS: dict[str, Callable[[Config], CheckResult]] = {
    "D.1": check_d1,
    "D.2": check_d2,
    "D.3": check_d3,
    "D.4": check_d4,
    "D.5": check_d5,
    "D.6": check_d6,
    "D.7": check_d7,
    "D.8": check_d8,
    "D.9": check_d9,
    "D.10": check_d10,
}


def run_checks(cfg: Config, statements: list[str] | None = None) -> dict[str, CheckResult]:
    """Run the named checks (all by default) on ``cfg``; keys are ``"D.1"`` ... ``"D.10"``."""
    names = list(CHECKS) if statements is None else statements
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"statements: unknown {unknown}, expected names from {list(CHECKS)}")
    return {name: CHECKS[name](cfg) for name in names}
