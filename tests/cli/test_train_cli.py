"""`hardneg train` end to end on the tiny fixture: mined on the fly, from a file, and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hardneg.cli import main


@pytest.fixture
def one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


FAST = ["--train-batch-size", "8", "--max-length", "32", "--precision", "fp32", "--learning-rate", "1e-4"]


@pytest.mark.slow
def test_train_mines_on_the_fly_and_refreshes(tmp_path, tiny_dir, minilm_path, one_thread, capsys, monkeypatch):
    """No mining flag: the default recipe (dense with the model itself, TopK-PercPos 0.05, 3 negatives) is what ran."""
    from hardneg.data import beir

    parses, parse = [], beir.read_beir_corpus
    monkeypatch.setattr(beir, "read_beir_corpus", lambda path: parses.append(path) or parse(path))
    out = tmp_path / "out"
    rc = main(["-q", "train", str(tiny_dir), "--model", minilm_path, "--max-steps", "2", "--refresh-every", "1",
               "--refresh-scope-depth", "5", "--dev-max-queries", "5", "--output", str(out), *FAST])  # scope: pool
    assert rc == 0
    assert len(parses) == 1  # the training and the dev split share one parse of the corpus
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 2 and summary["num_negatives"] == 3
    mined = json.loads((out / "hardneg-run" / "report.json").read_text())
    assert mined["method"] == "dense"
    assert mined["selection"]["relative_margin"] == 0.05 and mined["selection"]["absolute_margin"] is None
    assert mined["selection"]["num_negatives"] == 3 and mined["selection"]["sampling"] == "top"
    assert [e["kind"] for e in summary["history"]] == ["start", "refresh", "end"]
    assert summary["history"][1]["step"] == 1 and "staleness" in summary["history"][1]
    # pool scope: the next batch's queries, embedded now, searched in the first mining's document embeddings
    # (from the run directory), and the positives, not the whole corpus
    refresh = summary["history"][1]
    assert refresh["scope"] == "pool" and refresh["pool"] == "fresh-queries"
    assert 0 < refresh["documents_encoded"] < 210  # the tiny corpus has 210
    assert refresh["queries_mined"] <= 8  # those of the next batch (--refresh-every 1, batch 8)
    assert (out / "final" / "config.json").exists()
    printed = capsys.readouterr().out
    assert "trained 2 steps" in printed and "refresh" in printed
    # gradient shares at the first and last step (and the step after the refresh), and the training report
    shares = [json.loads(x) for x in (out / "gradient_shares.jsonl").read_text().splitlines()]
    assert [e["step"] for e in shares] == [1, 2] and shares[1]["after_refresh"]
    assert set(shares[0]["shares"]) == {"hard_1", "hard_2", "hard_3", "padding", "in_batch"}
    page = (out / "report.html").read_text()
    # dev, refreshes, shares, map (2 steps log no loss point: logging_steps is 10)
    assert page.count("data:image/png;base64,") == 4
    for title in ("Dev metrics", "Refreshes", "Gradient shares over training", "Neighbourhoods of telling queries"):
        assert f"<h2>{title}</h2>" in page
    assert "report.html" in printed and "gradient  start (step 1): hard" in printed
    assert (f"pool scope, {refresh['documents_encoded']} documents encoded for {refresh['queries_mined']} queries"
            in printed)
    assert "<h2>Refresh log</h2>" in page


@pytest.mark.slow
def test_train_from_an_exported_file(tmp_path, tiny_dir, minilm_path, one_thread):
    path = tmp_path / "train.jsonl"
    assert main(["-q", "mine", str(tiny_dir), "--retriever", "bm25", "--num-negatives", "2", "--format", "n-tuple",
                 "--output", str(path)]) == 0
    rows = path.read_text().splitlines()
    out = tmp_path / "out"
    rc = main(["-q", "train", str(tiny_dir), "--model", minilm_path, "--negatives", str(path), "--max-steps", "1",
               "--dev-split", "none", "--batching", "topic", "--output", str(out), *FAST])
    assert rc == 0
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["num_negatives"] == 2 and summary["examples"] == len(rows) and summary["steps"] == 1
    assert summary["history"] == [] and summary["config"]["batching"] == "topic"
    assert len(np.load(out / "topics.npy")) == len(rows)  # one topic label per example, kept for --resume


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--retriever", "bm25", "--refresh-every", "5"], "drop --retriever bm25"),
     (["--in-batch-only", "--retriever", "dense", "--refresh-every", "5"], "--in-batch-only"),
     (["--loss", "margin-mse", "--retriever", "bm25"], "teacher scores"),
     (["--loss", "listwise-distill", "--retriever", "bm25"], "teacher scores"),
     (["--retriever", "dense", "--refresh-async"], "add --refresh-every")],
)
def test_train_refuses_contradictory_flags(tmp_path, tiny_dir, minilm_path, extra, message, capsys):
    rc = main(["-q", "train", str(tiny_dir), "--model", minilm_path, "--output", str(tmp_path / "o"),
               "--max-steps", "1", *FAST, *extra])
    assert rc == 2
    assert message in capsys.readouterr().err


def test_gist_with_several_negatives_is_refused_before_mining(tmp_path, tiny_dir, minilm_path, capsys):
    rc = main(["-q", "train", str(tiny_dir), "--model", minilm_path, "--output", str(tmp_path / "o"),
               "--max-steps", "1", *FAST, "--loss", "gist", "--num-negatives", "3"])
    assert rc == 2 and "use cached-gist" in capsys.readouterr().err
    assert not list((tmp_path / "o").rglob("report.json"))  # the miner never ran


def test_train_needs_a_model(tmp_path, tiny_dir, capsys):
    assert main(["-q", "train", str(tiny_dir), "--output", str(tmp_path / "o")]) == 2
    assert "needs --model" in capsys.readouterr().err


@pytest.mark.slow
def test_listwise_distill_trains_on_teacher_scores_mined_into_a_file(tmp_path, tiny_dir, minilm_path, one_thread):
    """The two-command path the README gives: mine with a teacher's scores, then distil them."""
    import torch

    from hardneg.teacher.scorer import load_cross_encoder

    torch.manual_seed(0)
    teacher = tmp_path / "teacher"
    load_cross_encoder(minilm_path, max_length=64).save_pretrained(str(teacher))  # a (random-headed) teacher dir
    scored = tmp_path / "scored.jsonl"
    assert main(["-q", "mine", str(tiny_dir), "--retriever", "bm25", "--depth", "8", "--num-negatives", "3",
                 "--cross-encoder", str(teacher), "--teacher-precision", "fp32", "--score-source", "teacher",
                 "--format", "n-tuple", "--with-scores", "--output", str(scored)]) == 0
    rows = [json.loads(line) for line in scored.read_text().splitlines()]
    assert all(len(r["scores"]) == 4 and r["scores"][1:] == sorted(r["scores"][1:], reverse=True) for r in rows)
    out = tmp_path / "kd"
    assert main(["-q", "train", str(tiny_dir), "--model", minilm_path, "--negatives", str(scored), "--loss",
                 "listwise-distill", "--distill-weight", "2", "--max-steps", "1", "--dev-split", "none",
                 "--output", str(out), *FAST]) == 0
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["config"]["loss"]["name"] == "listwise-distill"
    assert summary["config"]["loss"]["distill_weight"] == 2.0 and summary["num_negatives"] == 3


