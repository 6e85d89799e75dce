"""A grid of settings explored on dev alone (notebook 18): each setting trained for a few seeds (or
read back from the run cache), scored by the dev criterion of its kept epoch, never on test.

For a choice that sat at the edge of its grid: extend the grid past the edge and let the study's dev
choice (:func:`protocol.choose`: the best mean dev criterion, ties within two standard errors to the
simplest, here the old edge) say whether the optimum moved. Nothing here computes a test rank.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import protocol
from .config import RunConfig, seed_offset
from .data import Flickr8k
from .inputs import FeatureSpace
from .metrics import dev_selection_score
from .runs import train_cached


def dev_criterion(history: list[dict], best_epoch: int) -> float:
    """The dev R@1+R@5+R@10 of a run's kept epoch."""
    return dev_selection_score(next(h for h in history if h["epoch"] == best_epoch))


def explore(data: Flickr8k, grid: dict[str, RunConfig], seeds: tuple[int, ...]) -> dict[str, dict]:
    """Train (or read from the run cache) each setting of ``grid`` (label -> config) for ``seeds``,
    on ``data``'s training split, early stopping on dev; return label -> ``{"dev": [criterion per seed],
    "seconds": [...], "kept": [epochs]}``. Only the train and dev splits are loaded."""
    out = {}
    for label, config in grid.items():
        space = FeatureSpace(config, data)
        feats = {name: space.split(name) for name in ("train", "dev")}
        runs = []
        for seed in seeds:
            trained = train_cached(
                config.replace(name=f"{config.name}-seed{seed}", seed=seed),
                feats,
                text_norm=space.text_norm,
                image_norms=space.image_norms,
                seed_offset=seed_offset(),
            )
            runs.append(trained)
        out[label] = {
            "dev": [dev_criterion(t.history, t.best_epoch) for t in runs],
            "seconds": [t.seconds for t in runs],
            "kept": [t.best_epoch for t in runs],
        }
    return out


def verdict(results: dict[str, dict], edge: str, order: list[str]) -> dict:
    """The dev choice over the extended grid (:func:`protocol.choose`; ``order`` from the simplest, the
    old edge first, so that a tie keeps it) and whether it moved past ``edge``."""
    chosen = protocol.choose({k: results[k]["dev"] for k in order}, {k: (i,) for i, k in enumerate(order)})
    return {**chosen, "edge": edge, "moved": chosen["chosen"] != edge}


def table(results: dict[str, dict]) -> pd.DataFrame:
    """One line per setting: its dev criterion per seed, mean and spread, kept epochs, seconds per run."""
    rows = {}
    for label, r in results.items():
        rows[label] = {
            "dev R@1+R@5+R@10 by seed": ", ".join(f"{v:.1f}" for v in r["dev"]),
            "mean": round(float(np.mean(r["dev"])), 2),
            "seed sd": round(float(np.std(r["dev"], ddof=1)), 2) if len(r["dev"]) > 1 else None,
            "kept epochs": ", ".join(map(str, r["kept"])),
            "s per run": round(float(np.mean(r["seconds"])), 1),
        }
    return pd.DataFrame.from_dict(rows, orient="index")
