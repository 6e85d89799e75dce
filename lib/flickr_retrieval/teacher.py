"""A teacher for distillation: the caption and image embeddings of trained runs over one split,
computed once and cached, so that a student's training step costs one small matrix product more.

A teacher of several runs (an ensemble) stores each member's unit-length embeddings side by side,
scaled by ``1 / sqrt(members)``: the dot product of a caption's and an image's rows is then the mean
of the members' cosine similarities, which is the ensemble's score (:meth:`Experiment.ensemble`).
Each member embeds what its own scoring embeds: the whole image, or the mean of the six views'
features for a run that scores the mean view (``test_view="mean"``).

The cache entry is keyed by what identifies the members' weights without needing them: each
member's config, seed, seed shift and a digest of its dev ranks (a committed record carries them),
and the split's caption and image ids. When the entry is absent the members' weights are obtained
from the experiment (:meth:`Experiment.weights`: the run cache, else trained again).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import cache
from .models import Queries, RetrievalModel
from .records import Run, member_id
from .split_features import as_tensor


def member_key(run: Run) -> dict:
    """What identifies a trained member without its weights."""
    if run.dev_ranks is None:
        raise ValueError(f"run {member_id(run.config)} seed {run.seed} has no dev ranks to identify it by")
    ranks = np.ascontiguousarray(np.asarray(run.dev_ranks, dtype=np.int64))
    return {
        "member": member_id(run.config),
        "seed": run.seed,
        "seed_offset": run.seed_offset,
        "dev_ranks": hashlib.sha256(ranks.tobytes()).hexdigest()[:24],
    }


@torch.no_grad()
def member_embeddings(model: RetrievalModel, text: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A model's unit-length embeddings of caption inputs ``text`` and image inputs ``image`` (eval mode)."""
    was_training = model.training
    model.eval()
    try:
        queries = F.normalize(model.embed_queries(Queries(as_tensor(text))).float(), dim=1)
        images = F.normalize(model.embed_images(as_tensor(image)).float(), dim=1)
    finally:
        model.train(was_training)
    return queries.numpy(), images.numpy()


def embeddings(experiment, runs: Sequence[Run], split: str = "train") -> dict[str, np.ndarray]:
    """``{"text": (captions, d), "image": (images, d)}`` float32 of the runs as one teacher, over
    ``split`` of ``experiment.data`` (rows in the split's caption and image order); cached."""
    runs = list(runs)
    if not runs:
        raise ValueError("a teacher needs at least one run")
    part = experiment.data.split(split)
    parts = {
        "kind": "teacher",
        "split": split,
        "captions": cache.sha256_lines(part.caption_ids),
        "images": cache.sha256_lines(part.image_ids),
        "members": [member_key(r) for r in runs],
    }
    dim = sum(r.config.embed_dim for r in runs)
    expect = {"text": (len(part.caption_ids), dim), "image": (len(part.image_ids), dim)}

    def compute() -> dict[str, np.ndarray]:
        texts, images = [], []
        for run in runs:
            model = experiment.weights(run).model
            space, _ = experiment.features(run.config)
            t, i = member_embeddings(model, space.text(part.caption_ids), space.images(part.image_ids)[0])
            texts.append(t)
            images.append(i)
        scale = np.float32(1.0 / np.sqrt(len(runs)))
        return {
            "text": (np.concatenate(texts, axis=1) * scale).astype(np.float16),
            "image": (np.concatenate(images, axis=1) * scale).astype(np.float16),
        }

    arrays, _, _ = cache.cached("teacher", parts, compute, expect=expect)
    return {name: np.asarray(values, dtype=np.float32) for name, values in arrays.items()}
