"""Top-k search over embedded images: an exact scan, or above a size threshold an approximate FAISS
index whose recall against the exact scan is measured when it is built.

    index = build_index(image_embeddings, "cosine", calibration_queries=caption_embeddings)
    scores, rows = index.search(query_embeddings, k=10)

:class:`ExactIndex` scores every image (one matrix product) and breaks ties by position, so it
ranks exactly as ``np.argsort(-scores, kind="stable")`` does. :class:`ApproximateIndex` is FAISS's
inverted-file index (``IndexIVFFlat``: k-means cells, full vectors inside them): a query scans only
the ``nprobe`` cells nearest to it. ``nprobe`` is chosen when the index is built, as the smallest
power of two whose recall@10 against the exact scan reaches 0.995 on calibration queries
(a margin over the 0.99 promised to queries it has not seen); the measured recall is kept on the
index (:attr:`ApproximateIndex.recall_at_10`) and printed by whoever builds it. Below
:data:`APPROXIMATE_FROM` images the exact scan is used: it is fast enough there, and exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..config import SIMILARITIES
from ..models import pairwise_similarity

#: Collections of at least this many images are searched through an approximate index; smaller ones
#: by the exact scan. The exact scan of one query costs about 13 ms per 10^5 512-d images on 2 cores,
#: the approximate index about 2.6 ms at 10^5 and 8 ms at 10^6 (docs/speed.md, "Search at scale").
APPROXIMATE_FROM = 100_000
TARGET_RECALL = 0.99
#: ``nprobe`` must reach this on the calibration queries, a margin for the queries it has not seen.
CALIBRATION_RECALL = 0.995


def _check(vectors: np.ndarray, name: str, dim: int | None = None, finite: bool = True) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or (dim is not None and vectors.shape[1] != dim):
        raise ValueError(
            f"{name} must be a 2-d array{'' if dim is None else f' of width {dim}'}, got shape {vectors.shape}"
        )
    if finite and not np.isfinite(vectors).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return vectors


def exact_scores(queries: np.ndarray, vectors: np.ndarray, similarity: str) -> np.ndarray:
    """(Q, N) scores, computed by :func:`flickr_retrieval.models.pairwise_similarity` (higher is better)."""
    with torch.no_grad():
        return pairwise_similarity(torch.from_numpy(queries), torch.from_numpy(vectors), similarity).numpy()


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best columns of each row of ``scores``, best first, ties broken by column (the
    order of a stable sort of ``-scores``; a NaN ranks below every number and is returned as it is,
    for the caller to see): (scores (Q, k), columns (Q, k))."""
    values, scores = scores, np.where(np.isnan(scores), -np.inf, scores)
    n = scores.shape[1]
    if not 1 <= k <= n:
        raise ValueError(f"k must be from 1 to {n}, got {k}")
    rows = np.arange(len(scores))[:, None]
    if k < n:
        # the k-th best value; every column scoring above it, and the first of those equal to it, is kept
        candidates = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        kth = scores[rows, candidates].min(axis=1, keepdims=True)
    else:
        kth = scores.min(axis=1, keepdims=True)
    order = np.empty((len(scores), k), dtype=np.int64)
    for q in range(len(scores)):
        columns = np.flatnonzero(scores[q] >= kth[q])
        order[q] = columns[np.lexsort((columns, -scores[q, columns]))][:k]
    return values[rows, order], order


