"""Model inputs: the cached features of a config, normalised with training statistics, split by split.

Nothing here trains or scores; :mod:`models`, :mod:`sampling` and :mod:`evaluation` take these
containers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .config import RunConfig
from .data import Flickr8k
from .features import FeatureTable, dataset_caption_features, image_features
from .text import clean_caption


class Queries:
    """Caption queries in the forms a model may need: feature vectors of a frozen text encoder
    (``vectors``, (Q, d_text)) and the sentences themselves (for a model that encodes text itself).
    A model takes what it needs; callers never ask which kind of model they hold. ``encode``
    (sentences -> vectors) computes the vectors only if a model asks for them.
    """

    def __init__(self, vectors: torch.Tensor | None = None, sentences: list[str] | None = None, encode=None):
        self._vectors, self.sentences, self._encode = vectors, sentences, encode

    @property
    def vectors(self) -> torch.Tensor | None:
        if self._vectors is None and self._encode is not None and self.sentences is not None:
            self._vectors = self._encode(self.sentences)
        return self._vectors

    def __len__(self) -> int:
        return len(self._vectors) if self._vectors is not None else len(self.sentences or [])

    def __getitem__(self, idx) -> Queries:
        idx = np.asarray(idx)
        return Queries(
            None if self._vectors is None else self._vectors[torch.from_numpy(idx)],
            None if self.sentences is None else [self.sentences[i] for i in idx],
            self._encode,
        )


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
    sentences : list[str]
        the captions after the final text pipeline (for models that encode text themselves).
    """

    name: str
    image_ids: list[str]
    caption_ids: list[str]
    text: torch.Tensor
    image: torch.Tensor
    caption_image: np.ndarray
    image_cnn: np.ndarray = field(repr=False)
    sentences: list[str] = field(default_factory=list, repr=False)

    @property
    def queries(self) -> Queries:
        return Queries(self.text, self.sentences or None)


@dataclass
class Normaliser:
    """A per-feature-set normalisation fitted on the training split: ``none``, ``l2`` (each vector to
    unit length) or ``standardize`` (training mean and standard deviation per dimension)."""

    how: str = "none"
    mean: np.ndarray | None = None
    std: np.ndarray | None = None

    def fit(self, train: np.ndarray) -> Normaliser:
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

    def to_state(self) -> dict:
        """A checkpoint-safe form (strings and tensors only)."""
        state = {"how": self.how}
        if self.mean is not None:
            state["mean"] = torch.as_tensor(np.asarray(self.mean, dtype=np.float64))
            state["std"] = torch.as_tensor(np.asarray(self.std, dtype=np.float64))
        return state

    @classmethod
    def from_state(cls, state: dict, dim: int | None = None) -> Normaliser:
        norm = cls(str(state["how"]))
        if "mean" in state:
            norm.mean, norm.std = state["mean"].numpy(), state["std"].numpy()
            if dim is not None and norm.mean.shape != (dim,):
                raise ValueError(f"normaliser statistics have shape {norm.mean.shape}, expected ({dim},)")
        elif norm.how == "standardize":
            raise ValueError("a 'standardize' normaliser without its statistics")
        return norm


def as_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


class FeatureSpace:
    """The model inputs a config defines, for any images or captions of Flickr8k.

    Loads the cached features of the config's text encoder (pooling) and image backbone(s), and fits
    the ``feature_norm`` on the training split only; several backbones are normalised one by one,
    then concatenated. Tables are loaded when first needed, and normalisers given by a checkpoint
    (``text_norm``, ``image_norms``) are used as they are, so that search needs the image features
    only.
    """

    def __init__(
        self,
        config: RunConfig,
        data: Flickr8k,
        text_norm: Normaliser | None = None,
        image_norms: list[Normaliser] | None = None,
    ):
        self.config, self.data = config, data
        self._text_table: FeatureTable | None = None
        self._image_tables: list[FeatureTable] | None = None
        self._text_norm, self._image_norms = text_norm, image_norms

    @property
    def text_table(self) -> FeatureTable:
        if self._text_table is None:
            self._text_table = dataset_caption_features(self.data, self.config.text_encoder, self.config.text_pooling)
        return self._text_table

    @property
    def image_tables(self) -> list[FeatureTable]:
        if self._image_tables is None:
            self._image_tables = [
                image_features(self.data, b, pretrained=self.config.pretrained_images) for b in self.config.backbones
            ]
        return self._image_tables

    @property
    def text_norm(self) -> Normaliser:
        if self._text_norm is None:
            train = self.data.split("train")
            self._text_norm = Normaliser(self.config.feature_norm).fit(self.text_table.rows(train.caption_ids))
        return self._text_norm

    @property
    def image_norms(self) -> list[Normaliser]:
        if self._image_norms is None:
            train = self.data.split("train")
            self._image_norms = [
                Normaliser(self.config.feature_norm).fit(t.rows(train.image_ids)) for t in self.image_tables
            ]
        return self._image_norms

    def text(self, caption_ids: list[str]) -> np.ndarray:
        return self.text_norm(self.text_table.rows(caption_ids))

    def images(self, image_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(model inputs, raw CNN features) of ``image_ids``."""
        raw = [t.rows(image_ids) for t in self.image_tables]
        return self.image_inputs(raw), np.concatenate(raw, axis=1)

    def image_inputs(self, raw: list[np.ndarray]) -> np.ndarray:
        """Model inputs from raw backbone features (one array per backbone of the config, in order):
        each normalised with its training statistics, then concatenated."""
        if len(raw) != len(self.config.backbones):
            raise ValueError(
                f"{len(raw)} feature arrays for {len(self.config.backbones)} backbones {self.config.backbones}"
            )
        return np.concatenate([norm(r) for norm, r in zip(self.image_norms, raw)], axis=1)

    def split(self, name: str) -> SplitFeatures:
        part = self.data.split(name)
        image, raw = self.images(part.image_ids)
        return SplitFeatures(
            name,
            part.image_ids,
            part.caption_ids,
            as_tensor(self.text(part.caption_ids)),
            as_tensor(image),
            part.caption_image,
            raw,
            [clean_caption(c) for c in part.captions],
        )


def load_split_features(
    config: RunConfig, data: Flickr8k, splits: tuple[str, ...] = ("train", "dev", "test")
) -> dict[str, SplitFeatures]:
    """The :class:`SplitFeatures` of each split, normalised as the config says (training statistics)."""
    space = FeatureSpace(config, data)
    return {name: space.split(name) for name in splits}
