"""The one exception type hardneg raises for bad input."""

from __future__ import annotations


class HardnegError(ValueError):
    """Bad input or configuration.

    The message says what was expected, what came, and how to fix it
    (file, line, id where they are known).
    """
