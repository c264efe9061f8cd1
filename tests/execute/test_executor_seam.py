"""The executor seam: shard plan and files do not depend on who computes the shards."""

from __future__ import annotations

import numpy as np
import pytest

from hardneg.errors import HardnegError
from hardneg.execute import EmbeddedExecutor, ShardWork, executor_from_options
from hardneg.store import RunDir, sharded_compute


class SquareJob:
    """rows -> [row, row**2] as float32; counts the shards it computed."""

    def __init__(self) -> None:
        self.shards = 0

    def load(self):
        def compute(idx):
            self.shards += 1
            return np.stack([idx, idx**2], axis=1).astype(np.float32)

        return compute

    def portable(self):
        return self


class BackwardsExecutor:
    """Computes the shards it is handed last-first: another engine whose order differs from the embedded one's."""

    name = "backwards"

    def __init__(self) -> None:
        self.handed: list[int] = []

    def run(self, job, shards):
        shards = list(shards)
        self.handed = [number for number, _ in shards]
        compute = job.load()
        for number, payload in reversed(shards):
            yield number, compute(payload)


def work(job):
    return ShardWork(job, lambda idx: np.asarray(idx, np.int64))


ORDER = np.random.default_rng(0).permutation(23)


def run(executor, parts, final, job=None, size=5):
    return sharded_compute(work(job or SquareJob()), ORDER, shard_size=size, parts_dir=parts, final=final,
                           show_progress=False, executor=executor)


def test_rows_come_back_in_input_order_whichever_engine_computes_them(tmp_path):
    expected = np.stack([np.arange(23), np.arange(23) ** 2], axis=1).astype(np.float32)
    for executor in (None, EmbeddedExecutor(), BackwardsExecutor()):
        np.testing.assert_array_equal(run(executor, None, None), expected)


def test_shard_files_are_byte_identical_across_engines(tmp_path):
    for name, executor in (("a", EmbeddedExecutor()), ("b", BackwardsExecutor())):
        job = SquareJob()
        # a job that fails after three shards leaves three shard files behind
        failing = job.load()

        class Failing(SquareJob):
            def load(self):
                def compute(idx):
                    if job.shards == 3:
                        raise RuntimeError("killed")
                    return failing(idx)

                return compute

        with pytest.raises(RuntimeError):
            run(executor, tmp_path / name / "parts", None, Failing())
    a, b = sorted((tmp_path / "a" / "parts").glob("*.npy")), sorted((tmp_path / "b" / "parts").glob("*.npy"))
    assert len(a) == len(b) == 3
    # the embedded engine saved shards 0-2; the backwards one 4, 3, 2: the same plan, so shard 2 is the same file
    assert [p.name for p in a] == ["00000.npy", "00001.npy", "00002.npy"]
    assert [p.name for p in b] == ["00002.npy", "00003.npy", "00004.npy"]
    assert (tmp_path / "a/parts/00002.npy").read_bytes() == (tmp_path / "b/parts/00002.npy").read_bytes()


@pytest.mark.parametrize("first,second", [(EmbeddedExecutor, BackwardsExecutor), (BackwardsExecutor, EmbeddedExecutor)])
def test_a_run_started_on_one_engine_finishes_on_the_other_computing_only_missing_shards(tmp_path, first, second):
    run(EmbeddedExecutor(), None, tmp_path / "one-shot.npy")
    parts, final = tmp_path / "parts", tmp_path / "out.npy"
    starter = first()
    job = SquareJob()
    with pytest.raises(RuntimeError):

        class StopsAfterTwo(SquareJob):
            def load(self):
                inner = job.load()

                def compute(idx):
                    if job.shards == 2:
                        raise RuntimeError("stopped")
                    return inner(idx)

                return compute

        run(starter, parts, final, StopsAfterTwo())
    done = {p.name for p in parts.glob("*.npy")}
    assert len(done) == 2
    finisher, rest = second(), SquareJob()
    run(finisher, parts, final, rest)
    assert rest.shards == 3  # 5 shards of the 23 rows, 2 already saved
    if isinstance(finisher, BackwardsExecutor):
        assert sorted(finisher.handed) == sorted(set(range(5)) - {int(n[:5]) for n in done})
    assert final.read_bytes() == (tmp_path / "one-shot.npy").read_bytes()
    assert not parts.exists()


def test_with_a_final_file_the_rows_are_written_into_it_and_come_back_memory_mapped(tmp_path):
    """The result is assembled in the final file through a memory map (RAM holds a shard, not N rows):
    the file is what np.save of the in-memory result writes, byte for byte, with its integrity record."""
    from hardneg.store import integrity_problem

    in_memory = run(EmbeddedExecutor(), None, None)
    final = tmp_path / "out.npy"
    mapped = run(EmbeddedExecutor(), tmp_path / "parts", final)
    assert isinstance(mapped, np.memmap) and not mapped.flags.writeable
    np.testing.assert_array_equal(mapped, in_memory)
    np.save(tmp_path / "reference.npy", in_memory)
    assert final.read_bytes() == (tmp_path / "reference.npy").read_bytes()
    assert integrity_problem(final) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npy", "out.npy.sum", "reference.npy"]


