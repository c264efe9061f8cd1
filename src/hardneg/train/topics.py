"""Topic-aware batches: queries about the same topic share a batch.

With random batches, a query's in-batch negatives are mostly unrelated passages,
which the model already tells apart. Clustering the queries and filling each batch
from one cluster makes the in-batch negatives hard as well, at no extra encoding
cost (TAS, the topic-aware sampling of TAS-Balanced). The batch rules of
:mod:`hardneg.train.sampler` still hold: the order only decides which examples the
sampler tries first.

Reference:
    Hofstätter et al., "Efficiently Teaching an Effective Dense Retriever with
    Balanced Topic Aware Sampling", SIGIR 2021.
"""

from __future__ import annotations

import numpy as np

from hardneg.errors import HardnegError

BATCHINGS = ("random", "topic")  # how the trainer orders examples into batches


def topic_clusters(embeddings: np.ndarray, n_topics: int, seed: int = 0) -> np.ndarray:
    """Topic label ``int64[n]`` of each row of ``float32[n, dim]`` (spherical k-means).

    Args:
        embeddings: one (normalised) query embedding per training example.
        n_topics: clusters wanted; capped at the number of rows.
        seed: k-means initialisation seed.
    """
    from hardneg.retrieve.search import require_faiss

    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or len(emb) == 0:
        raise HardnegError(f"topic_clusters needs a non-empty (n, dim) matrix, got shape {emb.shape}.")
    if n_topics < 1:
        raise HardnegError(f"n_topics must be at least 1, got {n_topics}.")
    k = min(n_topics, len(emb))
    if k == 1:
        return np.zeros(len(emb), dtype=np.int64)
    kmeans = require_faiss().Kmeans(emb.shape[1], k, niter=20, seed=seed, spherical=True, verbose=False,
                                    min_points_per_centroid=1)
    kmeans.train(emb)
    _, labels = kmeans.index.search(emb, 1)
    return labels[:, 0].astype(np.int64)


def topic_order(topics: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A visit order of the examples: topics in random order, each topic's examples together, shuffled.

    Consecutive batches drawn in this order come from one topic (or two, where a
    topic ends mid-batch).
    """
    topics = np.asarray(topics)
    shuffled = rng.permutation(len(topics))
    topic_rank = rng.permutation(int(topics.max()) + 1) if len(topics) else np.zeros(0, dtype=np.int64)
    # stable sort by the topic's random rank keeps the shuffled order inside each topic
    return shuffled[np.argsort(topic_rank[topics[shuffled]], kind="stable")]
