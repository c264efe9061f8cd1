"""``hardneg train``: fine-tune a bi-encoder on in-batch + hard negatives, optionally with ANCE refresh."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from hardneg.cli.checks import check_output, check_run_dir
from hardneg.cli.options import (
    add_data_args,
    add_executor_args,
    add_retriever_args,
    add_selection_args,
    build_retriever,
    load_data,
    make_executor,
    on_disk_if_big,
    optional_dev_data,
    selection_config,
)
from hardneg.errors import HardnegError

logger = logging.getLogger("hardneg")

TRAIN_EXAMPLES = """\
examples:
  # the default recipe: 3 dense hard negatives per query, mined on the fly with the model itself and
  # kept below 95% of the positive's score (TopK-PercPos 0.05; queries left short are padded with
  # random documents), then trained with MNRL at a peak learning rate of 5e-5, its loss computed in
  # mini-batches of 32 texts (cached-mnrl: the same gradient, memory bounded whatever the batch)
  hardneg train data/sample --model sentence-transformers/all-MiniLM-L6-v2 --output runs/student

  # the same, re-mining with the model being trained every 200 steps (ANCE)
  hardneg train data/sample --model ./minilm --refresh-every 200 --save-steps 200 --output runs/ance

  # ANCE re-encoding only each query's top 10 candidates of the last full mining (plus the positives);
  # the whole corpus every 4th refresh
  hardneg train data/sample --model ./minilm --refresh-every 200 --refresh-scope pool --output runs/ance-pool

  # other mining flags override the defaults: BM25, one negative, no margin
  hardneg train data/sample --model ./minilm --retriever bm25 --num-negatives 1 --relative-margin none \\
      --output runs/bm25

  # from a file written by `hardneg mine` (triplet, n-tuple, flag or ids format)
  hardneg train data/sample --model ./minilm --negatives train.jsonl --output runs/static

  # distil teacher margins from an n-tuple file with a scores column
  hardneg train data/sample --model ./minilm --negatives scored.jsonl --loss margin-mse --output runs/mse

  # listwise distillation: 7 candidates per query, soft-labelled by a cross-encoder teacher
  hardneg mine data/sample --retriever dense --depth 30 --cross-encoder runs/teacher --score-source teacher \\
      --num-negatives 7 --format n-tuple --with-scores --output scored7.jsonl
  hardneg train data/sample --model ./minilm --negatives scored7.jsonl --loss listwise-distill --output runs/kd

  # continue an interrupted run from its latest checkpoint (same command + --resume)
  hardneg train data/sample --model ./minilm --refresh-every 200 --save-steps 200 --output runs/ance --resume
