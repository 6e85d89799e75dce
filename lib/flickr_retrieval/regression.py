"""How far a re-run's numbers may move from the committed ones (the regression checks of
``tests_exports/``), from the measured seed spread.

A re-run on another CPU, or with ``RCP217_SEED_OFFSET``, is another draw of every training: its
numbers differ from the committed draw by about ``sqrt(2)`` times the seed-to-seed standard
deviation (``sqrt(2 / n)`` times for a mean over ``n`` seeds). A check allows :data:`Z` of those,
never less than a floor, and for small values never more than half the value (a recall of 3.3 must
not be allowed to fall to 0).
"""

from __future__ import annotations

import math
import re

#: Standard deviations of a difference between two draws that a number may move (two-sided, a
#: false alarm about once in 16000 numbers if the spread is right).
Z = 4.0

#: Used when no seed spread was measured (an export without ``seed_spread``): generous values of
#: the spreads 07 measures, in points (recalls) and ranks (median rank).
DEFAULT_SEED_SD = {"R@1": 1.0, "R@5": 1.5, "R@10": 1.5, "medr": 1.0}

#: Values below this are "small": their tolerance is at most half the value.
SMALL = 10.0


def tolerance(value: float, seed_sd: float, n_seeds: int = 1, floor: float = 0.5) -> float:
    """The allowed absolute difference for a number whose committed value is ``value``, measured
    as the mean over ``n_seeds`` seeds, with a seed-to-seed standard deviation ``seed_sd``."""
    if seed_sd < 0 or n_seeds < 1:
        raise ValueError(f"need seed_sd >= 0 and n_seeds >= 1, got {seed_sd}, {n_seeds}")
    allowed = max(floor, Z * math.sqrt(2.0 / n_seeds) * seed_sd)
    if abs(value) < SMALL:
        allowed = min(allowed, max(floor, 0.5 * abs(value)))
    return allowed


def rank_tolerance(value: float, seed_sd: float, n_seeds: int = 1) -> float:
    """The allowed difference for a median rank: :data:`Z` standard deviations of a difference of
    two draws, at least 1 rank, and at least a third of the value (a median rank of 50 moves by
    tens between seeds of a weak model)."""
    return max(1.0, Z * math.sqrt(2.0 / n_seeds) * seed_sd, value / 3)


def check(name: str, fresh: float, old: float, allowed: float) -> str | None:
    """None when ``fresh`` is within ``allowed`` of ``old``, else a line that says by how much not."""
    if fresh is None or old is None or not math.isfinite(fresh) or abs(fresh - old) > allowed:
        return f"{name}: {fresh} against the committed {old} (allowed +/- {allowed:.2f})"
    return None


NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def numbers(text: str) -> list[float]:
    """The numbers written in a piece of evidence (``"+1.2 (+0.3 to +2.1): helps"`` -> 3 numbers)."""
    return [float(n) for n in NUMBER.findall(text)]


def evidence_tolerance(value: float, what: str, seed_sd: dict[str, float], stated: float | None = None) -> float:
    """The allowed difference for a number of the ledger's evidence: the ``stated`` one when the
    notebook gave it; 0.05 for values within [-1, 1] that are not recalls (AUCs, cosines, predicted
    probabilities); else from the seed spread of the recalls: the largest of R@1/5/10's, or their
    sum for R@1+R@5+R@10 (an upper bound of the sum's spread). A difference of two rows ("minus")
    moves with both, so its spread is sqrt(2) times larger and no "small value" cap applies (a
    difference near 0 is not a recall near 0); other numbers get :func:`tolerance` with a floor of
    2 points."""
    if stated is not None:
        return stated
    if abs(value) <= 1 and not any(word in what for word in ("R@", "rank")):
        return 0.05
    sds = [seed_sd.get(k, DEFAULT_SEED_SD[k]) for k in ("R@1", "R@5", "R@10")]
    sd = sum(sds) if "R@1+R@5+R@10" in what else max(sds)
    if "minus" in what:
        return max(2.0, Z * math.sqrt(2.0) * math.sqrt(2.0) * sd)
    return tolerance(value, sd, floor=2.0)


def seed_spreads(folder) -> dict[str, dict[str, float]]:
    """The seed-to-seed standard deviation of every test number, measured on the committed run
    records of ``folder`` (rows with two or more seeds; ensembles left out): ``pooled`` over the
    rows, and ``largest``, the largest of any one row (the yardstick for a number drawn once, whose
    own spread is unknown: the pair classifier or a run stopped early moves more than the reference).
    Keys: ``"t2i R@1"`` ... ``"t2i medr"``, ``"i2t R@1"`` ... ``"i2t medr"``, ``"lenient R@1"`` ...
    ``"lenient R@10"``."""
    from pathlib import Path

    import numpy as np

    from . import metrics
    from .records import Run

    values: dict[str, list[dict[str, float]]] = {}
    for path in sorted(Path(folder).glob("*-seed*.npz")):
        row = path.stem.rsplit("-seed", 1)[0]
        if row.startswith("E"):
            continue
        with np.load(path, allow_pickle=False) as npz:
            n_captions, n_images = len(npz["ranks_t2i"]), len(npz["ranks_i2t"])
        ranks = Run.load(path, n_captions, n_images).ranks
        t2i, i2t = metrics.summarize_ranks(ranks["t2i"]), metrics.summarize_ranks(ranks["i2t"])
        numbers = {f"t2i {k}": t2i[k] for k in ("R@1", "R@5", "R@10", "medr")}
        numbers |= {f"i2t {k}": i2t[k] for k in ("R@1", "R@5", "R@10", "medr")}
        numbers |= {f"lenient R@{k}": 100.0 * float(np.mean(ranks["lenient"] <= k)) for k in (1, 5, 10)}
        values.setdefault(row, []).append(numbers)
    groups = [runs for runs in values.values() if len(runs) >= 2]
    if not groups:
        raise ValueError(f"no row with two or more seeds among the run records of {folder}")
    out: dict[str, dict[str, float]] = {"pooled": {}, "largest": {}}
    for key in groups[0][0]:
        sds = [float(np.std([r[key] for r in runs], ddof=1)) for runs in groups]
        dfs = [len(runs) - 1 for runs in groups]
        out["pooled"][key] = float(np.sqrt(sum(d * s**2 for d, s in zip(dfs, sds)) / sum(dfs)))
        out["largest"][key] = max(sds)
    return out
