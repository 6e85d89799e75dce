"""Model inputs: the cached features of a config, normalised with training statistics, split by split.

Nothing here trains or scores. The containers it fills (:class:`SplitFeatures`, :class:`Normaliser`)
live in :mod:`flickr_retrieval.split_features`, so that the training core (:mod:`models`,
:mod:`sampling`, :mod:`evaluation`, :mod:`train`) takes them without importing feature extraction.
"""

from __future__ import annotations

import numpy as np

from .bow import NAME as BOW
from .bow import bow_table
from .config import RunConfig
from .data import Flickr8k
from .features import FeatureTable, dataset_caption_features, image_features, view_features
from .images import VIEW_SETS
from .split_features import Normaliser, SplitFeatures, as_tensor
from .text import clean_caption


class FeatureSpace:
    """The model inputs a config defines, for any images or captions of Flickr8k.

    Loads the cached features of the config's text encoder (pooling) and image backbone(s), and fits
    the ``feature_norm`` on the training split only; several backbones are normalised one by one,
    then concatenated. Tables are loaded when first needed, and normalisers given by a checkpoint
    (``text_norm``, ``image_norms``) are used as they are, so that search needs the image features
    only.

    Feature augmentation (``config.image_views`` other than ``full``): the training split also
    carries every view's inputs (``SplitFeatures.image_views``, each normalised with the whole
    image's training statistics), and with ``config.test_view == "mean"`` every other image's
    inputs are made from the mean of its views' CNN features.
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
        self._view_tables: dict[str, list[FeatureTable]] = {}
        self._head_inputs: list | None = None

    @property
    def text_table(self) -> FeatureTable:
        """The caption features of the config's sentence encoder, or of several concatenated (each
        encoder's vectors side by side; the normalisation then applies to the concatenation).
        ``bow``: a bag of words of the training split's vocabulary (:mod:`flickr_retrieval.bow`)."""
        if self._text_table is None:
            tables = [
                bow_table(self.data) if e == BOW else dataset_caption_features(self.data, e, self.config.text_pooling)
                for e in self.config.text_encoders
            ]
            self._text_table = tables[0] if len(tables) == 1 else concatenated(tables)
        return self._text_table

    @property
    def image_tables(self) -> list[FeatureTable]:
        if self._image_tables is None:
            self._image_tables = [
                image_features(self.data, b, pretrained=self.config.pretrained_images) for b in self.config.backbones
            ]
        return self._image_tables

    @property
    def views(self) -> tuple[str, ...]:
        """The views of the config's ``image_views`` (``("full",)`` without augmentation)."""
        return VIEW_SETS[self.config.image_views]

    def view_tables(self, view: str) -> list[FeatureTable]:
        """One table per backbone of one view (``full``: :attr:`image_tables`)."""
        if view == "full":
            return self.image_tables
        if view not in self._view_tables:
            self._view_tables[view] = [view_features(self.data, b, view) for b in self.config.backbones]
        return self._view_tables[view]

    def view_inputs(self, image_ids: list[str]) -> np.ndarray:
        """(views, len(image_ids), d) model inputs of every view of the config's ``image_views``."""
        return np.stack([self.image_inputs([t.rows(image_ids) for t in self.view_tables(v)]) for v in self.views])

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

    @property
    def head_inputs(self) -> list:
        """Per backbone, the cached activations entering its last layer, and that layer
        (:func:`flickr_retrieval.head_features.head_inputs`): for ``tune_image_heads``."""
        if self._head_inputs is None:
            from .head_features import head_inputs

            self._head_inputs = [head_inputs(self.data, b) for b in self.config.backbones]
        return self._head_inputs

    def images(self, image_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(model inputs, raw CNN features of the whole image) of ``image_ids``; the inputs are those
        of the mean view when the config scores it (``test_view="mean"``), and the activations
        entering each backbone's last layer when the config trains it (``tune_image_heads``)."""
        raw = [t.rows(image_ids) for t in self.image_tables]
        if self.config.tune_image_heads:
            inputs = np.concatenate([h.rows(image_ids) for h in self.head_inputs], axis=1, dtype=np.float32)
            return inputs, np.concatenate(raw, axis=1)
        if self.config.test_view == "mean":
            per_view = [[t.rows(image_ids) for t in self.view_tables(v)] for v in self.views]
            mean = [np.mean([view[b] for view in per_view], axis=0) for b in range(len(raw))]
            return self.image_inputs(mean), np.concatenate(raw, axis=1)
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
        """The inputs of one split: training sees the whole image (and its views, with augmentation),
        dev and test what the config scores (:meth:`images`)."""
        part = self.data.split(name)
        views = None
        if self.config.tune_image_heads:
            image, raw = self.images(part.image_ids)
        elif name == "train":
            raw = [t.rows(part.image_ids) for t in self.image_tables]
            image, raw = self.image_inputs(raw), np.concatenate(raw, axis=1)
            if len(self.views) > 1:
                views = as_tensor(self.view_inputs(part.image_ids))
        else:
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
            views,
            [h.head for h in self.head_inputs] if self.config.tune_image_heads else None,
        )


def concatenated(tables: list[FeatureTable]) -> FeatureTable:
    """Tables of the same ids, their vectors side by side."""
    if any(t.ids != tables[0].ids for t in tables):
        raise ValueError("feature tables to concatenate must list the same ids in the same order")
    return FeatureTable(
        tables[0].ids,
        np.concatenate([t.vectors for t in tables], axis=1),
        {"concatenated": [t.source for t in tables]},
        None,
        all(t.from_cache for t in tables),
        sum(t.seconds for t in tables),
    )


def load_split_features(
    config: RunConfig, data: Flickr8k, splits: tuple[str, ...] = ("train", "dev", "test")
) -> dict[str, SplitFeatures]:
    """The :class:`SplitFeatures` of each split, normalised as the config says (training statistics)."""
    space = FeatureSpace(config, data)
    return {name: space.split(name) for name in splits}
