"""What ``superact run`` writes for a person, from an in-memory Experiment.

``report.md`` (:mod:`.markdown`, the paper's Table 1 layout and the claim check)
and the PNG figures (:mod:`.figures`, drawn by :mod:`superact_lens.plots`).
``results.json`` is built by :mod:`superact_lens.results`.
"""

from superact_lens.report.figures import save_figures
from superact_lens.report.markdown import BASELINES, claim_check, render_report

__all__ = ["BASELINES", "claim_check", "render_report", "save_figures"]
