"""kill -9 at a seeded random point, run the same command again: the output equals an uninterrupted run's.

The killed run is a subprocess (``driver.py``) that sends itself SIGKILL at the N-th
call of a function (N drawn with a fixed seed); the reference and the rerun go through
``hardneg.cli.main`` in this process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hardneg.cli import main

from .conftest import SHARD, in_process, mine_args, stray_temp_files

DRIVER = Path(__file__).parent / "driver.py"
SEED = 11


def driven_run(spec: dict, args: list[str]) -> subprocess.CompletedProcess:
    """``hardneg ARGS`` in a fresh process (one torch thread), with the fault of ``spec`` if it names one."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, str(DRIVER), json.dumps({"torch_threads": 1, **spec}), "--", "-q", *args],
                          capture_output=True, text=True, env=env, timeout=300)


def killed_run(spec: dict, args: list[str]) -> None:
    proc = driven_run(spec, args)
    assert proc.returncode == -signal.SIGKILL, f"the run was not killed (exit {proc.returncode}): {proc.stderr[-2000:]}"


def clean_run(args: list[str]) -> None:
    proc = driven_run({}, args)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"


@pytest.mark.parametrize("point", ["during-encoding", "after-candidates", "during-export"])
def test_mine_killed_then_rerun_gives_the_uninterrupted_output(point, base_workspace, mine_reference, tmp_path):
    reference, encodes = mine_reference
    rng = np.random.default_rng([SEED, ["during-encoding", "after-candidates", "during-export"].index(point)])
    if point == "during-encoding":
        kill = {"target": "hardneg.retrieve.encoder:SentenceTransformerEncoder._encode",
                "call": int(rng.integers(1, encodes + 1))}
    elif point == "after-candidates":
        kill = {"target": "hardneg.mine:Miner.select", "call": 1}
    else:
        rows = len(reference.splitlines())
        kill = {"target": "hardneg.export:json.dumps", "call": int(rng.integers(1, rows + 1)),
                "armed_by": "hardneg.export:write_rows"}
    run, out = tmp_path / "run", tmp_path / "out.jsonl"
    killed_run({"shard_size": SHARD, "kill": kill}, mine_args(base_workspace, run, out))
    assert not out.exists()  # never a partial file under the final name
    in_process(mine_args(base_workspace, run, out))
    assert out.read_bytes() == reference
    assert not stray_temp_files(tmp_path)  # what the killed writer left was cleared by the rerun


def test_rescore_killed_then_rerun_gives_the_uninterrupted_scores(workspace, tmp_path):
    run = tmp_path / "run"
    assert main(["-q", "mine", str(workspace.data), "--max-queries", "30", "--depth", "10", "--run-dir", str(run),
                 "-o", str(tmp_path / "bm25.jsonl")]) == 0
    reference_run = tmp_path / "reference-run"
    shutil.copytree(run, reference_run)
    args = ["rescore", "--cross-encoder", str(workspace.cross_encoder), "--shard-size", "40",
            "--teacher-precision", "fp32"]
    shards = in_process([*args, str(reference_run)], count="hardneg.teacher.scorer:CrossEncoderScorer.score_pairs")
    assert shards > 3
    call = int(np.random.default_rng([SEED, 3]).integers(1, shards + 1))
    killed_run({"kill": {"target": "hardneg.teacher.scorer:CrossEncoderScorer.score_pairs", "call": call}},
               [*args, str(run)])
    in_process([*args, str(run)])
    (reference,) = (reference_run / "candidates").glob("*.parquet")
    assert (run / "candidates" / reference.name).read_bytes() == reference.read_bytes()
    assert not stray_temp_files(run)


def test_train_killed_around_a_checkpoint_then_resumed_gives_the_uninterrupted_model(workspace, tmp_path):
    def args(out: Path) -> list[str]:
        return ["train", str(workspace.data), "--model", str(workspace.model), "--precision", "fp32",
                "--max-queries", "48", "--train-batch-size", "8", "--max-steps", "5", "--save-steps", "2",
                "--retriever", "bm25", "--num-negatives", "1", "--dev-split", "none", "--output", str(out)]

    # every run in a fresh process, as a user's: the reference mines (BM25) before training, the resumed run
    # reuses the saved candidates and does not, so anything the search leaves behind in the process (it once
    # changed torch's thread count: test_bm25_search.py) shows up here as different weights
    clean_run(args(tmp_path / "reference"))
    rng = np.random.default_rng([SEED, 4])
    if rng.random() < 0.5:  # in the middle of writing the second checkpoint (weights written, optimizer not)
        kill = {"target": "transformers.trainer:Trainer._save_optimizer_and_scheduler", "call": 2}
    else:  # during a training step after the first checkpoint
        kill = {"target": "transformers.trainer:Trainer.training_step", "call": int(rng.integers(3, 6))}
    out = tmp_path / "out"
    killed_run({"kill": kill}, args(out))
    clean_run([*args(out), "--resume"])
    final = (out / "final" / "model.safetensors").read_bytes()
    assert final == (tmp_path / "reference" / "final" / "model.safetensors").read_bytes()