def test_train_defaults_are_the_declared_recipe(tmp_path, tiny_dir):
    """`hardneg train` with no flags trains hardneg.train.recipe.DEFAULT_RECIPE, spelled out here by hand."""
    from hardneg.cli import build_parser, resolve_retriever
    from hardneg.train.recipe import DEFAULT_RECIPE

    assert (DEFAULT_RECIPE.retriever, DEFAULT_RECIPE.num_negatives, DEFAULT_RECIPE.relative_margin,
            DEFAULT_RECIPE.if_short, DEFAULT_RECIPE.learning_rate) == ("dense", 3, 0.05, "pad", 5e-5)
    args = build_parser().parse_args(["train", str(tiny_dir), "--model", "m", "--output", str(tmp_path / "o")])
    resolve_retriever(args)
    assert args.retriever == DEFAULT_RECIPE.retriever and args.learning_rate == DEFAULT_RECIPE.learning_rate
    assert args.if_short == DEFAULT_RECIPE.if_short and args.num_negatives == DEFAULT_RECIPE.num_negatives
    mine_args = build_parser().parse_args(["mine", str(tiny_dir), "--output", str(tmp_path / "m.jsonl")])
    assert mine_args.if_short == "drop"  # the mine command's own default is unchanged


@pytest.mark.parametrize(
    ("flags", "retriever", "selection"),
    [([], "dense", {"num_negatives": 3, "relative_margin": 0.05, "absolute_margin": None, "sampling": "top",
                    "if_short": "pad"}),
     (["--if-short", "drop"], "dense", {"if_short": "drop", "relative_margin": 0.05}),
     (["--relative-margin", "0.1"], "dense", {"relative_margin": 0.1, "absolute_margin": None}),
     (["--relative-margin", "none"], "dense", {"relative_margin": None, "absolute_margin": None}),
     (["--relative-margin", "0"], "dense", {"relative_margin": 0.0}),
     (["--absolute-margin", "0.2"], "dense", {"relative_margin": None, "absolute_margin": 0.2}),
     (["--num-negatives", "1"], "dense", {"num_negatives": 1, "relative_margin": 0.05}),
     (["--sampling", "random", "--seed", "4"], "dense", {"sampling": "random", "seed": 4}),
     (["--retriever", "bm25"], "bm25", {"relative_margin": 0.05}),
     (["--retriever", "hybrid"], "hybrid", {"relative_margin": 0.05})],
)
def test_train_mines_what_the_flags_say(flags, retriever, selection, tmp_path, tiny_dir, tiny_model):
    """The miner `hardneg train` builds: the default recipe, and each flag overriding its part of it."""
    from sentence_transformers import SentenceTransformer

    from hardneg.cli import build_parser, resolve_retriever
    from hardneg.cli.train import training_miner
    from hardneg.retrieve.bm25 import BM25Retriever
    from hardneg.retrieve.dense import DenseRetriever
    from hardneg.retrieve.hybrid import HybridRetriever

    args = build_parser().parse_args(["train", str(tiny_dir), "--model", tiny_model, "--output", str(tmp_path / "o"),
                                      *flags])
    resolve_retriever(args)
    model = SentenceTransformer(tiny_model, device="cpu")
    miner, _ = training_miner(args, model, tmp_path / "run")
    kind = {"bm25": BM25Retriever, "dense": DenseRetriever, "hybrid": HybridRetriever}[retriever]
    assert type(miner.retriever) is kind
    if retriever != "bm25":  # mines with the very model being trained
        dense = miner.retriever if retriever == "dense" else miner.retriever.dense
        assert dense.encoder.model is model
    for field, value in selection.items():
        assert getattr(miner.selection, field) == value, field


@pytest.mark.parametrize(
    ("flags", "field", "value"),
    [([], "scope", "pool"),
     ([], "scope_depth", None),
     (["--refresh-scope", "full"], "scope", "full"),
     (["--refresh-scope", "pool"], "scope", "pool"),
     (["--refresh-scope-depth", "7"], "scope_depth", 7),
     (["--refresh-full-every", "2"], "full_every", 2),
     (["--refresh-full-every", "0"], "full_every", None)],
)
def test_refresh_scope_flags_reach_the_refresh_config(flags, field, value, tmp_path, tiny_dir):
    from hardneg.cli import build_parser
    from hardneg.cli.train import _refresh_config
    from hardneg.train.refresh import RefreshConfig

    args = build_parser().parse_args(["train", str(tiny_dir), "--model", "m", "--output", str(tmp_path / "o"),
                                      "--refresh-every", "5", *flags])
    config = _refresh_config(args, None)
    assert config.every == 5 and getattr(config, field) == value
    assert [getattr(config, f) for f in ("scope", "scope_depth", "full_every") if f != field] == \
        [getattr(RefreshConfig(), f) for f in ("scope", "scope_depth", "full_every") if f != field]
