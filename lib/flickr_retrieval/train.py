"""Training on cached features: data preparation, negatives, the loop, early stopping, checkpoints.

Everything a number depends on is seeded from ``RunConfig.seed``: the model's initialisation, the
order of the captions, the random negatives and dropout.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from . import losses
from .config import RunConfig
from .data import Flickr8k
from .features import dataset_caption_features, image_features, progress
from .text import clean_caption
from .metrics import cosine_matrix, retrieval_metrics, rsum, t2i_ranks, summarize_ranks
from .models import PairClassifier, build_model, pairwise_similarity, rowwise_similarity, score_matrix


@dataclass
class SplitFeatures:
    """The model inputs of one split.

    Attributes
    ----------
    text : torch.Tensor
        (Q, d_text) caption features, normalised as the config says.
    image : torch.Tensor
        (N, d_image) image features, normalised as the config says.
    caption_image : np.ndarray
        (Q,) index of each caption's image.
    image_cnn : np.ndarray
        (N, d) the raw CNN features (for the lenient criterion and "most different" negatives).
    """

    name: str
    image_ids: list[str]
    caption_ids: list[str]
    text: torch.Tensor
    image: torch.Tensor
    caption_image: np.ndarray
    image_cnn: np.ndarray = field(repr=False)
    sentences: list[str] = field(default_factory=list, repr=False)  # final-pipeline captions (for text-tuned models)


@dataclass
class Normaliser:
    """A per-feature-set normalisation fitted on the training split: ``none``, ``l2`` (each vector to
    unit length) or ``standardize`` (training mean and standard deviation per dimension)."""

    how: str = "none"
    mean: np.ndarray | None = None
    std: np.ndarray | None = None

    def fit(self, train: np.ndarray) -> "Normaliser":
        if self.how == "standardize":
            self.mean, self.std = train.mean(axis=0), train.std(axis=0) + 1e-6
        return self

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.how == "l2":
            return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        if self.how == "standardize":
            if self.mean is None:
                raise RuntimeError("fit() the normaliser on training features first")
            return (x - self.mean) / self.std
        return x


class FeatureSpace:
    """The model inputs a config defines, for any images or captions of Flickr8k.

    Loads the cached features of the config's text encoder (pooling) and image backbone(s), and fits
    the ``feature_norm`` on the training split only; several backbones are normalised one by one,
    then concatenated.
    """

    def __init__(self, config: RunConfig, data: Flickr8k):
        self.config, self.data = config, data
        train = data.split("train")
        self.text_table = dataset_caption_features(data, config.text_encoder, config.text_pooling)
        self.text_norm = Normaliser(config.feature_norm).fit(self.text_table.rows(train.caption_ids))
        self.image_tables = [image_features(data, b, pretrained=config.pretrained_images) for b in config.backbones]
        self.image_norms = [Normaliser(config.feature_norm).fit(t.rows(train.image_ids)) for t in self.image_tables]

    def text(self, caption_ids: list[str]) -> np.ndarray:
        return self.text_norm(self.text_table.rows(caption_ids))

    def images(self, image_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(model inputs, raw CNN features) of ``image_ids``."""
        raw = [t.rows(image_ids) for t in self.image_tables]
        inputs = np.concatenate([norm(r) for norm, r in zip(self.image_norms, raw)], axis=1)
        return inputs, np.concatenate(raw, axis=1)

    def split(self, name: str) -> SplitFeatures:
        part = self.data.split(name)
        image, raw = self.images(part.image_ids)
        as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
        return SplitFeatures(
            name, part.image_ids, part.caption_ids, as_tensor(self.text(part.caption_ids)), as_tensor(image),
            part.caption_image, raw, [clean_caption(c) for c in part.captions],
        )


def load_split_features(config: RunConfig, data: Flickr8k, splits: tuple[str, ...] = ("train", "dev", "test")) -> dict[str, SplitFeatures]:
    """The :class:`SplitFeatures` of each split, normalised as the config says (training statistics)."""
    space = FeatureSpace(config, data)
    return {name: space.split(name) for name in splits}


# --------------------------------------------------------------------------- negatives


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


# --------------------------------------------------------------------------- evaluation


