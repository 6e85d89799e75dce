"""Scoring a trained model on a split: the similarity matrix, and what is computed from it.

The metrics themselves are pure functions of the matrix (:mod:`flickr_retrieval.metrics`).
"""

from __future__ import annotations

import numpy as np
import torch

from .helpers import auc
from .metrics import selection_score, summarize_ranks, t2i_ranks
from .models import RetrievalModel
from .sampling import random_negatives
from .split_features import SplitFeatures


def similarity(model: RetrievalModel, split: SplitFeatures) -> np.ndarray:
    """(Q, N) float32 scores of every caption of the split against every image of the split."""
    return model.score_matrix(split.queries, split.image).float().numpy()


def matched_and_random_scores(
    model: RetrievalModel, split: SplitFeatures, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The model's score of each caption with its own image, and with one random other image.

    For the pair classifier the scores are logits (``sigmoid`` gives its predicted similarity).
    """
    rng = np.random.default_rng(seed)
    negatives = random_negatives(split.caption_image, len(split.image_ids), rng)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            matched = model.pair_scores(split.queries, split.image[split.caption_image])
            random = model.pair_scores(split.queries, split.image[negatives])
    finally:
        model.train(was_training)
    return matched.numpy(), random.numpy()


def pair_auc(model: RetrievalModel, split: SplitFeatures, seed: int = 0) -> float:
    """ROC AUC of the model's score on each caption's own image versus one random other image."""
    matched, random = matched_and_random_scores(model, split, seed)
    return auc(matched, random)


def dev_scores(model: RetrievalModel, dev: SplitFeatures, criterion: str, seed: int = 0) -> tuple[dict, float]:
    """What is logged on dev after an epoch (``dev_*`` values) and the model-selection score.

    ``criterion``: ``rsum`` (t2i R@1 + R@5 + R@10 of the full dev matrix) or ``pair_auc`` (the pair
    classifier's, whose full score matrix is costly).
    """
    if criterion == "pair_auc":
        auc = pair_auc(model, dev, seed=seed)
        return {"dev_auc": auc}, auc
    summary = summarize_ranks(t2i_ranks(similarity(model, dev), dev.caption_image))
    return {f"dev_{k}": v for k, v in summary.items()}, selection_score(summary)
