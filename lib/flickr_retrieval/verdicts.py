"""Verdicts: when may a notebook say that a change "helps" or "hurts"?

One rule everywhere: "helps" / "hurts" only when the 95% interval of the difference excludes 0,
otherwise "no measurable difference". What differs between comparisons is the interval:

- :func:`seed_paired` compares two rows trained with the same seeds. Its interval covers both
  sources of variation a reader cares about: the training's own randomness (initialisation, batch
  order, negatives, dropout: the spread of the per-seed differences) and the choice of test images
  (an image-level variance: each image counts with all its captions). Its criterion is stated with
  the result (``ks``; the study uses R@1+R@5+R@10, the criterion its model choice uses on dev).
- :func:`paired_bootstrap` compares two single runs on R@k with an interval over test images.
- :mod:`flickr_retrieval.protocol` builds the study's decisions and families of verdicts on it.

Every verdict string and every "diff (lo to hi): verdict" line of the study is made here.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

HELPS, HURTS, NO_DIFFERENCE = "helps", "hurts", "no measurable difference"


def verdict(lo: float, hi: float) -> str:
    """ "helps" when the interval is above 0, "hurts" when below, else "no measurable difference"."""
    if lo > hi:
        raise ValueError(f"interval ends in the wrong order: {lo} > {hi}")
    return HELPS if lo > 0 else HURTS if hi < 0 else NO_DIFFERENCE


def describe(comparison: dict, digits: int = 1) -> str:
    """``"+1.2 (+0.3 to +2.1): helps"``: a comparison as every notebook prints it."""
    lo, hi = comparison["ci95"]
    return f"{comparison['diff']:+.{digits}f} ({lo:+.{digits}f} to {hi:+.{digits}f}): {comparison['verdict']}"


def hits(ranks: np.ndarray, ks: tuple[int, ...] = (1, 5, 10)) -> np.ndarray:
    """Per query, the criterion's value in points: 100 x the number of ``ks`` with rank <= K (so
    that the mean over queries is R@1+R@5+R@10 for the default ``ks``, R@1 for ``(1,)``)."""
    ranks = np.asarray(ranks)
    return 100.0 * sum((ranks <= k).astype(np.float64) for k in ks)


def criterion_name(ks: tuple[int, ...]) -> str:
    return "+".join(f"R@{k}" for k in ks)


def image_variance(per_query: np.ndarray, caption_image: np.ndarray) -> float:
    """Variance of the mean of ``per_query`` when test images are drawn again with all their
    captions (the linearised variance of a ratio of per-image sums; exact for equal caption counts)."""
    caption_image = np.asarray(caption_image, dtype=np.int64)
    sums = np.bincount(caption_image, weights=per_query)
    counts = np.bincount(caption_image).astype(np.float64)
    keep = counts > 0
    sums, counts = sums[keep], counts[keep]
    n = len(sums)
    if n < 2:
        return 0.0
    mean = sums.sum() / counts.sum()
    residual = sums - mean * counts
    return float(n / (n - 1) * np.sum(residual**2) / counts.sum() ** 2)


def seed_paired(
    ranks_a: list[np.ndarray],
    ranks_b: list[np.ndarray],
    caption_image: np.ndarray,
    ks: tuple[int, ...] = (1, 5, 10),
    level: float = 0.95,
    seed_sd: float | None = None,
) -> dict:
    """Row ``a`` minus row ``b`` on the criterion ``ks``, over seeds paired by position.

    ``ranks_a[s]``, ``ranks_b[s]``: the test t2i ranks (one per caption) of the two rows trained
    with the s-th seed. The difference is the mean over seeds of the per-seed differences; its
    variance is ``s^2 / n`` (``s``: the standard deviation of the per-seed differences, training
    noise) plus the image-level variance of the seed-averaged difference (test-set noise); the
    interval uses Student's t with Welch-Satterthwaite degrees of freedom. With one seed pair,
    ``s`` must be given as ``seed_sd`` (a pooled estimate from rows with several seeds); its
    degrees of freedom are then taken as 2 (a deliberately wide interval).

    Returns ``{"diff", "ci95", "verdict", "seeds", "per_seed", "seed_sd", "image_se", "criterion", "df"}``.
    """
    if len(ranks_a) != len(ranks_b) or not ranks_a:
        raise ValueError(f"need the same number (>= 1) of seeds on both sides, got {len(ranks_a)} and {len(ranks_b)}")
    caption_image = np.asarray(caption_image)
    per_seed_hits = []
    for a, b in zip(ranks_a, ranks_b):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape or a.shape != caption_image.shape:
            raise ValueError(
                f"need ranks of the same queries: {a.shape}, {b.shape}, caption_image {caption_image.shape}"
            )
        per_seed_hits.append(hits(a, ks) - hits(b, ks))
    per_seed = np.array([h.mean() for h in per_seed_hits])
    n = len(per_seed)
    diff = float(per_seed.mean())
    image_var = image_variance(np.mean(per_seed_hits, axis=0), caption_image)
    if n >= 2:
        sd, seed_df = float(per_seed.std(ddof=1)), n - 1
    elif seed_sd is not None:
        sd, seed_df = float(seed_sd), 2
    else:
        raise ValueError("one seed per side: give seed_sd (the pooled seed-to-seed spread) for the training noise")
    seed_var = sd**2 / n
    total = seed_var + image_var
    n_images = len(np.unique(caption_image))
    df = float("inf")
    if total == 0:
        lo = hi = diff
    else:
        df = total**2 / (seed_var**2 / seed_df + image_var**2 / max(n_images - 1, 1))
        half = float(stats.t.ppf((1 + level) / 2, df)) * np.sqrt(total)
        lo, hi = diff - half, diff + half
    return {
        "diff": diff,
        "ci95": (float(lo), float(hi)),
        "verdict": verdict(lo, hi),
        "seeds": n,
        "per_seed": [float(v) for v in per_seed],
        "seed_sd": sd,
        "image_se": float(np.sqrt(image_var)),
        "criterion": criterion_name(ks),
        "df": float(df),
    }


def paired_bootstrap(
    ranks_a: np.ndarray,
    ranks_b: np.ndarray,
    caption_image: np.ndarray,
    k: int = 1,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict:
    """The difference R@k(a) - R@k(b) of two models on the same t2i queries, with a paired
    bootstrap interval that resamples *images* with all their captions (the same resamples for both
    models), since the captions of one image are not independent queries.

    Returns ``{"diff", "ci95": (lo, hi), "verdict"}``: ``"helps"`` or ``"hurts"`` only when the
    interval excludes 0, else ``"no measurable difference"``.
    """
    ranks_a, ranks_b = np.asarray(ranks_a), np.asarray(ranks_b)
    caption_image = np.asarray(caption_image, dtype=np.int64)
    if ranks_a.shape != ranks_b.shape or ranks_a.shape != caption_image.shape:
        raise ValueError(
            f"need ranks of the same queries: got {ranks_a.shape}, {ranks_b.shape} and caption_image {caption_image.shape}"
        )
    if not len(ranks_a):
        raise ValueError("no queries to compare")
    n_images = int(caption_image.max()) + 1
    hit = (ranks_a <= k).astype(np.float64) - (ranks_b <= k).astype(np.float64)
    per_image = np.bincount(caption_image, weights=hit, minlength=n_images)  # summed hit difference per image
    count = np.bincount(caption_image, minlength=n_images).astype(np.float64)  # its captions
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_images, size=(n_boot, n_images))
    diffs = 100.0 * per_image[draws].sum(axis=1) / np.maximum(count[draws].sum(axis=1), 1)
    lo, hi = np.percentile(diffs, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    diff = 100.0 * hit.mean()
    return {"diff": float(diff), "ci95": (float(lo), float(hi)), "verdict": verdict(float(lo), float(hi))}


def pooled_sd(groups: list[list[float]]) -> tuple[float, int]:
    """The pooled standard deviation of several groups of values (each group: one row's values over
    its seeds) and its degrees of freedom; groups of one value add nothing."""
    ss, df = 0.0, 0
    for g in groups:
        g = np.asarray(g, dtype=float)
        if len(g) >= 2:
            ss += float(((g - g.mean()) ** 2).sum())
            df += len(g) - 1
    if df == 0:
        raise ValueError("no group has two values: no spread to pool")
    return float(np.sqrt(ss / df)), df


def needs_more_seeds(comparison: dict, margin: float) -> bool:
    """True when the interval's end nearest 0 is within ``margin`` of 0 (or the interval covers 0
    with an end beyond it): the verdict is a close call that more seeds could settle. A row that
    ranks every test caption exactly as its parent on every seed (a fine-tuning that kept its start)
    is not a close call: its difference is exactly 0, and more seeds would repeat it."""
    lo, hi = comparison["ci95"]
    if lo == hi == 0.0 and comparison.get("image_se", 1.0) == 0.0:
        return False
    return min(abs(lo), abs(hi)) < margin or lo <= 0 <= hi


def comparison_claim(comparison: dict, helps: str, hurts: str, neither: str) -> str:
    """A claim verdict read off a comparison's verdict."""
    return {HELPS: helps, HURTS: hurts}.get(comparison["verdict"], neither)