def similarity(model: nn.Module, split: SplitFeatures) -> np.ndarray:
    """(Q, N) float32 scores of every caption of the split against every image of the split."""
    if hasattr(model, "embed_sentences"):  # the text encoder is part of the model: start from the sentences
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                texts = model.embed_sentences(split.sentences)
                return pairwise_similarity(texts, model.embed_images(split.image), model.similarity).float().numpy()
        finally:
            model.train(was_training)
    return score_matrix(model, split.text, split.image).float().numpy()


def evaluate(model: nn.Module, split: SplitFeatures, n_boot: int = 1000, seed: int = 0) -> dict:
    """Strict protocol (t2i and i2t) with bootstrap intervals, see :func:`metrics.retrieval_metrics`."""
    return retrieval_metrics(similarity(model, split), split.caption_image, n_boot=n_boot, seed=seed)


def matched_and_random_scores(model: nn.Module, split: SplitFeatures, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The model's score of each caption with its own image, and with one random other image.

    For the pair classifier the scores are logits (``sigmoid`` gives its predicted similarity).
    """
    rng = np.random.default_rng(seed)
    negatives = random_negatives(split.caption_image, len(split.image_ids), rng)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        matched = _pair_scores(model, split.text, split.image[split.caption_image])
        random = _pair_scores(model, split.text, split.image[negatives])
    model.train(was_training)
    return matched.numpy(), random.numpy()


def pair_auc(model: nn.Module, split: SplitFeatures, seed: int = 0) -> float:
    """ROC AUC of the model's score on each caption's own image versus one random other image."""
    matched, random = matched_and_random_scores(model, split, seed)
    return float(roc_auc_score(np.r_[np.ones(len(matched)), np.zeros(len(random))], np.r_[matched, random]))


def _pair_scores(model: nn.Module, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    if isinstance(model, PairClassifier):
        return model(text, image)
    return rowwise_similarity(model.embed_texts(text), model.embed_images(image), model.similarity)


# --------------------------------------------------------------------------- training


@dataclass
class TrainedModel:
    """A trained model with its config and per-epoch history."""

    config: RunConfig
    model: nn.Module
    history: list[dict]
    best_epoch: int
    seconds: float
    temperature: float | None = None

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "config": self.config.to_dict(),
                "state_dict": self.model.state_dict(),
                "dims": self.dims,
                "history": self.history,
                "best_epoch": self.best_epoch,
                "seconds": self.seconds,
                "temperature": self.temperature,
            },
            path,
        )

    @property
    def dims(self) -> tuple[int, int]:
        if isinstance(self.model, PairClassifier):
            return self.model.text_dim, self.model.hidden.in_features - self.model.text_dim
        if hasattr(self.model, "head"):  # text-tuned
            return self.model.head.text_branch[0].in_features, self.model.head.image_branch[0].in_features
        first = self.model.project if hasattr(self.model, "project") else None
        if first is not None:
            return first.out_features, first.in_features
        return self.model.text_branch[0].in_features, self.model.image_branch[0].in_features

    @classmethod
    def load(cls, path: str | Path) -> "TrainedModel":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint at {path}: run the notebook that trains it first (see README)")
        state = torch.load(path, map_location="cpu", weights_only=False)
        config = RunConfig.from_dict(state["config"])
        model = build_model(config, *state["dims"])
        model.load_state_dict(state["state_dict"])
        model.eval()
        return cls(config, model, state["history"], state["best_epoch"], state["seconds"], state.get("temperature"))


def epoch_batches(caption_image: np.ndarray, captions_per_image: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
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


def _batch_loss(config, model, train, idx, fixed_negatives, log_scale, rng) -> torch.Tensor:
    """The loss of one batch of captions ``idx`` (positions in the training split)."""
    text = train.text[idx]
    own_np = train.caption_image[idx]
    own = torch.from_numpy(own_np)
    if config.model == "pair_classifier":
        if config.negatives == "none":  # positives only, as the report first did
            return losses.pair_loss(model(text, train.image[own]), torch.ones(len(idx)), config.loss)
        neg = torch.from_numpy(fixed_negatives[idx])
        logits = torch.cat([model(text, train.image[own]), model(text, train.image[neg])])
        labels = torch.cat([torch.ones(len(idx)), torch.zeros(len(idx))])
        return losses.pair_loss(logits, labels, config.loss)
    t = model.embed_texts(text)
    images, inverse = torch.unique(own, return_inverse=True)
    own_emb = model.embed_images(train.image[images])[inverse]  # each image embedded once per batch
    if config.loss == "cosine_embedding":
        if config.negatives == "random":
            neg_emb = own_emb[torch.from_numpy(in_batch_negatives(own_np, rng))]
        else:  # a fixed image per caption (most_different)
            neg_emb = model.embed_images(train.image[torch.from_numpy(fixed_negatives[idx])])
        negative_label = -1.0 if config.label_scheme == "pm1" else 0.0
        target = torch.cat([torch.ones(len(idx)), torch.full((len(idx),), negative_label)])
        return losses.cosine_embedding(torch.cat([t, t]), torch.cat([own_emb, neg_emb]), target, config.margin)
    scores = pairwise_similarity(t, own_emb, model.similarity)
    positive = losses.same_image_mask(own)
    if config.loss == "triplet":
        return losses.triplet(scores, positive, config.margin, max_violation=config.negatives == "hardest_in_batch")
    return losses.info_nce(scores, positive, torch.exp(-log_scale))


def train(config: RunConfig, features: dict[str, SplitFeatures], show_progress: bool = True) -> TrainedModel:
    """Train ``config`` on ``features["train"]``; select epochs on ``features["dev"]``.

    Dev is scored after every epoch: t2i R@1+R@5+R@10 for embedding models, pair ROC AUC for the
    pair classifier (a full score matrix is costly there). With ``early_stopping`` the best epoch's
    weights are restored and training stops after ``patience`` epochs without improvement.
    """
    t0 = time.perf_counter()
    train_split, dev = features["train"], features["dev"]
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = build_model(config, train_split.text.shape[1], train_split.image.shape[1])
    params = list(model.parameters())
    log_scale = None
    if config.loss == "infonce":  # CLIP's learned temperature, as log(1 / T)
        log_scale = nn.Parameter(torch.tensor(math.log(1.0 / config.temperature)), requires_grad=config.learn_temperature)
        params.append(log_scale)
    optimizer = torch.optim.Adam(params, lr=config.lr)
    fixed_negatives = most_different_images(train_split.image_cnn)[train_split.caption_image] if config.negatives == "most_different" else None

    history, best_score, best_state, best_epoch, stale = [], -math.inf, None, 0, 0
    epochs = range(1, config.max_epochs + 1)
    for epoch in progress(epochs, f"{config.name} epochs") if show_progress else epochs:
        epoch_start = time.perf_counter()
        model.train()
        if config.model == "pair_classifier" and config.negatives == "random":  # redrawn every epoch
            fixed_negatives = random_negatives(train_split.caption_image, len(train_split.image_ids), rng)
        total, count = 0.0, 0
        for idx in epoch_batches(train_split.caption_image, config.captions_per_image, config.batch_size, rng):
            loss = _batch_loss(config, model, train_split, idx, fixed_negatives, log_scale, rng)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if log_scale is not None:
                with torch.no_grad():
                    log_scale.clamp_(0.0, math.log(100.0))  # CLIP clips the scale at 100
            total += loss.item() * len(idx)
            count += len(idx)
        row = {"epoch": epoch, "loss": total / count, "seconds": time.perf_counter() - epoch_start}
        if isinstance(model, PairClassifier):
            row["dev_auc"] = pair_auc(model, dev, seed=config.seed)
            score = row["dev_auc"]
        else:
            row.update({f"dev_{k}": v for k, v in summarize_ranks(t2i_ranks(similarity(model, dev), dev.caption_image)).items()})
            score = row["dev_R@1"] + row["dev_R@5"] + row["dev_R@10"]
        history.append(row)
        if score > best_score:
            best_score, best_epoch, stale = score, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
        if config.early_stopping and stale >= config.patience:
            break
    if config.early_stopping:
        model.load_state_dict(best_state)
    else:
        best_epoch = history[-1]["epoch"]
    model.eval()
    temperature = float(torch.exp(-log_scale.detach())) if log_scale is not None else None
    return TrainedModel(config, model, history, best_epoch, time.perf_counter() - t0, temperature)


__all__ = [
    "FeatureSpace",
    "Normaliser",
    "SplitFeatures",
    "TrainedModel",
    "evaluate",
    "load_split_features",
    "most_different_images",
    "matched_and_random_scores",
    "pair_auc",
    "random_negatives",
    "rsum",
    "similarity",
    "train",
]
