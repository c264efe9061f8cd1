"""A big corpus kept on disk: saved once under the run directory, memory-mapped, the same results."""

from __future__ import annotations

from hardneg.cli import main
from hardneg.data import load_beir, on_disk
from hardneg.data.on_disk import corpus_on_disk


def test_saved_once_reused_and_same_fingerprint(tmp_path, tiny_dir):
    data = load_beir(tiny_dir)
    expected = data.fingerprint()
    mapped = corpus_on_disk(data, tmp_path)
    folder = tmp_path / data.corpus.digest[:24]
    assert mapped.corpus.texts.path == folder / "texts.arrow"
    assert mapped.corpus == data.corpus and mapped.queries == data.queries
    assert "_fingerprint" in mapped.__dict__ and mapped.fingerprint() == expected
    stamp = (folder / "texts.arrow").stat().st_mtime_ns
    again = corpus_on_disk(load_beir(tiny_dir), tmp_path)  # a fresh load of the same corpus: reused, not rewritten
    assert (folder / "texts.arrow").stat().st_mtime_ns == stamp and again.corpus == data.corpus
    assert again.fingerprint() == expected  # computed afresh over the mapped columns: the same digest
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # no temporary folder left behind


def test_a_damaged_copy_is_saved_again(tmp_path, tiny_dir):
    data = load_beir(tiny_dir)
    folder = tmp_path / data.corpus.digest[:24]
    corpus_on_disk(data, tmp_path)
    (folder / "texts.arrow").write_bytes(b"truncated")
    assert corpus_on_disk(data, tmp_path).corpus == data.corpus
    assert (folder / "texts.arrow").stat().st_size > 100


def test_mine_keeps_a_big_corpus_on_disk_with_the_same_output(tmp_path, tiny_dir, monkeypatch):
    args = ["-q", "mine", str(tiny_dir), "--sampling", "random", "--seed", "3"]
    assert main([*args, "--output", str(tmp_path / "a.jsonl"), "--run-dir", str(tmp_path / "ra")]) == 0
    assert not (tmp_path / "ra" / "corpus").exists()  # small: stays in memory
    monkeypatch.setattr(on_disk, "ON_DISK_FROM_BYTES", 0)
    assert main([*args, "--output", str(tmp_path / "b.jsonl"), "--run-dir", str(tmp_path / "rb")]) == 0
    assert len(list((tmp_path / "rb" / "corpus").glob("*/texts.arrow"))) == 1
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
