"""Training subcommands (train) are registered here."""

from __future__ import annotations


def register(sub) -> None:
    """Add the training subcommands to the ``hardneg`` parser."""
