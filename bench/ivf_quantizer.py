"""Assigning documents to IVF cells: FAISS's flat (BLAS) quantiser against an HNSW graph over the centroids.

The add step of an IVF index assigns every document to its nearest of nlist centroids; with
hardneg's default nlist = 4 sqrt(N) that is N^1.5 work. A graph quantiser is the usual remedy.
This times both, on one thread, for clustered unit vectors against the nlist of an N-document
corpus, and says how often the graph finds the flat quantiser's cell.

    .venv/bin/python bench/ivf_quantizer.py                     # nlist of 8.8 M documents: 11,865
    .venv/bin/python bench/ivf_quantizer.py --docs 1000000
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def clustered_unit_vectors(rng: np.random.Generator, centres: np.ndarray, n: int) -> np.ndarray:
    x = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.standard_normal((n, centres.shape[1])).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def cpu_seconds(fn) -> tuple[float, object]:
    t0 = time.process_time()
    out = fn()
    return time.process_time() - t0, out


def main() -> None:
    import faiss

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=8_800_000, help="corpus size whose default nlist is used")
    parser.add_argument("--vectors", type=int, default=100_000, help="documents assigned")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--ef-search", type=int, nargs="+", default=[32, 64, 128])
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    nlist = int(4 * np.sqrt(args.docs))
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((30_000, args.dim)).astype(np.float32)
    centroids = clustered_unit_vectors(rng, centres, nlist)
    docs = clustered_unit_vectors(rng, centres, args.vectors)
    flat = faiss.IndexFlatIP(args.dim)
    flat.add(centroids)
    flat_s, (_, flat_cells) = cpu_seconds(lambda: flat.search(docs, 1))
    print(f"nlist {nlist:,}, {args.vectors:,} vectors of {args.dim}, one thread")
    print(f"flat quantiser: {flat_s:.2f} CPU s")
    for ef in args.ef_search:
        graph = faiss.IndexHNSWFlat(args.dim, 32, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = 40
        build_s, _ = cpu_seconds(lambda graph=graph: graph.add(centroids))
        graph.hnsw.efSearch = ef
        graph_s, (_, cells) = cpu_seconds(lambda graph=graph: graph.search(docs, 1))
        same = float(np.mean(cells[:, 0] == flat_cells[:, 0]))
        print(f"HNSW quantiser, efSearch {ef}: build {build_s:.2f} CPU s, assign {graph_s:.2f} CPU s "
              f"({flat_s / graph_s:.2f}x the flat's speed), same cell as flat {same:.4f}")


if __name__ == "__main__":
    main()
