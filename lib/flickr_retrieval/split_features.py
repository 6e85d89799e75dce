"""What the training core takes: the feature tensors of one split (:class:`SplitFeatures`), the
normaliser they were made with (:class:`Normaliser`). Filled by :mod:`flickr_retrieval.inputs`;
imports nothing of feature extraction."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .helpers import l2_normalise
from .models import Queries


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
            return l2_normalise(x)
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