@dataclass
class ExactIndex:
    """Scores every vector: exact, and linear in the number of images. Vectors that are not numbers
    (a damaged run) give scores that are not numbers, which the caller reports."""

    vectors: np.ndarray
    similarity: str

    kind = "exact"

    def __post_init__(self):
        self.vectors = _check(self.vectors, "vectors", finite=False)
        if self.similarity not in SIMILARITIES:
            raise ValueError(f"unknown similarity {self.similarity!r}; choose one of {SIMILARITIES}")

    def __len__(self) -> int:
        return len(self.vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = _check(queries, "queries", self.vectors.shape[1], finite=False)
        return top_k(exact_scores(queries, self.vectors, self.similarity), k)

    def nbytes(self) -> int:
        return self.vectors.nbytes


def top_rows(index: ExactIndex | ApproximateIndex, queries: np.ndarray, k: int = 10, chunk: int = 50) -> np.ndarray:
    """The top-``k`` rows of many queries through ``index``, ``chunk`` queries at a time (exactly, the
    scores of 50 queries against 10^6 images take 200 MB; of 500 at once, 2 GB and its copies)."""
    return np.concatenate([index.search(queries[s : s + chunk], k)[1] for s in range(0, len(queries), chunk)])


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of the share of the true top-k found among the approximate top-k."""
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found.tolist(), truth.tolist())]))


class ApproximateIndex:
    """FAISS ``IndexIVFFlat`` (inner product for cosine and dot, L2 for euclidean) with ``nprobe``
    calibrated to a recall@10 target against the exact scan.

    Parameters
    ----------
    vectors : (N, E) float array, the embedded images.
    similarity : ``cosine`` (unit rows expected), ``dot`` or ``euclidean``.
    calibration_queries : (Q, E) queries the recall is measured on (embedded sentences of the kind
        the index will answer; a few hundred are enough).
    target_recall : the recall@10 that ``nprobe`` must reach on them (a margin above :data:`TARGET_RECALL`).
    cells : k-means cells; default ``sqrt(N)`` rounded, at least 1.
    seed : the k-means seed (the index is the same on every run with the same inputs and threads).
    """

    kind = "approximate"

    def __init__(
        self,
        vectors: np.ndarray,
        similarity: str,
        calibration_queries: np.ndarray,
        *,
        target_recall: float = CALIBRATION_RECALL,
        cells: int | None = None,
        seed: int = 0,
    ):
        import faiss  # only here: the exact scan needs no FAISS

        if similarity not in SIMILARITIES:
            raise ValueError(f"unknown similarity {similarity!r}; choose one of {SIMILARITIES}")
        vectors = _check(vectors, "vectors")
        queries = _check(calibration_queries, "calibration_queries", vectors.shape[1])
        if len(queries) == 0:
            raise ValueError("an approximate index needs calibration queries to measure its recall")
        self.similarity, self.dim, self.size = similarity, vectors.shape[1], len(vectors)
        self.cells = cells or max(1, round(math.sqrt(len(vectors))))
        metric = faiss.METRIC_L2 if similarity == "euclidean" else faiss.METRIC_INNER_PRODUCT
        quantizer = faiss.IndexFlatIP(self.dim) if metric == faiss.METRIC_INNER_PRODUCT else faiss.IndexFlatL2(self.dim)
        self._index = faiss.IndexIVFFlat(quantizer, self.dim, self.cells, metric)
        self._index.cp.seed = seed
        rng = np.random.default_rng(seed)
        sample = (
            vectors
            if len(vectors) <= 64 * self.cells
            else vectors[np.sort(rng.choice(len(vectors), 64 * self.cells, replace=False))]
        )
        self._index.train(sample)
        self._index.add(vectors)
        self._quantizer = quantizer  # FAISS does not own it: keep it alive as long as the index
        k = min(10, len(vectors))
        truth = top_rows(ExactIndex(vectors, similarity), queries, k)
        self.nprobe, self.recall_at_10 = self.cells, 1.0
        for nprobe in sorted({*(2**p for p in range(int(math.log2(self.cells)) + 1)), self.cells}):
            self._index.nprobe = nprobe
            recall = recall_at(self.search(queries, k)[1], truth)
            if recall >= target_recall:
                self.nprobe, self.recall_at_10 = nprobe, recall
                break
        self._index.nprobe = self.nprobe
        self.calibration_queries = len(queries)

    def __len__(self) -> int:
        return self.size

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = _check(queries, "queries", self.dim)
        if not 1 <= k <= self.size:
            raise ValueError(f"k must be from 1 to {self.size}, got {k}")
        scores, rows = self._index.search(queries, k)
        if self.similarity == "euclidean":
            scores = -np.sqrt(np.maximum(scores, 0.0))  # FAISS returns squared distances
        return scores, rows

    def nbytes(self) -> int:
        """The size of the index (vectors, their ids, the cell centres) as FAISS stores it."""
        import faiss

        return int(faiss.serialize_index(self._index).nbytes)

    def describe(self) -> str:
        return (
            f"approximate index (FAISS IVF-Flat, {self.cells} cells, nprobe {self.nprobe}): recall@10 against the exact "
            f"scan {self.recall_at_10:.3f} on {self.calibration_queries} calibration queries"
        )


def build_index(
    vectors: np.ndarray,
    similarity: str,
    calibration_queries: np.ndarray | None = None,
    *,
    approximate_from: int = APPROXIMATE_FROM,
    **options,
) -> ExactIndex | ApproximateIndex:
    """The exact scan below ``approximate_from`` vectors, an :class:`ApproximateIndex` from there on
    (which then needs ``calibration_queries``)."""
    if len(vectors) < approximate_from:
        return ExactIndex(vectors, similarity)
    if calibration_queries is None:
        raise ValueError(
            f"{len(vectors)} images: the approximate index needs calibration queries to measure its recall"
        )
    return ApproximateIndex(vectors, similarity, calibration_queries, **options)
