"""The asynchronous refresh's worker process and the record of a refresh it is running
(:meth:`hardneg.train.refresh.Refresher.start_async`)."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hardneg.atomic import atomic_path
from hardneg.train.refresh_scope import Scope


@dataclass
class PendingRefresh:
    step: int
    folder: Path
    process: Any
    started: float
    seconds_snapshot: float
    scope: Scope | None  # what the refresh mines; None: everything


def mine_snapshot(miner, data, dev, result_path: Path, threads: int, full: bool) -> None:
    """Worker process: mine (and evaluate) with a weight snapshot; pickle ``(MineResult, dev metrics)``.
    Unless ``full``, ``data`` is cut to a refresh scope and its report (of a sub-corpus) is not saved."""
    import torch

    torch.set_num_threads(threads)
    result = miner.mine(data, save_report=full)
    metrics = dev() if dev is not None else None
    with atomic_path(result_path) as tmp, open(tmp, "wb") as fh:
        pickle.dump((result, metrics), fh)