def test_a_failed_run_leaves_no_final_file_only_its_shards(tmp_path):
    job = SquareJob()

    class StopsAfterOne(SquareJob):
        def load(self):
            inner = job.load()
            return lambda idx: inner(idx) if job.shards < 1 else (_ for _ in ()).throw(RuntimeError("stopped"))

    with pytest.raises(RuntimeError, match="stopped"):
        run(EmbeddedExecutor(), tmp_path / "parts", tmp_path / "out.npy", StopsAfterOne())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parts"]  # no final file, no temporary file
    assert [p.name for p in (tmp_path / "parts").glob("*.npy")] == ["00000.npy"]


def test_nothing_to_compute_still_writes_an_empty_final_file(tmp_path):
    final = tmp_path / "out.npy"
    empty = sharded_compute(work(SquareJob()), np.empty(0, np.int64), shard_size=5, parts_dir=None, final=final,
                            show_progress=False)
    assert empty.shape == (0,) and np.load(final).shape == (0,)


def test_a_shard_of_the_wrong_length_is_refused():
    class Short(SquareJob):
        def load(self):
            return lambda idx: np.zeros((len(idx) - 1, 2), np.float32)

    with pytest.raises(HardnegError, match="shard 0 came back with 4 rows for 5 inputs"):
        run(EmbeddedExecutor(), None, None, Short())


def test_embedded_takes_no_ray_options():
    assert isinstance(executor_from_options("embedded"), EmbeddedExecutor)
    with pytest.raises(HardnegError, match="--workers, --cpus-per-worker only apply to --executor ray"):
        executor_from_options("embedded", workers=2, cpus_per_worker=0.5)
    with pytest.raises(HardnegError, match="executor must be one of embedded, ray"):
        executor_from_options("spark")


def test_dense_retrieval_encodes_through_the_retrievers_executor(tmp_path, tiny_train, fake_encoder):
    from hardneg.retrieve.dense import DenseRetriever

    backwards = BackwardsExecutor()
    one = DenseRetriever(fake_encoder, shard_size=7).retrieve(tiny_train, 10, run_dir=RunDir(tmp_path / "a"),
                                                              show_progress=False)
    two = DenseRetriever(fake_encoder, shard_size=7, executor=backwards).retrieve(
        tiny_train, 10, run_dir=RunDir(tmp_path / "b"), show_progress=False)
    assert backwards.handed  # the retriever's executor computed the shards
    assert (one.doc_ids == two.doc_ids).all() and (one.scores == two.scores).all()
    for a in sorted((tmp_path / "a" / "embeddings").glob("*.npy")):
        assert a.read_bytes() == (tmp_path / "b" / "embeddings" / a.name).read_bytes()


def test_teacher_scores_go_through_the_miners_executor(tmp_path, tiny_train):
    from conftest import OverlapTeacher

    from hardneg.mine import Miner
    from hardneg.retrieve.bm25 import BM25Retriever

    backwards = BackwardsExecutor()
    a = Miner(BM25Retriever(), run_dir=tmp_path / "a", teacher=OverlapTeacher(), show_progress=False).mine(tiny_train)
    b = Miner(BM25Retriever(), run_dir=tmp_path / "b", teacher=OverlapTeacher(), show_progress=False,
              executor=backwards).mine(tiny_train)
    assert backwards.handed
    np.testing.assert_array_equal(a.candidates.teacher_scores, b.candidates.teacher_scores)


@pytest.mark.parametrize("address,expected", [(None, {"_node_ip_address": "127.0.0.1"}), ("auto", {})])
def test_a_local_ray_cluster_listens_on_loopback_only(monkeypatch, address, expected):
    """Starting a cluster (no address) binds it to 127.0.0.1; joining one passes no address of our own. Checked
    on a stand-in for the ray module: no Ray process starts here."""
    from types import SimpleNamespace

    from hardneg.execute import ray_engine

    calls = []
    fake = SimpleNamespace(
        is_initialized=lambda: False,
        init=lambda **kwargs: calls.append(kwargs),
        get_runtime_context=lambda: SimpleNamespace(gcs_address="127.0.0.1:6379"),
        cluster_resources=lambda: {"CPU": 2.0},
    )
    monkeypatch.setattr(ray_engine, "import_ray", lambda: fake)
    ray_engine.RayExecutor(address=address, workers=2, cpus_per_worker=0.5).connect()
    (kwargs,) = calls
    assert kwargs["address"] == address
    assert {k: v for k, v in kwargs.items() if k == "_node_ip_address"} == expected
