"""The study's protocol, as plain functions of runs' ranks: every decision reads dev, test is read
once, to report.

Decisions (each reads the **dev** ranks and dev curves of the runs, never their test ranks):

- :func:`is_close_call` on a :func:`compare` of dev ranks: which rows get more seeds;
- :func:`choose`: the dev choice (best mean dev criterion over seeds, ties to the simplest row);
- ensemble members and sizes follow from those (a chosen row's seeds), or :func:`select_members`
  picks them from a pool by their dev similarity matrices (greedy forward selection).

Reports (test ranks, once the decisions are made):

- :func:`compare` of test ranks: a row against its parent, seed-paired (:func:`verdicts.seed_paired`);
- :func:`adjust` a notebook's **family** of comparisons for multiplicity (Holm's step-down method on
  the comparisons' two-sided p-values): the adjusted verdict is the one the README and the ledger
  repeat;
- :func:`aa_check`: the verdict rule applied to two seed sets of the *same* row, for every row with
  six seeds: how often it calls a difference where there is none (its real false-positive rate);
- :func:`heterogeneity`: for a row measured on two disjoint seed sets, the difference of the two
  estimates over its standard error (training noise only: both sets share the test images, so this
  says whether the seed sets disagree more than training noise explains, not whether the effect
  holds on other images);
- :func:`ensemble_gain`: an ensemble against the mean of its own members, caption by caption, with an
  interval over test images (the members are the draws they are).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

from . import verdicts
from .metrics import t2i_ranks

#: The criterion of every verdict and of the model choice: R@1 + R@5 + R@10 (t2i), in points.
CRITERION = (1, 5, 10)
#: A comparison whose dev interval ends within this many criterion points of 0 (or covers 0) is a
#: close call: the row and its parent get more seeds. R@1+R@5+R@10 moves about 2.5 times as much
#: as R@1, so this is about 1.5 points of R@1.
CLOSE_CALL_MARGIN = 4.0
#: The family-wise error rate the adjusted verdicts hold.
ALPHA = 0.05


def compare(
    ranks_a: Sequence[np.ndarray],
    ranks_b: Sequence[np.ndarray],
    caption_image: np.ndarray,
    ks: tuple[int, ...] = CRITERION,
    seed_sd: float | None = None,
) -> dict:
    """Row ``a`` minus row ``b`` on the criterion, from the ranks of the same seeds in the same order
    (one array per seed, of one split): :func:`verdicts.seed_paired` plus its two-sided ``p``."""
    out = verdicts.seed_paired(list(ranks_a), list(ranks_b), caption_image, ks, seed_sd=seed_sd)
    return {**out, "p": p_value(out)}


def p_value(comparison: dict) -> float:
    """The two-sided p-value of a comparison's difference, from its interval (Student's t with the
    interval's degrees of freedom, recovered from the interval's half-width and standard error)."""
    lo, hi = comparison["ci95"]
    diff = comparison["diff"]
    half = (hi - lo) / 2.0
    if half == 0:
        return 1.0 if diff == 0 else 0.0
    df = comparison.get("df")
    if df is None:  # older comparisons: a normal approximation
        return float(2 * stats.norm.sf(abs(diff) / (half / stats.norm.ppf(0.975))))
    se = half / float(stats.t.ppf(0.975, df))
    return float(2 * stats.t.sf(abs(diff) / se, df))


def is_close_call(comparison: dict, margin: float = CLOSE_CALL_MARGIN) -> bool:
    """A comparison (of dev ranks, for a decision) whose interval covers 0 or ends within
    ``margin`` of it: more seeds could settle it (:func:`verdicts.needs_more_seeds`)."""
    return verdicts.needs_more_seeds(comparison, margin)


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjusted p-values (controls the family-wise error rate): sort ascending,
    multiply the i-th smallest by (m - i), keep them non-decreasing, cap at 1."""
    order = sorted(p_values, key=lambda k: p_values[k])
    m, running, out = len(order), 0.0, {}
    for i, key in enumerate(order):
        running = max(running, min(1.0, (m - i) * p_values[key]))
        out[key] = running
    return out


