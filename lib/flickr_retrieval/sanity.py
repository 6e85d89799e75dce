"""Cosine sanity checks on features (report sections VIII-A and IX-C).

Good features put related items closer than unrelated ones: captions of the same image closer than
captions of different images, an image closer to its mirror image than to other images. These
functions return the two cosine distributions and how well a threshold separates them (ROC AUC).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .helpers import auc, l2_normalise

if TYPE_CHECKING:
    from .text import HeavyPipeline


def _unit(vectors: np.ndarray) -> np.ndarray:
    return l2_normalise(np.asarray(vectors, dtype=np.float64))


def rowwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """cos(a_i, b_i) for each row i."""
    return (_unit(a) * _unit(b)).sum(axis=1)


def same_group_pairs(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (i < j) of rows that share a group (e.g. the captions of one image)."""
    groups = np.asarray(groups)
    order = np.argsort(groups, kind="stable")
    left, right = [], []
    starts = np.flatnonzero(np.r_[True, groups[order][1:] != groups[order][:-1]])
    for start, stop in zip(starts, np.r_[starts[1:], len(order)]):
        members = order[start:stop]
        i, j = np.triu_indices(len(members), k=1)
        left.append(members[i])
        right.append(members[j])
    return np.concatenate(left), np.concatenate(right)


def different_group_pairs(groups: np.ndarray, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random pairs of rows from different groups (seeded)."""
    groups = np.asarray(groups)
    rng = np.random.default_rng(seed)
    left = rng.integers(0, len(groups), size=n)
    right = rng.integers(0, len(groups), size=n)
    clash = groups[left] == groups[right]
    while clash.any():
        right[clash] = rng.integers(0, len(groups), size=int(clash.sum()))
        clash = groups[left] == groups[right]
    return left, right


def group_cosines(
    vectors: np.ndarray, groups: np.ndarray, n_different: int = 50_000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Cosines of all same-group pairs and of ``n_different`` random different-group pairs."""
    same = same_group_pairs(groups)
    different = different_group_pairs(groups, n_different, seed)
    return rowwise_cosine(vectors[same[0]], vectors[same[1]]), rowwise_cosine(
        vectors[different[0]], vectors[different[1]]
    )


def separability(same: np.ndarray, different: np.ndarray) -> float:
    """ROC AUC of the cosine as a same-versus-different score (0.5 = chance, 1 = perfect)."""
    return auc(same, different)


def summary(same: np.ndarray, different: np.ndarray) -> dict[str, float]:
    """Means, spreads and the AUC of two cosine distributions, rounded for display."""
    return {
        "same: mean cos": round(float(np.mean(same)), 3),
        "different: mean cos": round(float(np.mean(different)), 3),
        "different: std": round(float(np.std(different)), 3),
        "ROC AUC": round(separability(same, different), 3),
    }


def text_pipeline_cosines(
    data, split: str = "dev", encoder: str = "minilm", vocab_size: int = 1000, n_different: int = 50_000, seed: int = 0
) -> tuple[dict, HeavyPipeline]:
    """Same-image versus different-image caption cosines under the report's two pipelines.

    Returns ``({name: (same, different)}, fitted heavy pipeline)`` for: the final pipeline through
    ``encoder`` (mean pooling), the heavy pipeline through ``encoder``, and the heavy pipeline's
    TF-IDF vectors. The TF-IDF vocabulary is fitted on the training captions only.
    """
    from .features import caption_features, dataset_caption_features
    from .text import HeavyPipeline

    heavy = HeavyPipeline(vocab_size=vocab_size).fit(data.split("train").captions)
    part = data.split(split)
    final = dataset_caption_features(data, encoder, "mean").rows(part.caption_ids)
    heavy_text = heavy.transform(part.captions)
    heavy_encoded = caption_features(part.caption_ids, heavy_text, encoder, "mean").vectors
    tfidf = heavy.tfidf(part.captions)
    groups = part.caption_image
    panels = {
        f"final pipeline + {encoder}": group_cosines(final, groups, n_different, seed),
        f"heavy pipeline + {encoder}": group_cosines(heavy_encoded, groups, n_different, seed),
        "heavy pipeline, TF-IDF vectors": group_cosines(tfidf, groups, n_different, seed),
    }
    return panels, heavy


def image_cosines(
    features: np.ndarray, mirrored: np.ndarray, n_different: int = 50_000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine of each image with its mirror image, and of ``n_different`` random pairs of different images."""
    left, right = different_group_pairs(np.arange(len(features)), n_different, seed)
    return rowwise_cosine(features, mirrored), rowwise_cosine(features[left], features[right])


def sentence_similarity(encoder: str, pairs: list[tuple[str, str, str]], pooling: str = "mean"):
    """Cosine of hand-written sentence pairs, each labelled (e.g. paraphrase / related / unrelated)."""
    import pandas as pd

    from .text_encoders import encode_texts, load_text_encoder

    enc = load_text_encoder(encoder)
    a = encode_texts(enc, [p[0] for p in pairs])[pooling]
    b = encode_texts(enc, [p[1] for p in pairs])[pooling]
    return pd.DataFrame(
        {
            "sentence A": [p[0] for p in pairs],
            "sentence B": [p[1] for p in pairs],
            "relation": [p[2] for p in pairs],
            "cosine": rowwise_cosine(a, b).round(3),
        }
    )


def ordered_by_relation(table, order: tuple[str, ...] = ("paraphrase", "related", "unrelated")) -> bool:
    """True when, within each group of consecutive rows labelled ``order``, the cosines decrease."""
    cos = table["cosine"].to_numpy().reshape(-1, len(order))
    if not (table["relation"].to_numpy().reshape(-1, len(order)) == np.array(order)).all():
        raise ValueError(f"rows must come in groups labelled {order}")
    return bool((np.diff(cos, axis=1) < 0).all())
