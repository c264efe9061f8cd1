"""A model folder packed into one blob and unpacked elsewhere: what Ray workers on other machines load."""

from __future__ import annotations

import io
import shutil
import tarfile

import numpy as np
import pytest

from hardneg.errors import HardnegError
from hardneg.execute.model_files import pack_directory, unpack_directory


def test_a_folder_round_trips_with_its_links_followed(tmp_path):
    model = tmp_path / "model"
    (model / "1_Pooling").mkdir(parents=True)
    (tmp_path / "blob").write_bytes(b"\x00weights\xff" * 1000)
    (model / "model.safetensors").symlink_to(tmp_path / "blob")  # as in a Hugging Face cache snapshot
    (model / "config.json").write_text('{"a": 1}')
    (model / "1_Pooling" / "config.json").write_text("{}")
    copy = unpack_directory(pack_directory(model), tmp_path / "worker")
    assert copy.parent == tmp_path / "worker" and copy.name.startswith("hardneg-model-")
    assert sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file()) == \
        ["1_Pooling/config.json", "config.json", "model.safetensors"]
    assert not (copy / "model.safetensors").is_symlink()
    assert (copy / "model.safetensors").read_bytes() == (tmp_path / "blob").read_bytes()
    assert pack_directory(model) == pack_directory(model)  # the same blob every time (sorted, no clock)


def test_not_a_folder_and_an_escaping_name_are_refused(tmp_path):
    with pytest.raises(HardnegError, match="not a directory"):
        pack_directory(tmp_path / "missing")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(tarfile.OutsideDestinationError):
        unpack_directory(buffer.getvalue(), tmp_path)
    assert not (tmp_path / "outside.txt").exists()


def test_an_encode_job_loads_the_same_model_from_a_copy(tmp_path, tiny_model):
    from hardneg.retrieve.dense import EncodeJob
    from hardneg.retrieve.encoder import SentenceTransformerEncoder

    job = EncodeJob(SentenceTransformerEncoder(tiny_model, max_length=16, precision="fp32"))
    assert job.model_dir() == job.portable().model_dir() and str(job.model_dir()) == tiny_model
    moved = job.loading_from(shutil.copytree(tiny_model, tmp_path / "copy"))
    assert moved.model_dir() == tmp_path / "copy" and moved.encoder.key() == job.encoder.key()
    texts = ["apt package manager", "a json parser"]
    np.testing.assert_array_equal(moved.load()(("documents", texts)), job.load()(("documents", texts)))
    assert EncodeJob(SentenceTransformerEncoder("some-org/some-hub-model")).model_dir() is None  # hub names: not shipped


def test_a_score_job_names_its_cross_encoder_folder(tiny_models):
    from hardneg.teacher.rescore import ScoreJob
    from hardneg.teacher.scorer import CrossEncoderScorer

    job = ScoreJob(CrossEncoderScorer(str(tiny_models[1])))
    assert job.model_dir() == tiny_models[1]
    assert job.loading_from("/elsewhere").scorer._model_arg == "/elsewhere"
    assert job.loading_from("/elsewhere").scorer.key() == job.scorer.key()


def test_folders_of_a_gone_process_on_this_host_are_removed_and_no_others(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    from hardneg.execute.model_files import remove_orphaned

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname()
    dead = tmp_path / f"hardneg-model-{host}-{int(gone.stdout)}.ab12cd"  # its worker was killed
    mine = tmp_path / f"hardneg-model-{host}-{os.getpid()}.ef34gh"
    elsewhere = tmp_path / f"hardneg-model-another.host-{int(gone.stdout)}.ij56kl"
    for folder in (dead, mine, elsewhere):
        (folder / "sub").mkdir(parents=True)
    assert remove_orphaned(tmp_path) == [dead]
    assert not dead.exists() and mine.exists() and elsewhere.exists()


def test_an_unpacked_folder_names_its_process(tmp_path):
    import os
    import socket

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "a.txt").write_text("a")
    folder = unpack_directory(pack_directory(tmp_path / "model"), tmp_path / "unpacked")
    assert folder.name.startswith(f"hardneg-model-{socket.gethostname()}-{os.getpid()}.")