def adjust(
    comparisons: dict[str, dict], alpha: float = ALPHA, declared: Sequence[str] | None = None
) -> dict[str, dict]:
    """A family of comparisons with Holm-adjusted p-values and verdicts added to each:
    ``p_adjusted`` and ``verdict_adjusted`` ("helps"/"hurts" only when the adjusted p is below
    ``alpha``, in the direction of the difference; else "no measurable difference").

    ``declared``: the family as declared before anything was measured; a member not measured counts
    as p = 1 (the family never shrinks to what happened to be measured)."""
    p_values = {k: c["p"] for k, c in comparisons.items()}
    missing = [k for k in (declared or ()) if k not in p_values]
    adjusted = holm({**p_values, **{k: 1.0 for k in missing}})
    out = {}
    for key, c in comparisons.items():
        p = adjusted[key]
        verdict = verdicts.NO_DIFFERENCE if p >= alpha else (verdicts.HELPS if c["diff"] > 0 else verdicts.HURTS)
        out[key] = {**c, "p_adjusted": p, "verdict_adjusted": verdict, "family_size": len(adjusted)}
    return out


def format_p(p: float) -> str:
    """A p-value for people: three decimals, or "< 0.001"."""
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def describe_adjusted(comparison: dict, digits: int = 1, p_values: bool = True) -> str:
    """``"+1.2 (+0.3 to +2.1), p 0.012, Holm p 0.090: no measurable difference (unadjusted: helps)"``:
    the raw interval, both p-values (unless ``p_values`` is False: the ledger's evidence, which the
    regression checks compare number by number), then the family-adjusted verdict (the study's word)
    and, where it differs, the unadjusted one."""
    lo, hi = comparison["ci95"]
    text = f"{comparison['diff']:+.{digits}f} ({lo:+.{digits}f} to {hi:+.{digits}f})"
    if p_values:
        text += f", p {format_p(comparison['p'])}, Holm p {format_p(comparison['p_adjusted'])}"
    raw, adjusted = comparison["verdict"], comparison["verdict_adjusted"]
    return text + f": {adjusted}" + ("" if raw == adjusted else f" (unadjusted: {raw})")


def selection_tolerance(dev_scores: dict[str, list[float]]) -> float:
    """Two standard errors of a difference of two seed means of the dev criterion: the pooled seed
    spread of the rows with two or more seeds, at the smallest seed count."""
    groups = [v for v in dev_scores.values() if len(v) >= 2]
    if not groups:
        return 0.0
    sd = verdicts.pooled_sd(groups)[0]
    n = min(len(v) for v in dev_scores.values())
    return float(2.0 * sd * np.sqrt(2.0 / n))


def choose(dev_scores: dict[str, list[float]], complexity: dict[str, tuple], tolerance: float | None = None) -> dict:
    """The dev choice: the best mean dev criterion over a row's seeds; rows within ``tolerance`` of
    it tie (default :func:`selection_tolerance`), and the least complex of them wins (then the first
    in order). ``dev_scores``: row id -> the dev criterion of each of its seeds, in table order."""
    if not dev_scores:
        raise ValueError("no row to choose from")
    means = {i: float(np.mean(v)) for i, v in dev_scores.items()}
    if tolerance is None:
        tolerance = selection_tolerance(dev_scores)
    top = max(means.values())
    tied = [i for i in dev_scores if means[i] >= top - tolerance]
    chosen = min(tied, key=lambda i: complexity[i])  # min keeps the first of equals
    return {
        "chosen": chosen,
        "within_tolerance": tied,
        "tolerance": round(tolerance, 3),
        "dev_rsum_mean": {i: round(v, 2) for i, v in means.items()},
    }


def aa_check(
    ranks_by_row: dict[str, dict[int, np.ndarray]],
    caption_image: np.ndarray,
    first: tuple[int, ...],
    second: tuple[int, ...],
    ks: tuple[int, ...] = CRITERION,
) -> dict:
    """The verdict rule on the *same* row twice: seeds ``first`` against seeds ``second`` (paired by
    position), for every row that has both. The true difference is 0, so every "helps" or "hurts"
    is a false positive: their share is the rule's false-positive rate on this study's runs (the
    nominal rate is 5%). Returns ``{"rows": {id: comparison}, "false_positives", "checked", "rate"}``."""
    rows = {}
    for row_id, ranks in ranks_by_row.items():
        if all(s in ranks for s in (*first, *second)):
            rows[row_id] = compare([ranks[s] for s in second], [ranks[s] for s in first], caption_image, ks)
    false = sum(c["verdict"] != verdicts.NO_DIFFERENCE for c in rows.values())
    return {"rows": rows, "false_positives": false, "checked": len(rows), "rate": false / len(rows) if rows else None}


