"""What a training epoch visits: batches of caption positions, and the negatives of each caption.

Every draw takes an explicit ``numpy.random.Generator``; nothing reads global random state.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .config import RunConfig
from .losses import loss_spec
from .metrics import cosine_matrix
from .models import Queries
from .split_features import SplitFeatures


def random_negatives(caption_image: np.ndarray, n_images: int, rng: np.random.Generator) -> np.ndarray:
    """One uniformly random image per caption, never the caption's own (redrawn until it differs)."""
    negatives = rng.integers(0, n_images, size=len(caption_image))
    clash = negatives == caption_image
    while clash.any():
        negatives[clash] = rng.integers(0, n_images, size=int(clash.sum()))
        clash = negatives == caption_image
    return negatives


def most_different_images(image_cnn: np.ndarray) -> np.ndarray:
    """For each image, the image whose CNN features have the lowest cosine with it (report, XIII)."""
    return cosine_matrix(image_cnn).argmin(axis=1)


def epoch_batches(
    caption_image: np.ndarray, captions_per_image: int, batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """One epoch's batches of caption positions: ``captions_per_image`` captions of every training
    image, drawn without replacement, in a random order.

    With 1, an epoch visits each image once with a random one of its captions (6000 pairs on
    Flickr8k): five times cheaper than visiting all 30000 captions, and every caption still comes
    round over the epochs.
    """
    caption_image = np.asarray(caption_image)
    order = rng.permutation(len(caption_image))  # a random order of all captions...
    rank = np.zeros(len(order), dtype=np.int64)  # ...and each caption's place among its image's captions
    by_image = order[np.argsort(caption_image[order], kind="stable")]
    starts = np.r_[0, np.flatnonzero(np.diff(caption_image[by_image])) + 1]
    sizes = np.diff(np.r_[starts, len(by_image)])
    rank[by_image] = np.arange(len(by_image)) - np.repeat(starts, sizes)
    chosen = order[rank[order] < captions_per_image]
    return [chosen[i : i + batch_size] for i in range(0, len(chosen), batch_size)]


def length_bucketed(batches: list[np.ndarray], lengths: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Re-cut an epoch's captions into batches of similar length, in a random batch order."""
    chosen = np.concatenate(batches)
    size = max(len(b) for b in batches)
    jitter = rng.random(len(chosen))  # random order among equal lengths
    by_length = chosen[np.lexsort((jitter, lengths[chosen]))]
    cut = [by_length[i : i + size] for i in range(0, len(by_length), size)]
    return [cut[i] for i in rng.permutation(len(cut))]


def in_batch_negatives(own: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each caption of a batch, the position of another caption of the batch with a different
    image: its image is the caption's random negative.

    A shuffled batch's images are a uniform sample of the training images, so this draws a uniformly
    random non-matching training image, as the report did, without embedding a second image per caption.
    """
    own = np.asarray(own)
    if len(np.unique(own)) < 2:
        raise ValueError("a batch needs captions of at least two images to draw negatives")
    pick = rng.integers(0, len(own), size=len(own))
    clash = own[pick] == own
    while clash.any():
        pick[clash] = rng.integers(0, len(own), size=int(clash.sum()))
        clash = own[pick] == own
    return pick


@dataclass
class Batch:
    """One training batch.

    ``queries``: its captions; ``own``: (B,) index of each caption's image in ``images``;
    ``images``: the training split's image inputs; ``negatives``: (B,) index of a fixed negative
    image per caption (pair classifier, most-different), or None; ``in_batch``: (B,) position in the
    batch of another caption whose image is the caption's random negative, or None; ``teacher``:
    (B, B) a distillation teacher's scores of the batch's captions against their images, or None.
    """

    queries: Queries
    own: torch.Tensor
    images: torch.Tensor
    negatives: torch.Tensor | None = None
    in_batch: torch.Tensor | None = None
    teacher: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.own)


class BatchSampler:
    """The batches of one config over the training split, epoch after epoch.

    Negatives by config: ``random`` draws one random non-matching image per caption, every epoch
    (for the pair classifier over all training images; for a cosine loss from the batch's other
    images); ``random_once`` draws it once for the whole training (the report's pair data set);
    ``most_different`` fixes each caption's negative once; the in-batch losses need none.
    Fine-tuned text encoders get batches of captions of similar length (less padding).
    """

    def __init__(self, config: RunConfig, train: SplitFeatures, seed: int | None = None):
        """``seed``: of the draws made once for the whole training (``random_once``); default the
        config's seed."""
        self.config, self.train = config, train
        if config.distill_weight > 0 and (train.teacher_text is None or train.teacher_image is None):
            raise ValueError(
                f"{config.name} learns from teacher {config.distill_teacher!r}: the training split has no teacher embeddings"
            )
        if train.teacher_text is not None and (
            len(train.teacher_text) != len(train.caption_image) or len(train.teacher_image) != len(train.image_ids)
        ):
            raise ValueError("the teacher's embeddings do not cover the training split's captions and images")
        seed = config.seed if seed is None else seed
        self.fixed = None
        if config.negatives == "most_different":
            self.fixed = most_different_images(train.image_cnn)[train.caption_image]
        elif config.negatives == "random_once":  # the report's pair data set: one random image per caption, drawn once
            self.fixed = random_negatives(train.caption_image, len(train.image_ids), np.random.default_rng([seed, 1]))
        self.lengths = np.array([len(s.split()) for s in train.sentences]) if config.finetune_text else None
        self.queries = Queries(
            None if config.finetune_text else train.text, train.sentences if config.finetune_text else None
        )

    def batches_per_epoch(self) -> int:
        """How many batches :meth:`epoch` yields (for a learning-rate schedule)."""
        n_images = len(np.unique(self.train.caption_image))
        per_image = np.bincount(self.train.caption_image)
        n_captions = int(np.minimum(per_image[per_image > 0], self.config.captions_per_image).sum()) if n_images else 0
        return -(-n_captions // self.config.batch_size)

    def epoch(self, rng: np.random.Generator) -> Iterator[Batch]:
        config, train = self.config, self.train
        negatives = self.fixed
        inputs = loss_spec(config.loss).inputs
        if inputs == "pairs" and config.negatives == "random":  # redrawn every epoch, over all training images
            negatives = random_negatives(train.caption_image, len(train.image_ids), rng)
        batches = epoch_batches(train.caption_image, config.captions_per_image, config.batch_size, rng)
        if self.lengths is not None:
            batches = length_bucketed(batches, self.lengths, rng)
        draw_in_batch = inputs == "one_negative" and config.negatives == "random"  # from the batch's other images
        images = train.image
        if train.image_views is not None:  # feature augmentation: one view of each image for this epoch
            n_views, n_images = train.image_views.shape[:2]
            view = torch.from_numpy(rng.integers(0, n_views, size=n_images))
            images = train.image_views[view, torch.arange(n_images)]
        teach = config.distill_weight > 0
        for idx in batches:
            own = train.caption_image[idx]
            yield Batch(
                self.queries[idx],
                torch.from_numpy(own),
                images,
                None if negatives is None else torch.from_numpy(negatives[idx]),
                torch.from_numpy(in_batch_negatives(own, rng)) if draw_in_batch else None,
                train.teacher_text[idx] @ train.teacher_image[own].T if teach else None,
            )
