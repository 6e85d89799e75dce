"""The report's three models, on precomputed features.

Every model scores a text against an image. Embedding models (:class:`CosineProjection`,
:class:`DualEncoder`) embed each side once, so a whole (Q, N) score matrix is one product;
:class:`PairClassifier` scores concatenated pairs, and its score matrix is computed without
materialising the Q x N concatenations (the first layer splits into a text part and an image part).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import RunConfig


def pairwise_similarity(a: torch.Tensor, b: torch.Tensor, kind: str) -> torch.Tensor:
    """(Q, E) x (N, E) -> (Q, N). ``cosine`` expects unit rows (the models normalise)."""
    if kind in ("cosine", "dot"):
        return a @ b.T
    if kind == "euclidean":
        return -torch.cdist(a, b)
    raise ValueError(f"unknown similarity {kind!r}")


def rowwise_similarity(a: torch.Tensor, b: torch.Tensor, kind: str) -> torch.Tensor:
    """(B, E) x (B, E) -> (B,), the diagonal of :func:`pairwise_similarity`."""
    if kind in ("cosine", "dot"):
        return (a * b).sum(-1)
    if kind == "euclidean":
        return -(a - b).norm(dim=-1)
    raise ValueError(f"unknown similarity {kind!r}")


class PairClassifier(nn.Module):
    """Section V: [text; image] -> Linear(d, d/2) -> ReLU -> Linear(d/2, 1) -> sigmoid.

    ``forward`` returns logits; the report's probability is ``sigmoid(logit)``.
    """

    def __init__(self, text_dim: int, image_dim: int):
        super().__init__()
        self.text_dim = text_dim
        d = text_dim + image_dim
        self.hidden = nn.Linear(d, d // 2)
        self.out = nn.Linear(d // 2, 1)

    def forward(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.hidden(torch.cat([text, image], dim=-1)))).squeeze(-1)

    @torch.no_grad()
    def score_matrix(self, text: torch.Tensor, image: torch.Tensor, chunk: int = 128) -> torch.Tensor:
        """(Q, N) logits of every (text, image) pair; equals ``forward`` on each concatenated pair."""
        w_text = self.hidden.weight[:, : self.text_dim]
        w_image = self.hidden.weight[:, self.text_dim :]
        t = text @ w_text.T + self.hidden.bias  # (Q, H)
        i = image @ w_image.T  # (N, H)
        rows = [F.relu(t[s : s + chunk, None, :] + i[None]) @ self.out.weight[0] + self.out.bias for s in range(0, len(t), chunk)]
        return torch.cat(rows)


class CosineProjection(nn.Module):
    """Section VII: one Linear maps image features to the text dimension; cosine is the decoder."""

    similarity = "cosine"

    def __init__(self, text_dim: int, image_dim: int):
        super().__init__()
        self.project = nn.Linear(image_dim, text_dim)

    def embed_texts(self, text: torch.Tensor) -> torch.Tensor:
        return F.normalize(text, dim=-1)

    def embed_images(self, image: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.project(image), dim=-1)


def branch(in_dim: int, hidden_dim: int, out_dim: int, dropout: float) -> nn.Sequential:
    """One branch of Wang, Li & Lazebnik (2016): Linear, ReLU, Dropout, Linear."""
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden_dim, out_dim))


class DualEncoder(nn.Module):
    """Section IX: an image branch and a text branch into a shared space, compared by ``similarity``.

    With ``cosine`` the embeddings are L2-normalised (the report's model); with ``dot`` or
    ``euclidean`` they are left as they are.
    """

    def __init__(self, text_dim: int, image_dim: int, hidden_dim: int = 2048, embed_dim: int = 512, dropout: float = 0.5, similarity: str = "cosine"):
        super().__init__()
        self.similarity = similarity
        self.text_branch = branch(text_dim, hidden_dim, embed_dim, dropout)
        self.image_branch = branch(image_dim, hidden_dim, embed_dim, dropout)

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1) if self.similarity == "cosine" else x

    def embed_texts(self, text: torch.Tensor) -> torch.Tensor:
        return self._finish(self.text_branch(text))

    def embed_images(self, image: torch.Tensor) -> torch.Tensor:
        return self._finish(self.image_branch(image))


def build_model(config: RunConfig, text_dim: int, image_dim: int) -> nn.Module:
    """The model a config names, seeded by ``config.seed``."""
    torch.manual_seed(config.seed)
    if config.finetune_text:
        from .finetune import TextTunedDualEncoder
        from .train import Normaliser

        head = DualEncoder(text_dim, image_dim, config.hidden_dim, config.embed_dim, config.dropout, config.similarity)
        return TextTunedDualEncoder(config, head, Normaliser(config.feature_norm))
    if config.model == "pair_classifier":
        return PairClassifier(text_dim, image_dim)
    if config.model == "cosine_projection":
        return CosineProjection(text_dim, image_dim)
    return DualEncoder(text_dim, image_dim, config.hidden_dim, config.embed_dim, config.dropout, config.similarity)


@torch.no_grad()
def score_matrix(model: nn.Module, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """(Q, N) scores of every text against every image, model in eval mode."""
    was_training = model.training
    model.eval()
    try:
        if isinstance(model, PairClassifier):
            return model.score_matrix(text, image)
        return pairwise_similarity(model.embed_texts(text), model.embed_images(image), model.similarity)
    finally:
        model.train(was_training)
