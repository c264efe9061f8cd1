"""The teacher commands end to end: mine → rescore → mine with denoising → report."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-m", "hardneg.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600)


@pytest.mark.slow
def test_rescore_then_denoise_then_report(tmp_path, tiny_dir, minilm_path):
    import torch

    from hardneg.teacher.scorer import load_cross_encoder

    torch.manual_seed(0)
    teacher = tmp_path / "teacher"
    load_cross_encoder(minilm_path, max_length=64).save_pretrained(str(teacher))  # a (random-headed) teacher dir
    run = tmp_path / "run"
    common = ["mine", str(tiny_dir), "--retriever", "bm25", "--depth", "8", "--max-queries", "25",
              "--num-negatives", "2", "--if-short", "keep", "--format", "ids", "--run-dir", str(run)]
    first = run_cli(*common, "--output", str(tmp_path / "a.jsonl"))
    assert first.returncode == 0, first.stderr

    rescored = run_cli("rescore", str(run), "--cross-encoder", str(teacher), "--teacher-precision", "fp32")
    assert rescored.returncode == 0, rescored.stderr
    assert "est. false negatives" in rescored.stdout and "bm25" in rescored.stdout

    # the saved teacher scores are read without --cross-encoder; the rule holds in the output
    second = run_cli(*common, "--denoise", "relative", "--denoise-threshold", "0.0", "--output", str(tmp_path / "b.jsonl"))
    assert second.returncode == 0, second.stderr
    rows = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert rows and any(r["denoised_ids"] for r in rows)
    for r in rows:
        ref = min(r["teacher_positive_scores"])
        assert all(t <= ref for t in r["teacher_negative_scores"])  # kept: not above the positive
        assert all(t > ref for t in r["denoised_scores"])  # dropped: above it
    assert "denoise" in second.stdout and "est. false negatives" in second.stdout

    page = run_cli("report", str(run))
    assert page.returncode == 0, page.stderr
    assert "data:image/png;base64," in (run / "report.html").read_text()


def test_denoise_flag_without_threshold_is_a_one_line_error(tmp_path, tiny_dir):
    out = run_cli("mine", str(tiny_dir), "--denoise", "absolute", "--output", str(tmp_path / "x.jsonl"))
    assert out.returncode == 2
    assert "--denoise-threshold" in out.stderr and "Traceback" not in out.stderr


def test_rescore_without_teacher_says_how(tmp_path):
    out = run_cli("rescore", str(tmp_path))
    assert out.returncode == 2 and "--cross-encoder" in out.stderr


@pytest.mark.slow
def test_train_reranker_cli_passes_its_options_and_prints_dev_reranking(tmp_path, tiny_dir, minilm_path):
    out = run_cli("-q", "train-reranker", str(tiny_dir), "--base", minilm_path, "--output", str(tmp_path / "teacher"),
                  "--retriever", "bm25", "--negatives-per-query", "1", "--negative-sampling", "random",
                  "--in-batch-negatives", "1", "--max-steps", "2", "--batch-size", "4", "--max-length", "32",
                  "--precision", "fp32", "--eval-depth", "5", "--eval-max-queries", "5")
    assert out.returncode == 0, out.stderr
    assert "dev reranking (5 queries)" in out.stdout and "reranked" in out.stdout
    record = json.loads((tmp_path / "teacher" / "train_reranker.json").read_text())
    assert record["steps"] == 2 and record["dev_queries"] == 5
    assert {k: record["config"][k] for k in ("loss", "in_batch_negatives", "negative_sampling", "negatives")} == {
        "loss": "listwise", "in_batch_negatives": 1, "negative_sampling": "random", "negatives": "bm25"}


@pytest.mark.parametrize("flag", ["--retriever", "--negatives"])
def test_train_reranker_takes_the_retriever_under_the_name_mine_and_train_use_and_its_older_one(flag):
    from hardneg.cli import build_parser

    args = build_parser().parse_args(["train-reranker", "data", "--base", "b", "--output", "o", flag, "dense"])
    assert args.negatives == "dense"
    assert build_parser().parse_args(["train-reranker", "data", "--base", "b", "--output", "o"]).negatives == "hybrid"


def test_train_reranker_refuses_an_unknown_loss(tmp_path, tiny_dir):
    out = run_cli("train-reranker", str(tiny_dir), "--base", "x", "--output", str(tmp_path / "t"), "--loss", "pairwise")
    assert out.returncode == 2 and "--loss" in out.stderr and "Traceback" not in out.stderr


def test_train_reranker_help_names_the_default_listwise_loss():
    out = " ".join(run_cli("train-reranker", "--help").stdout.split())
    assert "listwise softmax loss by default" in out and "(binary cross-entropy)" not in out


def test_default_dev_evaluation_is_skipped_with_one_notice_when_the_split_is_missing(tmp_path, tiny_dir, tiny_model,
                                                                                    capsys):
    import shutil

    from hardneg.cli import main

    data = tmp_path / "data"
    shutil.copytree(tiny_dir, data)
    (data / "qrels" / "dev.tsv").unlink()
    common = ["--max-queries", "16", "--max-steps", "1", "--max-length", "32", "--precision", "fp32"]
    assert main(["train-reranker", str(data), "--base", tiny_model, "--output", str(tmp_path / "teacher"),
                 "--negatives", "bm25", "--negatives-per-query", "1", "--batch-size", "4", *common]) == 0
    assert json.loads((tmp_path / "teacher" / "train_reranker.json").read_text())["dev_queries"] in (0, None)
    assert main(["train", str(data), "--model", tiny_model, "--retriever", "bm25", "--num-negatives", "1",
                 "--train-batch-size", "4", "--output", str(tmp_path / "student"), *common]) == 0
    err = capsys.readouterr().err
    notices = [line for line in err.splitlines() if "no dev split" in line]
    assert len(notices) == 2 and all("skipping the dev evaluation" in line for line in notices)
    assert "error" not in err