"""


def register(sub) -> None:
    """Add the training subcommands to the ``hardneg`` parser."""
    from hardneg.train.losses import LOSSES
    from hardneg.train.recipe import DEFAULT_RECIPE
    from hardneg.train.topics import BATCHINGS

    p = sub.add_parser(
        "train", help="fine-tune a bi-encoder with in-batch + hard negatives (optionally ANCE refresh)",
        description="Train a sentence-transformers bi-encoder on queries, positives and hard negatives: mined "
        "on the fly with the mining flags, read from a file written by `hardneg mine`, or none (in-batch only). "
        "Without mining flags it trains the best recipe measured in bench/RESULTS.md: dense candidates from the "
        "model itself, TopK-PercPos relative margin 0.05, 3 negatives per query, short queries padded, learning rate "
        "5e-5 (hardneg.train.recipe).",
        epilog=TRAIN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_data_args(p)
    add_retriever_args(p, trains_model=True)
    add_selection_args(p, default_relative_margin=DEFAULT_RECIPE.relative_margin,
                        default_if_short=DEFAULT_RECIPE.if_short)
    src = p.add_argument_group("negatives")
    source = src.add_mutually_exclusive_group()
    source.add_argument("--negatives", help="train from this file written by `hardneg mine` instead of mining")
    source.add_argument("--in-batch-only", action="store_true", help="no hard negatives: in-batch negatives only")
    _add_training_args(p, LOSSES, BATCHINGS, DEFAULT_RECIPE)
    _add_refresh_args(p)
    add_executor_args(p)
    p.set_defaults(func=cmd_train)


def _add_training_args(p: argparse.ArgumentParser, losses, batchings, recipe) -> None:
    t = p.add_argument_group("training")
    t.add_argument("--output", "-o", required=True, help="output folder: checkpoints, logs, final model (OUTPUT/final)")
    t.add_argument("--loss", choices=losses, default=recipe.loss,
                   help="training loss; cached-mnrl is mnrl's loss and gradient computed --mini-batch-size texts at "
                   "a time, so memory does not grow with --train-batch-size; mnrl, gist, margin-mse and "
                   f"listwise-distill hold the whole batch's activations (default: {recipe.loss})")
    t.add_argument("--guide", help="GIST guide model (default: the model being trained)")
    t.add_argument("--distill-weight", type=float, default=1.0,
                   help="listwise-distill: weight of the KL term against the in-batch term (default: 1)")
    t.add_argument("--teacher-temperature", type=float, default=1.0,
                   help="listwise-distill: teacher logits are divided by it before the softmax (default: 1)")
    t.add_argument("--train-batch-size", type=int, default=32,
                   help="examples per training batch; with a cached loss (the default) it sets time per step, not "
                   "memory; with the others memory grows with it times negatives times --max-length (default: 32)")
    t.add_argument("--batching", choices=batchings, default="random",
                   help="random batches (default), or topic: queries clustered once so each batch holds one "
                   "topic and its in-batch negatives are hard too (TAS)")
    t.add_argument("--mini-batch-size", type=int, default=32,
                   help="memory bound of the cached losses: texts per forward pass (peak memory grows with it times "
                   "--max-length); halve it to save memory, at no change to the gradient (default: 32)")
    t.add_argument("--learning-rate", type=float, default=recipe.learning_rate,
                   help=f"peak learning rate (default: {recipe.learning_rate:g})")
    t.add_argument("--warmup-ratio", type=float, default=0.1, help="fraction of steps warming up (default: 0.1)")
    t.add_argument("--epochs", type=float, default=1.0, help="passes over the examples (default: 1)")
    t.add_argument("--max-steps", type=int, help="stop after N optimizer steps (overrides --epochs)")
    t.add_argument("--log-gradient-every", type=int, default=10, metavar="N",
                   help="every N steps, log the share of the loss gradient carried by each hard negative rank, "
                   "padding and in-batch negatives to OUTPUT/gradient_shares.jsonl (mnrl and cached-mnrl; 0: never; "
                   "default: 10)")
    t.add_argument("--save-steps", type=int, help="save a resumable checkpoint every N steps (default: none)")
    t.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --output")


def _add_refresh_args(p: argparse.ArgumentParser) -> None:
    from hardneg.train.refresh import DEFAULT_SCOPE_DEPTH, RefreshConfig
    from hardneg.train.refresh_scope import SCOPES

    default = RefreshConfig()
    r = p.add_argument_group("refresh (ANCE)")
    r.add_argument("--refresh-every", type=int,
                   help="re-encode the corpus with the current weights and re-mine the negatives every N steps "
                   "(dense or hybrid retrieval, not bm25)")
    r.add_argument("--refresh-scope", choices=SCOPES, default=default.scope,
                   help="pool: re-mine only the queries of the batches before the next refresh, among their "
                   "--refresh-scope-depth nearest documents in the last full mining's embeddings (found with the "
                   "current weights' query embeddings; an asynchronous refresh uses that mining's candidates) plus "
                   "their positives; only those are re-encoded (a pool of over half the corpus: a full refresh "
                   "instead). full: every query on the whole corpus (default: "
                   f"{default.scope}; as good as full on debian-desc, at a quarter of its seconds: README)")
    r.add_argument("--refresh-scope-depth", type=int, default=default.scope_depth, metavar="D",
                   help=f"pool scope: documents per query that join the pool (default: {DEFAULT_SCOPE_DEPTH}, or "
                   "--depth when smaller)")
    r.add_argument("--refresh-full-every", type=int, default=default.full_every, metavar="F",
                   help="pool scope: every F-th refresh re-encodes the whole corpus and renews the pool (0: only "
                   f"the first refresh when the negatives come from a file; default: {default.full_every})")
    r.add_argument("--refresh-async", action="store_true",
                   help="re-mine from a weight snapshot in another process while training continues (ANCE); "
                   "worth it with a second GPU or spare CPU cores")
    r.add_argument("--staleness-k", type=int, default=10, help="staleness: overlap of the negatives in use with "
                   "the refreshed model's top K (default: 10)")
    r.add_argument("--dev-split",
                   help="split evaluated at start, each refresh and end (default: dev where the data has it, "
                   "else skipped; 'none' to skip)")
    r.add_argument("--dev-max-queries", type=int, default=200, help="cap on dev queries evaluated (default: 200)")


def training_miner(args, model, run_dir: Path):
    """The mining pipeline of the flags, with its encoder wrapping the model being trained.

    Returns:
        ``(miner, eval_miner)``: the miner of the flags, and one with a dense retriever for
        the dev evaluation (the same miner unless the flags chose BM25).
    """
    from hardneg.mine import Miner
    from hardneg.retrieve.base import DenseBacked
    from hardneg.retrieve.dense import DenseRetriever
    from hardneg.retrieve.encoder import SentenceTransformerEncoder

    config = selection_config(args)
    encoder = SentenceTransformerEncoder(
        model, query_prompt=args.query_prompt, document_prompt=args.document_prompt,
        max_length=args.max_length, batch_size=args.batch_size, precision=args.precision,
        **({"max_batch_tokens": args.max_batch_tokens} if getattr(args, "max_batch_tokens", None) else {}),
    )
    # mine with the very weights being trained (the encoder's key follows them); on Ray, workers load a
    # snapshot of them saved in the run directory
    executor = make_executor(args)
    retriever = build_retriever(args, encoder=encoder, executor=executor)
    miner = Miner(retriever, config, depth=args.depth, run_dir=run_dir, show_progress=not args.quiet)
    if isinstance(retriever, DenseBacked):
        return miner, miner
    return miner, Miner(DenseRetriever(encoder, executor=executor), config, run_dir=run_dir,
                        show_progress=not args.quiet)


def _refuse_contradictions(args) -> None:
    """Flags that cannot work together, refused before anything loads."""
    if not args.model:
        raise HardnegError("hardneg train needs --model: the sentence-transformers model to fine-tune (name or path).")
    if args.refresh_every is not None and args.retriever == "bm25":
        raise HardnegError("--refresh-every re-mines with the model being trained, but BM25 candidates do not change "
                           "with training: drop --retriever bm25 (dense is the default) or use hybrid.")
    if args.refresh_async and args.refresh_every is None:
        raise HardnegError("--refresh-async says how to refresh; add --refresh-every N to say when.")
    if args.refresh_every is not None and args.in_batch_only:
        raise HardnegError("--refresh-every swaps hard negatives, but --in-batch-only trains without any; drop one.")


def _loss_config(args):
    from hardneg.train.losses import LossConfig

    loss = LossConfig(args.loss, mini_batch_size=args.mini_batch_size, guide=args.guide,
                      distill_weight=args.distill_weight, teacher_temperature=args.teacher_temperature)
    if loss.needs_scores and not args.negatives:
        raise HardnegError(f"--loss {args.loss} trains on teacher scores, which on-the-fly mining does not keep: "
                           "write them to a file first (hardneg mine ... --cross-encoder TEACHER --score-source "
                           "teacher --format n-tuple --with-scores --output F), then train with --negatives F.")
    return loss


def _training_pool(args, data, miner, loss):
    """The examples to train on (from --negatives, in-batch only, or mined now) and, when mined now, which
    negatives are padding, which candidates the filters skipped (for the gradient log and the report) and
    the candidates (a pool-scope refresh's pool)."""
    from hardneg.neighbourhood import padding_texts, skipped_candidates
    from hardneg.train.files import pool_from_file
    from hardneg.train.pool import pool_from_selection, pool_in_batch_only

    if args.negatives:
        return pool_from_file(args.negatives, data, with_scores=loss.needs_scores), None, None, None
    if args.in_batch_only:
        return pool_in_batch_only(data), None, None, None
    loss.check_negatives(args.num_negatives)  # now, not after minutes of mining
    result = miner.mine(data)
    print(result.report.format_table())
    passages = data.corpus.passages
    skipped = {q: [passages[d] for d in docs]
               for q, docs in skipped_candidates(result.candidates, result.selection, data).items()}
    return (pool_from_selection(data, result.selection), padding_texts(result.selection, passages), skipped,
            result.candidates)


def _refresh_config(args, dev):
    """ANCE refresh every --refresh-every steps; without it, dev evaluations only (when there is a dev split)."""
    from hardneg.train.refresh import RefreshConfig

    if args.refresh_every is not None:
        return RefreshConfig(every=args.refresh_every, staleness_k=args.staleness_k,
                             dev_max_queries=args.dev_max_queries, asynchronous=args.refresh_async,
                             scope=args.refresh_scope, scope_depth=args.refresh_scope_depth,
                             full_every=args.refresh_full_every or None)
    if dev is not None:
        return RefreshConfig(every=None, dev_max_queries=args.dev_max_queries)
    return None


def _print_result(result, pool) -> None:
    print(f"trained {result.steps} steps on {len(pool)} examples ({pool.num_negatives} hard negatives each) "
          f"in {result.seconds:.0f} s")
    for entry in result.history:
        extra = (f"  {entry.get('scope', 'full')} scope, {entry.get('documents_encoded', '?')} documents encoded for "
                 f"{entry.get('queries_mined', '?')} queries  staleness "
                 f"{entry['staleness']:.3f}  changed {entry['negatives_changed']:.3f}") \
            if entry["kind"] == "refresh" else ""
        if entry.get("asynchronous"):
            extra += f"  applied at step {entry['applied_step']}"
        ndcg = entry.get("dev_ndcg@10")
        print(f"  step {entry['step']:>6}  {entry['kind']:<8}" + (f"  dev nDCG@10 {ndcg:.4f}" if ndcg is not None else "")
              + extra)
    print(f"model     {result.model_path}")


def cmd_train(args) -> int:
    from hardneg.data import shared_corpus_reads
    from hardneg.retrieve.encoder import load_sentence_transformer
    from hardneg.runtime import set_max_length
    from hardneg.train.files import check_negatives_file
    from hardneg.train.trainer import TrainConfig, train

    _refuse_contradictions(args)
    loss = _loss_config(args)
    if args.max_length is None:
        args.max_length = 128
    output = check_output(Path(args.output), args, folder=True)  # first: a bad --output is what the user typed
    if not args.resume and (output / "final").is_dir():
        raise HardnegError(f"--output {output} already holds a trained model ({output / 'final'}); training again "
                           "would replace it. Choose another --output, remove that folder first, or add --resume to "
                           "continue from its checkpoints.")
    run_dir = check_run_dir(args.run_dir if args.run_dir else output / "hardneg-run")
    if args.negatives:
        check_negatives_file(args.negatives)  # a missing file or unknown type stops here, not after loading
    with shared_corpus_reads():  # the training and dev splits share one parse and one Corpus
        data, dev = load_data(args), optional_dev_data(args.data, args.dev_split)
    data, dev = on_disk_if_big(data, run_dir), on_disk_if_big(dev, run_dir)  # big: both map the same files
    model = load_sentence_transformer(args.model)
    set_max_length(model, args.max_length, args.model)
    miner, eval_miner = training_miner(args, model, run_dir)
    pool, padding, skipped, candidates = _training_pool(args, data, miner, loss)
    config = TrainConfig(
        loss=loss, batch_size=args.train_batch_size, learning_rate=args.learning_rate,
        warmup_ratio=args.warmup_ratio, epochs=args.epochs, max_steps=args.max_steps, max_length=args.max_length,
        precision=args.precision, seed=args.seed, batching=args.batching, save_steps=args.save_steps,
        log_gradient_every=args.log_gradient_every or None,
    )
    result = train(model, pool, output, config, miner=miner if args.refresh_every else eval_miner, data=data,
                   refresh=_refresh_config(args, dev), dev_data=dev,
                   resume_from_checkpoint=True if args.resume else None, show_progress=not args.quiet,
                   padding=padding, candidates=candidates)
    _print_result(result, pool)
    _write_report(output, model, pool, skipped, padding, loss.scale)
    return 0


def _write_report(output: Path, model, pool, skipped, padding, scale: float) -> None:
    """OUTPUT/report.html, and the start/end gradient shares on the terminal."""
    from hardneg.train.gradient import LOG_FILE
    from hardneg.train.report import read_jsonl, share_line, write_training_report

    page = write_training_report(output, model, pool, skipped=skipped, padding=padding, scale=scale)
    line = share_line(read_jsonl(output / LOG_FILE))
    if line:
        print(line)
    print(f"report    {page}")
