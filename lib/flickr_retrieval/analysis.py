"""The strict test protocol of a run (:func:`protocol`: recalls with bootstrap intervals, both
directions, the report's lenient criterion and chance levels) and the summaries the notebooks show:
the report's failed models, table rows, the report's own results table (section XII)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from . import metrics
from .checkpoint import TrainedModel
from .evaluation import matched_and_random_scores, similarity
from .helpers import auc
from .sanity import different_group_pairs, rowwise_cosine
from .split_features import SplitFeatures


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def pair_classifier_summary(trained: TrainedModel, split: SplitFeatures, seed: int = 0) -> dict:
    """Predicted similarity (sigmoid) on matched and random pairs, and the pair ROC AUC."""
    matched, random = (sigmoid(s) for s in matched_and_random_scores(trained.model, split, seed))
    return {
        "pair ROC AUC": round(auc(matched, random), 3),
        "matched: mean p": round(float(matched.mean()), 3),
        "random: mean p": round(float(random.mean()), 3),
        "all: std p": round(float(np.r_[matched, random].std()), 3),
        "last training loss": round(trained.history[-1]["loss"], 4),
    }


def projection_summary(trained: TrainedModel, split: SplitFeatures, n_pairs: int = 20_000, seed: int = 0) -> dict:
    """How spread out the projected images are (collapse shows as a mean cosine near 1), and how
    close each caption is to its own image versus a random one."""
    model = trained.model
    with torch.no_grad():
        images = model.embed_images(split.image).numpy()
    left, right = different_group_pairs(np.arange(len(images)), n_pairs, seed)
    matched, random = matched_and_random_scores(model, split, seed)
    return {
        "different images: mean cos": round(float(rowwise_cosine(images[left], images[right]).mean()), 3),
        "caption-own image: mean cos": round(float(matched.mean()), 3),
        "caption-random image: mean cos": round(float(random.mean()), 3),
        # CosineEmbeddingLoss (margin 0) gives a random negative a gradient only while its cosine is above 0
        "random negatives still in the loss (cos > 0), %": round(100 * float((random > 0).mean()), 1),
    }


def protocol(sim: np.ndarray, split: SplitFeatures, threshold: float = 0.7, n_boot: int = 1000, seed: int = 0) -> dict:
    """The test protocol on a similarity matrix (captions x images of ``split``): ``strict`` t2i and
    i2t summaries with 95% bootstrap intervals over test images, the ``lenient`` criterion at
    ``threshold`` on the split's raw CNN features, the chance levels of both, and the ``ranks``
    everything was computed from (:func:`protocol_from_ranks`)."""
    image_cos = metrics.cosine_matrix(split.image_cnn)
    ranks = {
        "t2i": metrics.t2i_ranks(sim, split.caption_image),
        "i2t": metrics.i2t_ranks(sim, split.caption_image),
        "lenient": metrics.lenient_ranks(sim, split.caption_image, image_cos, threshold),
    }
    return protocol_from_ranks(ranks, split, threshold, n_boot, seed, image_cos)


def protocol_from_ranks(
    ranks: dict[str, np.ndarray],
    split: SplitFeatures,
    threshold: float = 0.7,
    n_boot: int = 1000,
    seed: int = 0,
    image_cos: np.ndarray | None = None,
) -> dict:
    """:func:`protocol` from the ranks alone (``t2i``, ``i2t``, ``lenient``): what a committed run
    record keeps (:mod:`flickr_retrieval.records`)."""
    if image_cos is None:
        image_cos = metrics.cosine_matrix(split.image_cnn)
    return {
        "strict": metrics.summaries_from_ranks(
            ranks["t2i"], ranks["i2t"], split.caption_image, n_boot=n_boot, seed=seed
        ),
        "lenient": {f"R@{k}": float(100.0 * np.mean(np.asarray(ranks["lenient"]) <= k)) for k in metrics.KS},
        "chance_lenient": metrics.lenient_chance(split.caption_image, image_cos, threshold),
        "chance_strict": {f"R@{k}": 100.0 * k / len(split.image_ids) for k in metrics.KS},
        "threshold": threshold,
        "ranks": ranks,
    }


def strict_and_lenient(
    trained: TrainedModel, split: SplitFeatures, threshold: float = 0.7, n_boot: int = 1000, seed: int = 0
) -> dict:
    """Everything the test protocol reports for one run (:func:`protocol`), with the time it takes
    (``seconds``: similarity matrix plus every metric) and the matrix itself (``similarity``)."""
    start = time.perf_counter()
    sim = similarity(trained.model, split)
    seconds_similarity = time.perf_counter() - start
    out = protocol(sim, split, threshold, n_boot, seed)
    out["seconds"] = {"similarity": seconds_similarity, "similarity_and_metrics": time.perf_counter() - start}
    out["similarity"] = sim
    return out


def lenient_curve(sim: np.ndarray, split: SplitFeatures, thresholds: np.ndarray, k: int = 10) -> dict[str, np.ndarray]:
    """Lenient R@k of a model and of a random ranking over a range of thresholds."""
    image_cos = metrics.cosine_matrix(split.image_cnn)
    model = [metrics.lenient_recall(sim, split.caption_image, image_cos, t, ks=(k,))[f"R@{k}"] for t in thresholds]
    chance = [metrics.lenient_chance(split.caption_image, image_cos, t, ks=(k,))[f"R@{k}"] for t in thresholds]
    return {"model": np.array(model), "chance": np.array(chance)}


def top_k(sim: np.ndarray, rows: list[int], k: int = 5) -> np.ndarray:
    """Column indices of the k best-scored images for each of ``rows`` (best first)."""
    return np.argsort(-sim[rows], axis=1, kind="stable")[:, :k]


def recall_row(result: dict, with_ci: bool = True) -> dict:
    """One table row from :func:`strict_and_lenient`: strict t2i R@K (and intervals), medr, strict
    i2t R@K, lenient R@K and the lenient R@10 a random ranking gets (its chance level)."""
    t2i, i2t = result["strict"]["t2i"], result["strict"]["i2t"]
    row = {}
    for k in ("R@1", "R@5", "R@10"):
        row[k] = round(t2i[k], 2)
        if with_ci:
            lo, hi = t2i["ci95"][k]
            row[f"{k} 95% CI"] = f"{lo:.1f}-{hi:.1f}"
    row["medr"] = t2i["medr"]
    for k in ("R@1", "R@5", "R@10"):
        row[f"i2t {k}"] = round(i2t[k], 2)
    for k in ("R@1", "R@5", "R@10"):
        row[f"lenient {k}"] = round(result["lenient"][k], 2)
    row["lenient R@10 chance"] = round(result["chance_lenient"]["R@10"], 2)
    return row


def table(rows: dict[str, dict]) -> pd.DataFrame:
    return pd.DataFrame.from_dict(rows, orient="index")


#: The report's own results table (section XII): lenient criterion (threshold 0.7 on the backbone's
#: features), 2000 test captions of its own split, as published. Quoted, not re-run.
REPORT_PUBLISHED = {
    "VGG19 (published)": {10: 67.5, 5: 57.5, 1: 29.05},
    "ResNet18 (published)": {10: 38.65, 5: 31.4, 1: 12.4},
}
#: The report's evaluation cost (section XII): about 12 s per caption, over 6 hours for 2000.
REPORT_SECONDS_PER_CAPTION = 12.0


def section_xii_table(results_by_run: dict[str, dict]) -> pd.DataFrame:
    """Rows K = 10, 5, 1; for each run strict and lenient R@K (and the lenient chance level), then
    the report's published values."""
    rows = {}
    for k in (10, 5, 1):
        row = {}
        for run, res in results_by_run.items():
            row[(run, "strict")] = round(res["strict"]["t2i"][f"R@{k}"], 2)
            row[(run, "lenient")] = round(res["lenient"][f"R@{k}"], 2)
            row[(run, "lenient, random ranking")] = round(res["chance_lenient"][f"R@{k}"], 2)
        for name, values in REPORT_PUBLISHED.items():
            row[(name, "lenient")] = values[k]
        rows[f"K = {k}"] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    return table


def mean_distinct_scores(sim: np.ndarray) -> float:
    """Average number of distinct score values per query row (a model whose score ignores the image has few)."""
    return float(np.mean([len(np.unique(row)) for row in sim]))
