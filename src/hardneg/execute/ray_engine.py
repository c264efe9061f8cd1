"""The Ray engine: shards computed by Ray actors, each holding one copy of the model.

Every Ray call hardneg makes is in this module (Ray's API moves between versions).
Ray Core actors, not Ray Data: a shard is already the unit of work and of resume, and
an actor built from the job's small, picklable description loads the model once and
then computes shard after shard. The driver hands each actor a few shards at a time
(only their inputs travel, e.g. a shard's texts) and gets rows back; the caller saves
them, so workers need no access to the run directory. On a cluster of more than one
node, a model in a local folder (a local path, or the snapshot of a model being trained)
travels through Ray's object store too, once per job, and each actor unpacks its own
copy: the nodes need no shared storage.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from hardneg.errors import HardnegError

logger = logging.getLogger(__name__)

RAY_MISSING = "--executor ray needs Ray: pip install 'hardneg[ray]'"


LOOPBACK = "127.0.0.1"


def import_ray():
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise HardnegError(RAY_MISSING) from exc
    return ray


class ShardWorker:
    """What each Ray actor runs: a job's model, loaded on the first shard of that job, reused for the rest.

    The actor outlives one encoding pass: the next pass with the same job (the queries
    after the documents, the dev set after a refresh) finds the model loaded. It keeps
    the last few jobs only (a refresh brings new weights).
    """

    KEEP = 2

    def __init__(self) -> None:
        from hardneg.execute.model_files import remove_orphaned

        self.loaded: dict[str, Any] = {}
        self.unpacked: dict[str, str] = {}  # job -> the folder its shipped model was unpacked into
        remove_orphaned()  # what actors of a failed or abandoned run on this node left behind

    def run(self, job_key: str, job, number: int, payload: Any, shipped: list | None = None) -> tuple[int, np.ndarray]:
        """Shard ``number`` of ``job``; ``shipped``: ``[ObjectRef]`` of the job's model folder, packed (in a list,
        so that Ray hands over the reference and the blob is fetched once, when the model loads)."""
        if job_key not in self.loaded:
            while len(self.loaded) >= self.KEEP:
                self._forget(next(iter(self.loaded)))
            if shipped:
                from hardneg.execute.model_files import unpack_directory

                folder = unpack_directory(import_ray().get(shipped[0]))
                self.unpacked[job_key] = str(folder)
                job = job.loading_from(folder)
            self.loaded[job_key] = job.load()
        return number, self.loaded[job_key](payload)

    def _forget(self, job_key: str) -> None:
        self.loaded.pop(job_key)
        folder = self.unpacked.pop(job_key, None)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    def loads(self) -> list[str]:
        """The jobs this actor holds loaded (oldest first)."""
        return list(self.loaded)

    def clean(self) -> None:
        """Remove the shipped models' folders (before the actor is stopped)."""
        for job_key in list(self.loaded):
            self._forget(job_key)


