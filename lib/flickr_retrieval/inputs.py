"""Model inputs: the cached features of a config, normalised with training statistics, split by split.

Nothing here trains or scores. The containers it fills (:class:`SplitFeatures`, :class:`Normaliser`)
live in :mod:`flickr_retrieval.split_features`, so that the training core (:mod:`models`,
:mod:`sampling`, :mod:`evaluation`, :mod:`train`) takes them without importing feature extraction.
"""

from __future__ import annotations

import numpy as np

from .config import RunConfig
from .data import Flickr8k
from .features import FeatureTable, dataset_caption_features, image_features
from .split_features import Normaliser, SplitFeatures, as_tensor
from .text import clean_caption


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
