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
class ImageHead:
    """A backbone's last layer, BatchNorm folded in: at each of ``positions`` positions
    ``relu6(weight @ a + bias)``, then the mean over positions (the backbone's pooled feature).
    ``weight`` (out, C) and ``bias`` (out,) float32: the pretrained values a trained head starts from."""

    weight: np.ndarray
    bias: np.ndarray
    positions: int

    @property
    def shape(self) -> tuple[int, int, int]:
        """(positions, input channels, output features)."""
        return (int(self.positions), int(self.weight.shape[1]), int(self.weight.shape[0]))


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
    image_views : torch.Tensor or None
        (V, N, d_image) the inputs of every augmented view (view 0: the whole image, ``image``),
        when the run trains on views; training draws one per image per epoch.
    image_heads : list[ImageHead] or None
        when the run trains the last layer of each image tower: that layer of each backbone, pretrained;
        ``image`` then holds the activations entering them (each backbone's positions x channels,
        flattened, concatenated).
    teacher_text, teacher_image : torch.Tensor or None
        (Q, d_t) and (N, d_t): a distillation teacher's embeddings of this split's captions and images,
        whose dot products are the teacher's scores (:mod:`flickr_retrieval.teacher`), when the run
        learns from one.
    """

    name: str
    image_ids: list[str]
    caption_ids: list[str]
    text: torch.Tensor
    image: torch.Tensor
    caption_image: np.ndarray
    image_cnn: np.ndarray = field(repr=False)
    sentences: list[str] = field(default_factory=list, repr=False)
    image_views: torch.Tensor | None = field(default=None, repr=False)
    image_heads: list[ImageHead] | None = field(default=None, repr=False)
    teacher_text: torch.Tensor | None = field(default=None, repr=False)
    teacher_image: torch.Tensor | None = field(default=None, repr=False)

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
