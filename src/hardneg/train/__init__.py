"""Training bi-encoders with mined negatives, ANCE-style refresh.

``train`` (:mod:`hardneg.train.trainer`) fine-tunes a sentence-transformers model on
a :class:`~hardneg.train.pool.NegativePool` built from a mining selection, an
exported file, or in-batch negatives only; :class:`RefreshConfig` re-mines the
negatives with the model being trained every N steps. Importing this package loads
no torch.
"""

from __future__ import annotations

from hardneg.train.files import pool_from_file
from hardneg.train.losses import LOSSES, LossConfig
from hardneg.train.pool import NegativePool, pool_from_selection, pool_in_batch_only
from hardneg.train.refresh import RefreshConfig
from hardneg.train.trainer import TrainConfig, TrainResult, train

__all__ = [
    "LOSSES",
    "LossConfig",
    "NegativePool",
    "RefreshConfig",
    "TrainConfig",
    "TrainResult",
    "pool_from_file",
    "pool_from_selection",
    "pool_in_batch_only",
    "train",
]
