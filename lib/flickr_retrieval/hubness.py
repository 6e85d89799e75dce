"""Hubness reduction at test time: scores of a trained model re-weighted per image, with no training.

A few images ("hubs") are the nearest neighbour of many queries in a shared embedding space; they
crowd the top of rankings they do not belong to. Each method here divides out, per image, how much
that image attracts queries in general, measured on a **query bank**: captions that are not test
queries (the training captions, embedded by the trained text branch). All functions are pure: they
take similarity matrices (queries x images) and return re-scored matrices of the same shape, for
:mod:`flickr_retrieval.metrics` to rank.

* :func:`inverted_softmax` (Smith et al., ICLR 2017): ``beta * s(q, g) - log sum_b exp(beta * s(b, g))``.
* :func:`querybank_normalise` (QB-Norm with the dynamic inverted softmax, Bogolin et al., CVPR 2022):
  the inverted softmax only for a query whose best image is in the bank's *activation set* (the
  images some bank query ranks first); other queries keep their raw scores.
* :func:`csls` (Conneau et al., ICLR 2018): ``2 s(q, g) - r_bank(g) - r_gallery(q)``, ``r`` the mean
  of the ``k`` highest similarities (the query's term does not change a text-to-image ranking).

Inductive: the bank never holds a test query, and nothing reads the other test queries.
:func:`dual_softmax` (each image's scores normalised over *the test queries themselves*) is
transductive: it may be shown, labelled so, never in a headline.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from .metrics import selection_score, summarize_ranks, t2i_ranks

#: The methods, by name: what :func:`rescore` applies.
METHODS = ("inverted_softmax", "querybank_norm", "csls")


def _check(similarity: np.ndarray, bank: np.ndarray) -> None:
    if similarity.ndim != 2 or bank.ndim != 2 or similarity.shape[1] != bank.shape[1]:
        raise ValueError(
            f"need (queries, images) and (bank queries, the same images) matrices, got {similarity.shape} and {bank.shape}"
        )
    if not (np.isfinite(similarity).all() and np.isfinite(bank).all()):
        raise ValueError("similarities must be finite")


def inverted_softmax(similarity: np.ndarray, bank: np.ndarray, beta: float) -> np.ndarray:
    """Each image's score divided (in the softmax's log domain) by its bank partition function."""
    _check(similarity, bank)
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    log_z = logsumexp(beta * bank.astype(np.float64), axis=0)  # (images,)
    return (beta * similarity.astype(np.float64) - log_z[None, :]).astype(np.float32)


def activation_set(bank: np.ndarray, k: int = 1) -> np.ndarray:
    """A boolean mask of the images that are among the ``k`` best of at least one bank query."""
    if not 1 <= k <= bank.shape[1]:
        raise ValueError(f"k must be in 1..{bank.shape[1]}, got {k}")
    top = np.argpartition(-bank, k - 1, axis=1)[:, :k] if k < bank.shape[1] else np.arange(bank.shape[1])[None]
    mask = np.zeros(bank.shape[1], dtype=bool)
    mask[np.unique(top)] = True
    return mask


def querybank_normalise(similarity: np.ndarray, bank: np.ndarray, beta: float, k: int = 1) -> np.ndarray:
    """QB-Norm with the dynamic inverted softmax: a query whose best image is in
    :func:`activation_set` gets :func:`inverted_softmax` scores, any other keeps its own (a
    ranking is per query, so the two scales never meet)."""
    normalised = inverted_softmax(similarity, bank, beta)
    use = activation_set(bank, k)[np.argmax(similarity, axis=1)]
    return np.where(use[:, None], normalised, similarity).astype(np.float32)


def _mean_top(matrix: np.ndarray, k: int, axis: int) -> np.ndarray:
    n = matrix.shape[axis]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in 1..{n}, got {k}")
    top = -np.partition(-matrix, k - 1, axis=axis)
    return np.take(top, np.arange(k), axis=axis).mean(axis=axis)


def csls(similarity: np.ndarray, bank: np.ndarray, k: int = 10) -> np.ndarray:
    """Cross-domain similarity local scaling: each image's score less the mean of its ``k`` best
    bank similarities (and each query's less its ``k`` best image similarities, a constant per
    query: it leaves text-to-image rankings as they are and matters for image-to-text)."""
    _check(similarity, bank)
    r_image = _mean_top(bank, k, axis=0)
    r_query = _mean_top(similarity, min(k, similarity.shape[1]), axis=1)
    return (2 * similarity - r_image[None, :] - r_query[:, None]).astype(np.float32)


def dual_softmax(similarity: np.ndarray, beta: float) -> np.ndarray:
    """TRANSDUCTIVE: each score times the softmax of its image's column over the test queries
    themselves. It reads every other test query; never a headline number."""
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    s = similarity.astype(np.float64)
    prior = np.exp(beta * s - logsumexp(beta * s, axis=0, keepdims=True))
    return (s * prior).astype(np.float32)


def rescore(method: str, similarity: np.ndarray, bank: np.ndarray, **params) -> np.ndarray:
    """One of :data:`METHODS` (or the transductive ``dual_softmax``) by name, with its parameters
    (``beta``; ``k``)."""
    if method == "inverted_softmax":
        return inverted_softmax(similarity, bank, params["beta"])
    if method == "querybank_norm":
        return querybank_normalise(similarity, bank, params["beta"], params.get("k", 1))
    if method == "csls":
        return csls(similarity, bank, params["k"])
    if method == "dual_softmax":  # transductive: the bank is not read, the other queries are
        return dual_softmax(similarity, params["beta"])
    raise ValueError(f"unknown method {method!r}; choose one of {(*METHODS, 'dual_softmax')}")


#: The parameters tried on dev for each method (beta scales cosine similarities in [-1, 1]).
GRID = {
    "inverted_softmax": [{"beta": b} for b in (5, 10, 20, 30, 50, 100)],
    "querybank_norm": [{"beta": b, "k": 1} for b in (5, 10, 20, 30, 50, 100)],
    "csls": [{"k": k} for k in (1, 3, 10, 30, 100)],
    "dual_softmax": [{"beta": b} for b in (5, 10, 20, 30, 50, 100)],
}
#: Methods that read the other test queries: never a headline number.
TRANSDUCTIVE = ("dual_softmax",)


def tune(
    method: str,
    similarities: list[np.ndarray],
    banks: list[np.ndarray],
    caption_image: np.ndarray,
    grid: list[dict] | None = None,
) -> tuple[dict, dict[str, float]]:
    """The parameters of ``method`` with the best mean criterion (t2i R@1+R@5+R@10) over the runs
    given, one (similarity, bank) pair per run, and every candidate's mean. Pass **dev**
    similarities and banks scored against the dev images: the choice never reads test."""
    if len(similarities) != len(banks) or not similarities:
        raise ValueError("one bank per similarity matrix, at least one")
    scores = {}
    for params in grid if grid is not None else GRID[method]:
        per_run = [
            selection_score(summarize_ranks(t2i_ranks(rescore(method, s, b, **params), caption_image)))
            for s, b in zip(similarities, banks)
        ]
        scores[repr(params)] = float(np.mean(per_run))
    best = max(scores, key=lambda p: scores[p])  # the first of equals: the grid's order
    chosen = next(p for p in (grid if grid is not None else GRID[method]) if repr(p) == best)
    return chosen, scores
