"""Retrieval metrics: pure, vectorised functions of a similarity matrix.

Conventions
-----------
``similarity`` is a (Q, N) array: rows are caption queries, columns are images, larger = more alike.
``caption_image`` is a (Q,) int array: the column of each caption's own image. Nothing assumes a
fixed number of captions per image.

Ranks are 1-based: the rank of a query is 1 + the number of *non-positive* candidates whose score
is greater than **or equal to** the best positive's score. Ties therefore count against the model
(a model that gives every image the same score gets rank N, not rank 1), and other positives never
push a positive down.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import hypergeom

from .helpers import l2_normalise

KS = (1, 5, 10)


def _check(similarity: np.ndarray, caption_image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    similarity = np.asarray(similarity)
    raw = np.asarray(caption_image)
    if raw.size and raw.dtype.kind not in "iu":
        raise ValueError(
            f"caption_image must hold integer image indices, got dtype {raw.dtype} (a float map would be silently truncated)"
        )
    caption_image = raw.astype(np.int64)
    if similarity.ndim != 2 or caption_image.shape != (similarity.shape[0],):
        raise ValueError(
            f"need a (Q, N) similarity and a (Q,) caption_image; got {similarity.shape} and {caption_image.shape}"
        )
    if similarity.shape[0] == 0 or similarity.shape[1] == 0:
        raise ValueError(f"the similarity matrix is empty ({similarity.shape}): no queries or no images to rank")
    if caption_image.min(initial=0) < 0 or caption_image.max(initial=0) >= similarity.shape[1]:
        raise ValueError("caption_image holds an index outside the similarity's columns")
    if np.isnan(similarity).any():
        raise ValueError("similarity contains NaN")
    return similarity, caption_image


def best_positive_rank(scores: np.ndarray, positive: np.ndarray, ties: str = "worst") -> np.ndarray:
    """Rank of the best-scored positive in each row.

    Parameters
    ----------
    scores : (Q, N) array
    positive : (Q, N) bool array, at least one True per row
    ties : str
        ``"worst"`` (the protocol's rule, default): negatives that tie with the positive rank before
        it. ``"mean"``: a tie counts half, the positive's expected rank under a random tie-break.

    Returns
    -------
    (Q,) array of 1-based ranks (int for ``"worst"``, float for ``"mean"``).
    """
    if ties not in ("worst", "mean"):
        raise ValueError(f"ties must be 'worst' or 'mean', got {ties!r}")
    scores = np.asarray(scores)
    positive = np.asarray(positive, dtype=bool)
    if not positive.any(axis=1).all():
        raise ValueError("every row needs at least one positive")
    best = np.where(positive, scores, -np.inf).max(axis=1)
    if ties == "mean":
        beaten = ((scores > best[:, None]) & ~positive).sum(axis=1)
        tied = ((scores == best[:, None]) & ~positive).sum(axis=1)
        return 1 + beaten + tied / 2
    beaten_or_tied = (scores >= best[:, None]) & ~positive
    return 1 + beaten_or_tied.sum(axis=1)


def positives_t2i(caption_image: np.ndarray, n_images: int) -> np.ndarray:
    """(Q, N) bool: each caption's own image."""
    mask = np.zeros((len(caption_image), n_images), dtype=bool)
    mask[np.arange(len(caption_image)), caption_image] = True
    return mask


def t2i_ranks(similarity: np.ndarray, caption_image: np.ndarray, ties: str = "worst") -> np.ndarray:
    """Text-to-image: for each caption, the rank of its image among all N images. Shape (Q,).
    Ties count against the model unless ``ties="mean"`` (see :func:`best_positive_rank`)."""
    similarity, caption_image = _check(similarity, caption_image)
    return best_positive_rank(similarity, positives_t2i(caption_image, similarity.shape[1]), ties)


def i2t_ranks(similarity: np.ndarray, caption_image: np.ndarray) -> np.ndarray:
    """Image-to-text: for each image, the rank of its best caption among all Q captions. Shape (N,)."""
    similarity, caption_image = _check(similarity, caption_image)
    return best_positive_rank(similarity.T, positives_t2i(caption_image, similarity.shape[1]).T)


def summarize_ranks(ranks: np.ndarray, ks: tuple[int, ...] = KS) -> dict[str, float]:
    """``R@K`` (percent of queries with rank <= K), ``medr`` (floor of the median) and ``meanr``."""
    ranks = np.asarray(ranks)
    out = {f"R@{k}": float(100.0 * np.mean(ranks <= k)) for k in ks}
    out["medr"] = float(np.floor(np.median(ranks)))
    out["meanr"] = float(np.mean(ranks))
    return out


def _resampled(
    ranks: np.ndarray, groups: np.ndarray | None, n_boot: int, rng: np.random.Generator
) -> list[np.ndarray] | np.ndarray:
    """``n_boot`` bootstrap resamples of ``ranks``: of single queries (``groups`` None), or of
    groups (test images) with all their queries (``groups[q]``: the group of query q)."""
    if groups is None:
        return ranks[rng.integers(0, len(ranks), size=(n_boot, len(ranks)))]
    groups = np.asarray(groups, dtype=np.int64)
    if groups.shape != ranks.shape:
        raise ValueError(f"groups {groups.shape} must give one group per rank {ranks.shape}")
    labels, groups = np.unique(groups, return_inverse=True)
    counts = np.bincount(groups)
    order = np.argsort(groups, kind="stable")
    draws = rng.integers(0, len(labels), size=(n_boot, len(labels)))
    if (counts == counts[0]).all():  # every image has as many captions (Flickr8k: 5): one gather
        return ranks[order.reshape(len(labels), counts[0])[draws].reshape(n_boot, -1)]
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    members = [order[a : a + c] for a, c in zip(starts, counts)]
    return [ranks[np.concatenate([members[g] for g in d])] for d in draws]


def bootstrap_recall(
    ranks: np.ndarray,
    ks: tuple[int, ...] = KS,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval of each R@K and of the median rank (seeded).

    With ``groups`` (for text-to-image: ``caption_image``) whole test images are resampled with all
    their captions, since the five captions of an image are not independent queries (intervals
    about 1.5 times wider than resampling captions one by one); without, queries are resampled.
    """
    ranks = np.asarray(ranks)
    draws = _resampled(ranks, groups, n_boot, np.random.default_rng(seed))
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    out = {}
    for k in ks:
        values = np.array([100.0 * np.mean(d <= k) for d in draws])
        out[f"R@{k}"] = (float(np.percentile(values, lo)), float(np.percentile(values, hi)))
    medians = np.array([np.floor(np.median(d)) for d in draws])
    out["medr"] = (float(np.percentile(medians, lo)), float(np.percentile(medians, hi)))
    return out


def summaries_from_ranks(
    t2i: np.ndarray,
    i2t: np.ndarray,
    caption_image: np.ndarray,
    ks: tuple[int, ...] = KS,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """The strict protocol from the ranks: ``t2i`` and ``i2t`` summaries, each with 95% bootstrap
    intervals that resample test images (t2i: each image with all its captions)."""
    out = {}
    for name, ranks, groups in (("t2i", t2i, caption_image), ("i2t", i2t, None)):
        summary = summarize_ranks(ranks, ks)
        summary["ci95"] = bootstrap_recall(ranks, ks, n_boot=n_boot, seed=seed, groups=groups)
        out[name] = summary
    return out


def retrieval_metrics(
    similarity: np.ndarray, caption_image: np.ndarray, ks: tuple[int, ...] = KS, n_boot: int = 1000, seed: int = 0
) -> dict:
    """The strict protocol in one dict: ``t2i`` and ``i2t`` summaries with 95% bootstrap intervals
    over test images (:func:`summaries_from_ranks`)."""
    return summaries_from_ranks(
        t2i_ranks(similarity, caption_image), i2t_ranks(similarity, caption_image), caption_image, ks, n_boot, seed
    )


def selection_score(summary: dict) -> float:
    """R@1 + R@5 + R@10 of one direction's summary: the model-selection score on dev (early
    stopping, choice of the best run). The one place this sum is written."""
    return summary["R@1"] + summary["R@5"] + summary["R@10"]


def dev_selection_score(row: dict) -> float:
    """:func:`selection_score` of a training history row (or a run's kept row): its ``dev_R@k``."""
    return selection_score({k: row[f"dev_{k}"] for k in ("R@1", "R@5", "R@10")})


# --------------------------------------------------------------------------- the report's criterion


def cosine_matrix(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Cosine similarity between the rows of ``a`` and of ``b`` (default ``a``)."""
    a = l2_normalise(np.asarray(a, dtype=np.float64))
    if b is None:
        return a @ a.T
    return a @ l2_normalise(np.asarray(b, dtype=np.float64)).T


def lenient_positives(caption_image: np.ndarray, image_cosine: np.ndarray, threshold: float = 0.7) -> np.ndarray:
    """(Q, N) bool: images whose CNN-feature cosine with the caption's own image exceeds ``threshold``.

    The caption's own image always counts, whatever the threshold.
    """
    caption_image = np.asarray(caption_image, dtype=np.int64)
    mask = np.asarray(image_cosine)[caption_image] > threshold
    mask[np.arange(len(caption_image)), caption_image] = True
    return mask


def lenient_ranks(
    similarity: np.ndarray, caption_image: np.ndarray, image_cosine: np.ndarray, threshold: float = 0.7
) -> np.ndarray:
    """Per caption, the rank of the best-scored image that the report's criterion accepts (CNN
    cosine above ``threshold`` with the caption's own image, or the image itself). Ties count
    against the model, as in the strict ranks."""
    similarity, caption_image = _check(similarity, caption_image)
    image_cosine = np.asarray(image_cosine)
    if image_cosine.shape != (similarity.shape[1], similarity.shape[1]):
        raise ValueError(
            f"image_cosine must be ({similarity.shape[1]}, {similarity.shape[1]}), got {image_cosine.shape}"
        )
    if np.isnan(image_cosine).any():
        raise ValueError("image_cosine contains NaN (an all-zero or broken image feature?)")
    return best_positive_rank(similarity, lenient_positives(caption_image, image_cosine, threshold))


def lenient_recall(
    similarity: np.ndarray,
    caption_image: np.ndarray,
    image_cosine: np.ndarray,
    threshold: float = 0.7,
    ks: tuple[int, ...] = KS,
) -> dict[str, float]:
    """The report's criterion (section X): found at K when one of the top K images has CNN-feature
    cosine above ``threshold`` with the expected image. Ties count against the model, as above."""
    ranks = lenient_ranks(similarity, caption_image, image_cosine, threshold)
    return {f"R@{k}": float(100.0 * np.mean(ranks <= k)) for k in ks}


def lenient_chance(
    caption_image: np.ndarray, image_cosine: np.ndarray, threshold: float = 0.7, ks: tuple[int, ...] = KS
) -> dict[str, float]:
    """Exact lenient R@K of a uniformly random ranking: with m acceptable images out of N, a random
    top K misses them all with the hypergeometric probability C(N-m, K) / C(N, K)."""
    positives = lenient_positives(caption_image, image_cosine, threshold)
    n = positives.shape[1]
    m = positives.sum(axis=1)
    return {f"R@{k}": float(100.0 * np.mean(1.0 - hypergeom.pmf(0, n, m, k))) for k in ks}


def top_answers(similarity: np.ndarray, caption_image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each caption's best score and whether its best image is its own (ties count against it)."""
    similarity, caption_image = _check(similarity, caption_image)
    return similarity.max(axis=1), t2i_ranks(similarity, caption_image) == 1


def own_scores(similarity: np.ndarray, caption_image: np.ndarray) -> np.ndarray:
    """Each caption's score with its own image."""
    similarity, caption_image = _check(similarity, caption_image)
    return similarity[np.arange(len(caption_image)), caption_image]


def calibrated_threshold(similarity: np.ndarray, caption_image: np.ndarray, recall: float = 0.5) -> float:
    """The line between "a good match" and "nothing matches well": the score that a share ``recall``
    of the captions reach with their own image (0.5: the median score of a caption with the image it
    describes). Flickr8k counts one image per caption as right, so a precision target on the best
    answer would also reject the many images that fit a caption as well as its own."""
    return float(np.quantile(own_scores(similarity, caption_image), 1.0 - recall))


def threshold_effect(similarity: np.ndarray, caption_image: np.ndarray, threshold: float) -> dict[str, float]:
    """What a threshold does on a split: ``recall`` (the share of captions whose own image reaches
    it), ``answered`` (the share of captions whose best image reaches it), ``precision`` (among those,
    the share whose best image is the caption's own: a lower bound, other images may fit as well);
    percentages."""
    best, correct = top_answers(similarity, caption_image)
    kept = best >= threshold
    return {
        "recall": 100.0 * float(np.mean(own_scores(similarity, caption_image) >= threshold)),
        "answered": 100.0 * float(kept.mean()),
        "precision": 100.0 * float(correct[kept].mean()) if kept.any() else float("nan"),
    }
