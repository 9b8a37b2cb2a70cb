"""The tests' small random decoders live in the package (benchmarks and notebooks use them too)."""

from superact_lens.testing import *  # noqa: F403
from superact_lens.testing import CORPUS, VOCAB  # noqa: F401
