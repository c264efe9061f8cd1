"""End to end: the `hardneg` command on the bundled sample."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from hardneg.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "hardneg.cli", *args], capture_output=True, text=True, env=env, timeout=600
    )


def test_help_lists_every_mining_flag():
    out = run_cli("mine", "--help")
    assert out.returncode == 0
    for flag in ("--split", "--retriever", "--model", "--num-negatives", "--range-min", "--range-max",
                 "--relative-margin", "--absolute-margin", "--max-score", "--sampling", "--seed",
                 "--format", "--output", "--run-dir", "examples:"):
        assert flag in out.stdout, flag


def test_bm25_mining_end_to_end(tmp_path, tiny_dir):
    out_file = tmp_path / "train.jsonl"
    proc = run_cli("mine", str(tiny_dir), "--split", "train", "--retriever", "bm25", "--num-negatives", "3",
                   "--range-min", "1", "--format", "ids", "--output", str(out_file), "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert rows and all(len(r["negative_ids"]) == 3 for r in rows)
    assert all(not set(r["negative_ids"]) & set(r["positive_ids"]) for r in rows)
    assert "rank_window" in proc.stdout and "queries kept" in proc.stdout
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["method"] == "bm25" and report["output"] == str(out_file)


def test_dense_rerun_with_new_selection_reuses_candidates(tmp_path, tiny_dir, minilm_path):
    common = ["mine", str(tiny_dir), "--retriever", "dense", "--model", minilm_path, "--format", "flag",
              "--run-dir", str(tmp_path / "run")]
    t0 = time.perf_counter()
    first = run_cli(*common, "--num-negatives", "3", "--output", str(tmp_path / "a.jsonl"))
    cold = time.perf_counter() - t0
    assert first.returncode == 0, first.stderr
    second = run_cli(*common, "--num-negatives", "2", "--relative-margin", "0.05", "--output", str(tmp_path / "b.jsonl"))
    assert second.returncode == 0, second.stderr
    assert "reused saved candidates" in second.stdout + second.stderr
    assert "Encoding" not in second.stderr  # nothing was encoded again
    rows = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    # TopK-PercPos held in the output: every negative below 95 % of its positive
    for r in rows:
        ref = min(r["pos_scores"])
        assert all(s <= ref - abs(ref) * 0.05 + 1e-6 for s in r["neg_scores"])
    assert cold > 0


def test_same_seed_same_bytes(tmp_path, tiny_dir):
    outs = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.parquet"
        assert main(["-q", "mine", str(tiny_dir), "--sampling", "random", "--seed", "3", "--format", "triplet",
                     "--output", str(path), "--run-dir", str(tmp_path / f"run-{name}")]) == 0
        outs.append(path.read_bytes())
    assert outs[0] == outs[1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["mine", "nope/missing", "--output", "x.jsonl"], "nope/missing"),
        (["mine", "{tiny}", "--retriever", "dense", "--output", "x.jsonl"], "--model"),
        (["mine", "{tiny}", "--split", "validation", "--output", "x.jsonl"], "validation"),
        (["mine", "{tiny}", "--range-min", "5", "--range-max", "6", "--num-negatives", "3", "--output", "x.jsonl"],
         "rank window"),
        (["mine", "{tiny}", "--output", "x.csv"], ".jsonl"),
        (["mine", "{tiny}", "--pq-m", "0", "--output", "x.jsonl"], "--pq-m must be at least 1"),
        (["mine", "{tiny}", "--nprobe", "0", "--output", "x.jsonl"], "--nprobe must be at least 1"),
    ],
)
def test_bad_input_gives_a_one_line_error(tmp_path, tiny_dir, capsys, args, message):
    args = [a.replace("{tiny}", str(tiny_dir)) for a in args]
    args = [str(tmp_path / a) if a.startswith("x.") else a for a in args]
    assert main(["-q", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hardneg: error:") and message in err
    assert "Traceback" not in err


def test_model_without_retriever_means_dense(tmp_path, tiny_dir, tiny_model):
    assert main(["-q", "mine", str(tiny_dir), "--model", tiny_model, "--precision", "fp32", "--output",
                 str(tmp_path / "a.jsonl"), "--run-dir", str(tmp_path / "run")]) == 0
    assert json.loads((tmp_path / "run" / "report.json").read_text())["method"] == "dense"
    assert main(["-q", "mine", str(tiny_dir), "--output", str(tmp_path / "b.jsonl"), "--run-dir",
                 str(tmp_path / "run-bm25")]) == 0
    assert json.loads((tmp_path / "run-bm25" / "report.json").read_text())["method"] == "bm25"


def test_eval_with_a_model_evaluates_that_model(tmp_path, tiny_dir, tiny_model, capsys):
    from hardneg.data import load_beir
    from hardneg.evaluate import evaluate_retriever
    from hardneg.retrieve.bm25 import BM25Retriever
    from hardneg.retrieve.dense import DenseRetriever
    from hardneg.retrieve.encoder import SentenceTransformerEncoder

    assert main(["eval", str(tiny_dir), "--model", tiny_model, "--precision", "fp32", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    test = load_beir(tiny_dir, "test")
    dense = evaluate_retriever(DenseRetriever(SentenceTransformerEncoder(tiny_model, precision="fp32")), test,
                               show_progress=False)
    bm25 = evaluate_retriever(BM25Retriever(), test, show_progress=False)
    assert printed == pytest.approx({k: round(v, 6) for k, v in dense.items()})
    assert printed["ndcg@10"] != pytest.approx(bm25["ndcg@10"])  # not BM25's numbers under the model's name


def test_eval_run_dir_caches_embeddings_and_a_second_eval_reuses_them(tmp_path, tiny_dir, tiny_model, capsys,
                                                                       monkeypatch):
    from hardneg.retrieve.encoder import SentenceTransformerEncoder

    run_dir = tmp_path / "eval-run"
    args = ["eval", str(tiny_dir), "--model", tiny_model, "--precision", "fp32", "--json", "--run-dir", str(run_dir)]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert len(list((run_dir / "embeddings").glob("*.npy"))) == 2  # the queries' and the documents'

    def refuse(*_, **__):
        raise AssertionError("the second eval encoded again instead of reading --run-dir")

    monkeypatch.setattr(SentenceTransformerEncoder, "encode_queries", refuse)
    monkeypatch.setattr(SentenceTransformerEncoder, "encode_documents", refuse)
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out) == first


def test_help_says_what_model_alone_means():
    for command in ("mine", "eval"):
        out = run_cli(command, "--help")
        assert "default: dense when --model is given, else bm25" in " ".join(out.stdout.split())
    out = " ".join(run_cli("train", "--help").stdout.split())
    assert "default: dense, with the model being trained" in out and "default: 0.05 unless --absolute-margin" in out


def test_dense_run_logs_no_faiss_loader_lines_and_loads_once(tmp_path, tiny_dir, tiny_model):
    proc = run_cli("mine", str(tiny_dir), "--model", tiny_model, "--precision", "fp32", "--output",
                   str(tmp_path / "a.jsonl"))
    assert proc.returncode == 0, proc.stderr
    assert "AVX" not in proc.stderr and "Loading faiss" not in proc.stderr and "swigfaiss" not in proc.stderr
    assert sum("loaded" in line.lower() and "queries" in line for line in proc.stderr.splitlines()) == 1


def test_eval_writes_no_debug_lines(tiny_dir):
    for extra in ([], ["--json"]):
        proc = run_cli("eval", str(tiny_dir), *extra)
        assert proc.returncode == 0, proc.stderr
        assert "DEBUG" not in proc.stderr


def test_failed_export_keeps_the_last_good_report(tmp_path, tiny_dir, monkeypatch, capsys):
    run = tmp_path / "run"
    assert main(["-q", "mine", str(tiny_dir), "--output", str(tmp_path / "a.jsonl"), "--run-dir", str(run)]) == 0
    reports = {name: (run / name).read_bytes() for name in ("report.json", "report_scores.npz", "report_examples.json")}

    def failing_export(*args, **kwargs):
        raise OSError(28, "No space left on device")

    import importlib

    monkeypatch.setattr(importlib.import_module("hardneg.export"), "write_rows", failing_export)
    assert main(["-q", "mine", str(tiny_dir), "--num-negatives", "2", "--output", str(tmp_path / "b.jsonl"),
                 "--run-dir", str(run)]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert {name: (run / name).read_bytes() for name in reports} == reports


def test_the_package_imports_no_heavy_module_and_export_stays_the_function():
    code = ("import sys, hardneg, hardneg.cli; heavy = [m for m in ('numpy', 'torch', 'pyarrow', 'faiss') "
            "if m in sys.modules]; hardneg.cli.build_parser(); import hardneg.export; "
            "print(heavy, callable(hardneg.export), hardneg.export.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["[]", "True", "hardneg.export"], out.stderr


def test_selection_flags_cover_every_selection_field_and_build_the_config(tiny_dir, tmp_path):
    from dataclasses import fields

    from hardneg.cli import build_parser
    from hardneg.cli.options import SELECTION_FLAGS, selection_config
    from hardneg.select import SelectionConfig

    assert set(SELECTION_FLAGS) == {f.name for f in fields(SelectionConfig)}
    mine_flags = {o for a in build_parser()._subparsers._group_actions[0].choices["mine"]._actions
                  for o in a.option_strings}
    assert set(SELECTION_FLAGS.values()) <= mine_flags
    args = build_parser().parse_args([
        "mine", str(tiny_dir), "-o", str(tmp_path / "x.jsonl"), "--num-negatives", "4", "--range-min", "1",
        "--range-max", "9", "--min-score", "-1", "--max-score", "5", "--relative-margin", "0.1", "--sampling",
        "simans", "--simans-a", "3", "--simans-b", "0.5", "--if-short", "pad", "--keep-duplicate-texts", "--seed",
        "7", "--score-source", "teacher", "--denoise", "absolute", "--denoise-threshold", "2", "--promote-denoised"])
    assert selection_config(args) == SelectionConfig(
        num_negatives=4, range_min=1, range_max=9, min_score=-1.0, max_score=5.0, relative_margin=0.1,
        sampling="simans", simans_a=3.0, simans_b=0.5, if_short="pad", dedupe_texts=False, seed=7,
        score_source="teacher", denoise="absolute", denoise_threshold=2.0, promote_denoised=True)


def test_a_memory_budget_that_is_no_size_is_refused_in_one_line(tiny_dir, capsys):
    assert main(["-q", "mine", str(tiny_dir), "--memory-budget", "lots", "--output", "x.jsonl"]) == 2
    assert capsys.readouterr().err.strip() == (  # one line, no usage dump above it
        "hardneg: error: argument --memory-budget: a memory budget looks like 4GB, 512MB or 16GiB; got 'lots'. "
        "(hardneg mine --help lists the flags)")


def test_a_mistyped_choice_gets_the_close_one_suggested(tiny_dir, capsys):
    assert main(["mine", str(tiny_dir), "--format", "triplets", "--output", "x.jsonl"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hardneg: error: argument --format: invalid choice: 'triplets'") and "\n" not in err
    assert err.endswith("; did you mean 'triplet'? (hardneg mine --help lists the flags)")
    assert main(["mine", str(tiny_dir), "--format", "zzz", "--output", "x.jsonl"]) == 2
    assert "did you mean" not in capsys.readouterr().err


def test_quiet_works_after_the_command_too_and_version_prints(tiny_dir, tmp_path, capsys):
    from hardneg.cli import build_parser

    parser = build_parser()
    after = parser.parse_args(["mine", str(tiny_dir), "-o", "x.jsonl", "-q"])
    before = parser.parse_args(["-q", "mine", str(tiny_dir), "-o", "x.jsonl"])
    neither = parser.parse_args(["mine", str(tiny_dir), "-o", "x.jsonl"])
    assert (after.quiet, before.quiet, neither.quiet) == (True, True, False)
    from importlib.metadata import version

    with pytest.raises(SystemExit):
        parser.parse_args(["--version"])
    assert capsys.readouterr().out.strip() == f"hardneg {version('hardneg')}"


def test_dense_scale_flags_build_the_retriever_they_name(tiny_dir, tmp_path, fake_encoder):
    from hardneg.cli import build_parser
    from hardneg.cli.options import build_retriever
    from hardneg.retrieve.search import IndexConfig

    def built(*flags):
        args = build_parser().parse_args(["mine", str(tiny_dir), "-o", str(tmp_path / "x.jsonl"), *flags])
        return build_retriever(args, encoder=fake_encoder)

    dense = built("--retriever", "dense", "--index", "ivf-pq", "--nlist", "7", "--nprobe", "3", "--pq-m", "8",
                  "--index-sample", "900", "--refine-factor", "3", "--recall-queries", "50",
                  "--embedding-dtype", "float16", "--memory-budget", "2GB")
    assert dense.index == IndexConfig(kind="ivf-pq", nlist=7, nprobe=3, pq_m=8, train_sample=900, refine_factor=3,
                                      recall_queries=50)
    assert dense.embedding_dtype == "float16" and dense.memory_budget == 2 * 10**9
    plain = built("--retriever", "dense")
    assert plain.index == IndexConfig() and plain.embedding_dtype == "float32" and plain.memory_budget is None
    hybrid = built("--retriever", "hybrid", "--index", "ivf-sq8", "--memory-budget", "512MiB")
    assert hybrid.dense.index.kind == "ivf-sq8" and hybrid.dense.memory_budget == 512 * 2**20


def test_compressed_index_float16_and_budget_run_as_asked(tmp_path, tiny_dir, tiny_model):
    import numpy as np

    run = tmp_path / "run"
    assert main(["-q", "mine", str(tiny_dir), "--model", tiny_model, "--precision", "fp32", "--index", "ivf-sq8",
                 "--nlist", "2", "--nprobe", "1", "--recall-queries", "9", "--embedding-dtype", "float16",
                 "--memory-budget", "64MB", "--output", str(tmp_path / "a.jsonl"), "--run-dir", str(run)]) == 0
    report = json.loads((run / "report.json").read_text())
    quality = report["search_quality"]
    assert quality["index"] == "ivf-sq8" and quality["queries"] == 9 and 0 <= quality["recall_vs_exact"] <= 1
    # what ran is what was asked, and what was left to defaults is written out
    assert quality["parameters"] == {"nlist": 2, "nprobe": 1, "train_sample": report["n_docs"], "refine_factor": 2}
    assert main(["-q", "report", str(run)]) == 0
    page = (run / "report.html").read_text()
    assert (f"index ivf-sq8 (nlist 2, nprobe 1, refine factor 2, train sample {report['n_docs']}): recall@"
            in page)
    stored = [np.load(p, mmap_mode="r") for p in sorted((run / "embeddings").glob("*.npy"))]
    assert len(stored) == 2 and all(a.dtype == np.float16 for a in stored)
