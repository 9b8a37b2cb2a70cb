"""Localisation: where in an input a detected concept is (SPEC §6, issue 12).

Attribution methods explain ``f(x; target) = mean_t cos(z_hat_t(x), target)`` at
the detector's layer, for the global target (the concept vector) or the local
one (the mean of the text's own SuperActivator embeddings), and are judged
against the in-concept token mask (AUROC, best F1) and by insertion/deletion
curves.

* :mod:`.forward` — differentiable, truncated forward from token embeddings;
* :mod:`.targets` — targets and the objective;
* :mod:`.objective` — one text's ``f`` of embeddings or of keep-masks;
* :mod:`.methods` — the seven methods (Captum and by hand);
* :mod:`.metrics` — AUROC, best F1, insertion/deletion, bootstrap;
* :mod:`.api` — :func:`localize`, :class:`Localizer`;
* :mod:`.evaluate` — the benchmark over a dataset's positive test samples;
* :mod:`.report` — ``localize.md`` and heat maps;
* :mod:`.vision` — images: patch masks as ground truth, patch-grid heat maps
  (the attribution unit of an image is a content patch; :mod:`.forward` perturbs
  the patch embeddings).
"""

from .api import Localizer, localize
from .forward import TruncatedForward
from .methods import METHOD_LABELS, METHODS, AttributionConfig, attribute
from .metrics import auroc, best_f1, bootstrap_mean, curve_area, insertion_deletion
from .objective import TextObjective
from .targets import TARGETS, global_target, local_target, objective, superactivator_mask

__all__ = [
    "METHODS",
    "METHOD_LABELS",
    "TARGETS",
    "AttributionConfig",
    "Localizer",
    "TextObjective",
    "TruncatedForward",
    "attribute",
    "auroc",
    "best_f1",
    "bootstrap_mean",
    "curve_area",
    "global_target",
    "insertion_deletion",
    "local_target",
    "localize",
    "objective",
    "superactivator_mask",
]
