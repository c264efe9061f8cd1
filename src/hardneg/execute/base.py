"""The executor seam: a picklable job, its shards' inputs, and the engine that computes them."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from hardneg.choices import EXECUTORS, check_choice
from hardneg.errors import HardnegError

logger = logging.getLogger(__name__)

class ShardJob(Protocol):
    """A model-backed computation, described small enough to pickle into another process.

    ``load()`` builds the model (once per process that runs the job) and returns the
    function a shard's inputs go through; ``portable()`` is a copy that holds the model
    by name or path, never a loaded model object, for engines that run it elsewhere.

    Optionally, ``model_dir()`` names the local folder the model loads from (None: a hub
    name) and ``loading_from(folder)`` is the same job loading from a copy of that folder:
    an engine whose workers run on other machines ships the folder to them
    (:mod:`hardneg.execute.model_files`).
    """

    def load(self) -> Callable[[Any], np.ndarray]: ...

    def portable(self) -> ShardJob: ...


@dataclass(frozen=True)
class ShardWork:
    """What :func:`hardneg.store.sharded_compute` runs: a job, and how to cut its inputs for a shard.

    Attributes:
        job: the :class:`ShardJob` every shard goes through.
        inputs: maps a shard's ``int64`` row indices to the job's input (e.g. the texts of
            those rows); runs on the caller's side, so only a shard's inputs travel.
    """

    job: ShardJob
    inputs: Callable[[np.ndarray], Any]


class Executor(Protocol):
    """Computes shards: ``run`` yields ``(shard number, rows)`` as each finishes, in any order."""

    name: str

    def run(self, job: ShardJob, shards: Iterable[tuple[int, Any]]) -> Iterator[tuple[int, np.ndarray]]: ...


class EmbeddedExecutor:
    """In this process, one shard after another: the job's model is the caller's own (no copy, no reload)."""

    name = "embedded"

    def run(self, job: ShardJob, shards: Iterable[tuple[int, Any]]) -> Iterator[tuple[int, np.ndarray]]:
        compute = job.load()
        for number, payload in shards:
            yield number, compute(payload)

    def __repr__(self) -> str:
        return "EmbeddedExecutor()"


def executor_from_options(
    kind: str = "embedded",
    *,
    address: str | None = None,
    workers: int | None = None,
    cpus_per_worker: float | None = None,
    gpus_per_worker: float | None = None,
) -> Executor:
    """The executor the ``--executor`` flags describe.

    Args:
        kind: ``embedded`` (this process) or ``ray``.
        address: a Ray cluster to join (``ray://host:10001``, ``host:6379`` or ``auto``);
            default: start a local one.
        workers: Ray actors, each holding one copy of the model.
        cpus_per_worker: CPUs reserved per actor (fractions allowed).
        gpus_per_worker: GPUs per actor (fractions share a GPU).
    """
    check_choice("executor", kind, EXECUTORS)
    ray_options = {"address": address, "workers": workers, "cpus_per_worker": cpus_per_worker,
                   "gpus_per_worker": gpus_per_worker}
    if kind == "embedded":
        given = [name for name, value in ray_options.items() if value is not None]
        if given:
            flags = ", ".join("--" + ("ray-address" if n == "address" else n.replace("_", "-")) for n in given)
            raise HardnegError(f"{flags} only apply to --executor ray; add --executor ray or drop them.")
        return EmbeddedExecutor()
    from hardneg.execute.ray_engine import RayExecutor

    return RayExecutor(**{name: value for name, value in ray_options.items() if value is not None})
