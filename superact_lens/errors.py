"""The error types for bad input.

Everything the package raises on purpose because an argument, file, dataset or
model name is wrong is an :class:`InputError`. It subclasses ``ValueError`` (and
the ``TypeError`` / ``FileNotFoundError`` variants subclass those too), so
``except ValueError`` keeps working. The CLI reports an ``InputError`` as one
line with exit status 2; any other exception is a bug in our code (or in a
library under it) and keeps its traceback (exit 1).
"""

from __future__ import annotations

__all__ = ["InputError", "InputFileNotFoundError", "InputTypeError"]


class InputError(ValueError):
    """A bad value from the caller: the message names the argument and what was expected."""


class InputTypeError(InputError, TypeError):
    """A bad type from the caller (also a ``TypeError``)."""


class InputFileNotFoundError(InputError, FileNotFoundError):
    """A file or folder the caller named does not exist (also a ``FileNotFoundError``)."""
