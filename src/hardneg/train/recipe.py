"""The default training recipe: what ``hardneg train DATA --model M`` trains when no mining flag is given.

Each value is the best measured choice in bench/RESULTS.md ("Default recipe" and the quality sections before it),
on debian-desc and on a second domain (FOLDOC) with all-MiniLM-L6-v2, two seeds each:

- dense candidates from the model being trained (beat BM25 and hybrid candidates);
- TopK-PercPos relative margin 0.05: a negative must score at most 95 % of the positive (NV-Retriever), which keeps
  likely false negatives out (beat no margin, 0.02 and 0.10);
- 3 hard negatives per query (beat 1 and 7);
- queries with fewer than 3 negatives left after the margin are padded with random documents instead of being
  dropped, so no training query is lost (FOLDOC: +0.010 nDCG@10 over dropping, which lost 27 % of its queries);
- peak learning rate 5e-5 (beat 2e-5 by 0.008 nDCG@10 for both in-batch and hard-negative training);
- loss cached-mnrl: MNRL's loss and gradient computed a few texts at a time (GradCache), so memory does not grow
  with the batch (chosen for memory: the quality runs above trained plain mnrl, the same gradient).

The CLI reads its defaults from here and bench/quality.py's ``default`` setting trains exactly this, so the bench
measures what users get.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    """Mining and training choices of one recipe (the rest is :class:`~hardneg.train.trainer.TrainConfig`'s)."""

    retriever: str = "dense"
    num_negatives: int = 3
    relative_margin: float | None = 0.05
    if_short: str = "pad"
    learning_rate: float = 5e-5
    loss: str = "cached-mnrl"


DEFAULT_RECIPE = Recipe()
