"""Executors: who computes the shards of an encoding or a teacher scoring.

The unit of work is the same for every engine: "compute shard *i* of a fixed shard
plan with this model-backed job". :func:`hardneg.store.sharded_compute` owns the plan,
the cache keys and the shard files; an executor only computes the shards it is handed
and yields them back, so a run directory started with one engine is finished by the
other and only the missing shards are computed.

- :class:`EmbeddedExecutor` (the default): in this process, one shard after another.
- :class:`~hardneg.execute.ray_engine.RayExecutor`: on a Ray cluster, one model per
  actor (``pip install 'hardneg[ray]'``).
"""

from __future__ import annotations

from hardneg.execute.base import EmbeddedExecutor, Executor, ShardJob, ShardWork, executor_from_options

__all__ = ["EmbeddedExecutor", "Executor", "ShardJob", "ShardWork", "executor_from_options"]