def heterogeneity(first: dict, second: dict) -> dict:
    """Whether two estimates of one comparison from disjoint seed sets disagree more than training
    noise explains: ``delta`` (second minus first), its standard error from each set's spread of
    per-seed differences (``seed_sd / sqrt(seeds)``; the test images are shared, so their noise is
    left out), and ``z``. With |z| > 2 the seed sets disagree; below, they are consistent, which
    says nothing about other test images."""
    se = float(np.sqrt(first["seed_sd"] ** 2 / first["seeds"] + second["seed_sd"] ** 2 / second["seeds"]))
    delta = second["diff"] - first["diff"]
    return {"first": first["diff"], "second": second["diff"], "delta": delta, "se": se, "z": delta / se if se else 0.0}


def ensemble_gain(
    ensemble_ranks: np.ndarray,
    member_ranks: Sequence[np.ndarray],
    caption_image: np.ndarray,
    ks: tuple[int, ...] = CRITERION,
    level: float = 0.95,
) -> dict:
    """An ensemble minus the mean of its own members on the criterion (one split's ranks): per
    caption, the ensemble's hits minus the members' mean hits; the interval covers the choice of
    test images (:func:`verdicts.seed_paired` with the members as fixed draws). The same rule in
    every notebook."""
    caption_image = np.asarray(caption_image)
    gain = verdicts.hits(ensemble_ranks, ks) - np.mean([verdicts.hits(r, ks) for r in member_ranks], axis=0)
    diff = float(gain.mean())
    se = float(np.sqrt(verdicts.image_variance(gain, caption_image)))
    n_images = len(np.unique(caption_image))
    half = float(stats.t.ppf((1 + level) / 2, max(n_images - 1, 1))) * se
    out = {
        "diff": diff,
        "ci95": (diff - half, diff + half),
        "verdict": verdicts.verdict(diff - half, diff + half),
        "seeds": len(member_ranks),
        "image_se": se,
        "criterion": verdicts.criterion_name(ks),
        "df": max(n_images - 1, 1),
    }
    return {**out, "p": p_value(out)}


def select_members(
    dev_similarity: dict[str, np.ndarray],
    caption_image: np.ndarray,
    ks: tuple[int, ...] = CRITERION,
    max_members: int | None = None,
) -> dict:
    """Ensemble members chosen on **dev** by greedy forward selection (Caruana et al. 2004, without
    replacement): start from the candidate with the best dev criterion alone, then add the candidate
    whose similarity matrix, averaged with the members', raises the dev criterion most; stop when no
    candidate raises it (or at ``max_members``). ``dev_similarity``: candidate id -> its (captions x
    images) dev similarity, all of the same captions and images; ``caption_image``: the dev image of
    each caption. Ties go to the first candidate in order. Reads nothing but dev.

    Returns ``{"members": [ids in the order added], "dev_criterion": [the criterion after each
    addition], "alone": {id: its own dev criterion}}``."""
    if not dev_similarity:
        raise ValueError("no candidate to select from")
    shapes = {np.shape(m) for m in dev_similarity.values()}
    if len(shapes) != 1:
        raise ValueError(f"the candidates' dev similarities differ in shape: {sorted(shapes)}")

    def criterion(sim: np.ndarray) -> float:
        return float(verdicts.hits(t2i_ranks(sim, caption_image), ks).mean())

    alone = {i: criterion(m) for i, m in dev_similarity.items()}
    first = max(alone, key=lambda i: alone[i])  # max keeps the first of equals
    members, scores = [first], [alone[first]]
    total = np.asarray(dev_similarity[first], dtype=np.float64).copy()
    while max_members is None or len(members) < max_members:
        trial = {i: criterion((total + m) / (len(members) + 1)) for i, m in dev_similarity.items() if i not in members}
        if not trial:
            break
        best = max(trial, key=lambda i: trial[i])
        if trial[best] <= scores[-1]:
            break
        members.append(best)
        scores.append(trial[best])
        total += dev_similarity[best]
    return {"members": members, "dev_criterion": scores, "alone": alone}
