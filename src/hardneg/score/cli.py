"""Teacher subcommands (train-reranker, rescore, report) are registered here."""

from __future__ import annotations


def register(sub) -> None:
    """Add the teacher subcommands to the ``hardneg`` parser."""