class RayExecutor:
    """Computes shards on Ray actors (:class:`~hardneg.execute.Executor`).

    Args:
        address: a cluster to join (``auto``, ``host:6379``, ``ray://host:10001``); default:
            start a local cluster (stopped when this process exits).
        workers: actors, each holding one copy of the model.
        cpus_per_worker: CPUs Ray reserves per actor (fractions allowed; torch in the actor
            uses that many threads, at least one).
        gpus_per_worker: GPUs per actor (fractions share one GPU).
        in_flight: shards queued per actor, so one is ready when the last finishes.
        ship_models: send a job's local model folder to the actors through Ray's object store
            (each unpacks its own copy); default: when the cluster has more than one node, whose
            other machines may not see this one's disk.
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int = 2, cpus_per_worker: float = 1.0,
                 gpus_per_worker: float = 0.0, in_flight: int = 2, ship_models: bool | None = None) -> None:
        if workers < 1:
            raise HardnegError(f"--workers must be at least 1, got {workers}.")
        if not cpus_per_worker > 0:
            raise HardnegError(f"--cpus-per-worker must be above 0 (fractions such as 0.5 are fine), got {cpus_per_worker}.")
        if not gpus_per_worker >= 0:
            raise HardnegError(f"--gpus-per-worker must be at least 0, got {gpus_per_worker}.")
        import_ray()  # fail now, not after the first stage
        self.address, self.workers, self.in_flight = address, workers, max(1, in_flight)
        self.cpus_per_worker, self.gpus_per_worker = float(cpus_per_worker), float(gpus_per_worker)
        self.ship_models = ship_models
        self._joined: str | None = None  # the cluster this executor connected to
        self._started_cluster = False
        self._actors: list = []
        self._shipped: tuple[str, list] | None = None  # (job key, [ObjectRef]) of the last model folder sent

    def __repr__(self) -> str:
        return (f"RayExecutor(address={self.address!r}, workers={self.workers}, cpus_per_worker={self.cpus_per_worker:g}, "
                f"gpus_per_worker={self.gpus_per_worker:g})")

    def __getstate__(self) -> dict[str, Any]:
        # a copy pickled into another process (an asynchronous refresh) joins the same cluster
        state = dict(self.__dict__, _joined=None, _started_cluster=False, _actors=[], _shipped=None)
        state["address"] = self._joined or self.address
        return state

    def run(self, job, shards: Iterable[tuple[int, Any]]) -> Iterator[tuple[int, np.ndarray]]:
        """Compute ``shards`` with ``job.portable()`` on this executor's actors; yield each as it finishes."""
        import hashlib

        ray = import_ray()
        portable = job.portable()
        job_key = hashlib.sha256(ray.cloudpickle.dumps(portable)).hexdigest()[:16]  # what the actors hold loaded
        self.connect()
        job_ref = ray.put(portable)
        shipped = self._shipped_model(ray, portable, job_key)
        actors = self._workers(ray)
        finished = False
        try:
            yield from self._dispatch(ray, actors, iter(shards), job_key, job_ref, shipped)
            finished = True
        finally:
            if not finished:  # a failed or abandoned run may leave work queued on the actors: start afresh next time
                self._stop_workers(ray, clean=False)  # cleaning would wait behind that work

    def _shipped_model(self, ray, job, job_key: str) -> list | None:
        """``[ObjectRef]`` of the job's local model folder, packed (once per job: documents and queries share
        it), when the actors should load a copy of it."""
        from hardneg.execute.model_files import pack_directory

        folder = job.model_dir() if hasattr(job, "model_dir") else None
        ship = self.ship_models if self.ship_models is not None else len([n for n in ray.nodes() if n["Alive"]]) > 1
        if folder is None or not ship:
            return None
        if self._shipped is None or self._shipped[0] != job_key:
            logger.info("sending the model in %s to the Ray workers (their nodes may not see this disk)", folder)
            self._shipped = (job_key, [ray.put(pack_directory(folder))])
        return self._shipped[1]

    def _workers(self, ray) -> list:
        if not self._actors:
            actor = ray.remote(ShardWorker).options(num_cpus=self.cpus_per_worker, num_gpus=self.gpus_per_worker,
                                                    max_restarts=0)
            self._actors = [actor.remote() for _ in range(self.workers)]
        return self._actors

    def _stop_workers(self, ray, clean: bool = True) -> None:
        if clean:  # remove the shipped models' folders; a dead actor has nothing left to clean
            with contextlib.suppress(Exception):
                ray.get([handle.clean.remote() for handle in self._actors], timeout=60)
        for handle in self._actors:
            ray.kill(handle)
        self._actors = []

    def _dispatch(self, ray, actors: list, shards: Iterator[tuple[int, Any]], job_key: str,
                  job_ref, shipped: list | None) -> Iterator[tuple[int, np.ndarray]]:
        pending: dict[Any, tuple[Any, int]] = {}

        def submit(handle) -> None:
            shard = next(shards, None)
            if shard is not None:
                pending[handle.run.remote(job_key, job_ref, *shard, shipped)] = (handle, shard[0])

        for handle in actors:
            for _ in range(self.in_flight):
                submit(handle)
        while pending:
            (ready,), _ = ray.wait(list(pending), num_returns=1)
            handle, number = pending.pop(ready)
            try:
                done, rows = ray.get(ready)
            except ray.exceptions.RayActorError as exc:
                raise HardnegError(
                    f"A Ray worker died while computing shard {number} ({type(exc).__name__}). The finished shards "
                    "are saved in the run directory: run the same command again to compute only the rest."
                ) from exc
            except ray.exceptions.RayTaskError as exc:
                raise exc.as_instanceof_cause() from None
            submit(handle)
            yield done, rows

    def connect(self) -> None:
        """Join ``address`` (or start a local cluster) unless this process already is connected.

        A local cluster listens on loopback only (127.0.0.1): Ray's default, the host's own
        address, would open its ports to the network for a cluster no other machine joins.
        """
        ray = import_ray()
        if not ray.is_initialized():
            local = {"_node_ip_address": LOOPBACK} if self.address is None else {}
            try:
                ray.init(address=self.address, include_dashboard=False, logging_level=logging.WARNING,
                         log_to_driver=False, **local)
            except ConnectionError as exc:
                raise HardnegError(f"Could not reach the Ray cluster at {self.address}: {exc}. Check --ray-address "
                                   "(or drop it to start a local cluster).") from exc
            self._started_cluster = self.address is None
        try:
            self._joined = ray.get_runtime_context().gcs_address
        except Exception:  # a Ray client connection has no GCS address of its own
            self._joined = self.address
        self._check_fits(ray)

    def _check_fits(self, ray) -> None:
        """Refuse a local cluster too small for the actors (they would wait forever)."""
        total = ray.cluster_resources()
        for resource, each in (("CPU", self.cpus_per_worker), ("GPU", self.gpus_per_worker)):
            need, have = self.workers * each, float(total.get(resource, 0.0))
            if need > have + 1e-9:
                message = (f"{self.workers} Ray workers x {each:g} {resource} need {need:g} {resource}s; the cluster "
                           f"has {have:g}. Lower --workers or --{resource.lower()}s-per-worker.")
                if self._started_cluster:
                    raise HardnegError(message)
                logger.warning("%s (waiting for the cluster to grow)", message)

    def close(self) -> None:
        """Stop the actors, and the local cluster this executor started (a joined cluster keeps running)."""
        if self._actors:
            self._stop_workers(import_ray())
        self._shipped = None
        if self._started_cluster:
            import_ray().shutdown()
            self._started_cluster = False
