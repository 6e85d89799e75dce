"""The models, built from a small frozen :class:`ModelSpec` that every checkpoint stores.

Every model has one interface (:class:`RetrievalModel`): ``embed_queries`` (captions),
``embed_images`` (image features), ``scores`` (the (Q, N) matrix of two embeddings), ``pair_scores``
(one score per (caption, image) row) and ``score_matrix`` (all of it in eval mode, no gradient).
Callers never ask which kind they hold.

=====================  ============================================================================
kind                   what
=====================  ============================================================================
``pair_classifier``    section V: [text; image] -> Linear -> ReLU -> Linear -> logit
``cosine_projection``  section VII: one Linear maps image features to the text space; cosine
``dual_encoder``       section IX: Wang, Li & Lazebnik (2016) two branches into a shared space
``text_tuned``         a dual encoder whose sentence encoder (MiniLM) is trained too
=====================  ============================================================================

Building a model changes no global state: the caller seeds (see :func:`flickr_retrieval.train.train`).
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import SIMILARITIES, from_known_fields

KINDS = ("dual_encoder", "cosine_projection", "pair_classifier", "text_tuned")


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model's layers (then its ``state_dict`` fills them)."""

    kind: str
    text_dim: int
    image_dim: int
    hidden_dim: int = 2048
    embed_dim: int = 512
    dropout: float = 0.5
    similarity: str = "cosine"
    text_encoder: str = ""  # text_tuned: the sentence encoder trained with the branches
    text_pooling: str = "mean"
    text_norm: str = "none"  # text_tuned: how pooled sentence vectors are normalised before the branch
    #: a trained last layer per backbone (:class:`PooledHead`): (positions, channels, out) each; the
    #: image input is then their flattened inputs and ``image_dim`` the sum of their outputs
    image_heads: tuple[tuple[int, int, int], ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "image_heads", tuple(tuple(int(v) for v in h) for h in self.image_heads))
        if self.image_heads and (self.kind != "dual_encoder" or sum(h[2] for h in self.image_heads) != self.image_dim):
            raise ValueError("image_heads belong to a dual_encoder whose image_dim is the sum of their outputs")
        if self.kind not in KINDS:
            raise ValueError(f"model kind must be one of {KINDS}, got {self.kind!r}")
        if self.similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}, got {self.similarity!r}")
        if self.kind == "text_tuned" and not self.text_encoder:
            raise ValueError("a text_tuned model names its text_encoder")
        for name in ("text_dim", "image_dim", "hidden_dim", "embed_dim"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")

    @property
    def image_input_dim(self) -> int:
        """The width of what ``embed_images`` takes: ``image_dim``, or the heads' flattened inputs."""
        return sum(p * c for p, c, _ in self.image_heads) if self.image_heads else self.image_dim

    @classmethod
    def from_config(cls, config, text_dim: int, image_dim: int, image_heads: tuple = ()) -> ModelSpec:
        """``image_heads``: (positions, channels, out) of each backbone's last layer when the config
        trains them (``image_dim`` is then the sum of their outputs)."""
        kind = "text_tuned" if config.finetune_text else config.model
        if config.tune_image_heads:
            image_dim = sum(h[2] for h in image_heads)
        return cls(
            kind,
            int(text_dim),
            int(image_dim),
            config.hidden_dim,
            config.embed_dim,
            config.dropout,
            "cosine" if kind in ("cosine_projection", "pair_classifier") else config.similarity,
            config.text_encoder if kind == "text_tuned" else "",
            config.text_pooling,
            config.feature_norm,
            tuple(image_heads) if config.tune_image_heads else (),
        )

    def to_dict(self) -> dict:
        """Every field (``image_heads`` only when there are some: earlier checkpoints' specs stay as they were)."""
        values = dataclasses.asdict(self)
        if not self.image_heads:
            del values["image_heads"]
        else:
            values["image_heads"] = [list(h) for h in self.image_heads]
        return values

    @classmethod
    def from_dict(cls, values: dict) -> ModelSpec:
        return from_known_fields(cls, values)


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


class RetrievalModel(nn.Module, abc.ABC):
    """The interface of every model: embed each side, then score. Subclasses define the two
    ``embed_*`` methods (an abstract base: it cannot be built on its own)."""

    spec: ModelSpec

    @property
    def similarity(self) -> str:
        return self.spec.similarity

    @abc.abstractmethod
    def embed_queries(self, queries: Queries) -> torch.Tensor:
        """(Q, E) embeddings of the queries."""

    @abc.abstractmethod
    def embed_images(self, image: torch.Tensor) -> torch.Tensor:
        """(N, E) embeddings of image features."""

    def scores(self, query_emb: torch.Tensor, image_emb: torch.Tensor) -> torch.Tensor:
        """(Q, N) scores of embedded queries against embedded images."""
        return pairwise_similarity(query_emb, image_emb, self.similarity)

    def pair_scores(self, queries: Queries, image: torch.Tensor) -> torch.Tensor:
        """(B,) score of each query with the image on the same row."""
        return rowwise_similarity(self.embed_queries(queries), self.embed_images(image), self.similarity)

    @torch.no_grad()
    def score_matrix(self, queries: Queries, image: torch.Tensor) -> torch.Tensor:
        """(Q, N) scores of every query against every image, in eval mode."""
        was_training = self.training
        self.eval()
        try:
            return self.scores(self.embed_queries(queries), self.embed_images(image))
        finally:
            self.train(was_training)


class PairClassifier(RetrievalModel):
    """Section V: [text; image] -> Linear(d, d/2) -> ReLU -> Linear(d/2, 1); a logit per pair.

    The report's probability is ``sigmoid(logit)``. Its score matrix is computed without the Q x N
    concatenations: the first layer splits into a text part (the query "embedding") and an image
    part (the image "embedding"), summed before the ReLU.
    """

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        d = spec.text_dim + spec.image_dim
        self.hidden = nn.Linear(d, d // 2)
        self.out = nn.Linear(d // 2, 1)

    def forward(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.hidden(torch.cat([text, image], dim=-1)))).squeeze(-1)

    def embed_queries(self, queries: Queries) -> torch.Tensor:
        return queries.vectors @ self.hidden.weight[:, : self.spec.text_dim].T + self.hidden.bias

    def embed_images(self, image: torch.Tensor) -> torch.Tensor:
        return image @ self.hidden.weight[:, self.spec.text_dim :].T

    def scores(self, query_emb: torch.Tensor, image_emb: torch.Tensor, chunk: int = 128) -> torch.Tensor:
        rows = [
            F.relu(query_emb[s : s + chunk, None, :] + image_emb[None]) @ self.out.weight[0] + self.out.bias
            for s in range(0, len(query_emb), chunk)
        ]
        return torch.cat(rows)

    def pair_scores(self, queries: Queries, image: torch.Tensor) -> torch.Tensor:
        return self(queries.vectors, image)


class CosineProjection(RetrievalModel):
    """Section VII: one Linear maps image features to the text dimension; cosine is the decoder."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        self.project = nn.Linear(spec.image_dim, spec.text_dim)

    def embed_queries(self, queries: Queries) -> torch.Tensor:
        return F.normalize(queries.vectors, dim=-1)

    def embed_images(self, image: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.project(image), dim=-1)


class Dropout(nn.Dropout):
    """``nn.Dropout`` (inverted: kept units scaled by ``1 / (1 - p)``, identity in eval mode) with its
    mask drawn as ``torch.rand(...) >= p`` instead of ``bernoulli_``.

    The mask has the same distribution (a float32 uniform has 2**24 levels, so the keep probability is
    ``1 - p`` to within 2**-24, exactly for ``p = 0.5``), and the random stream is still torch's
    seeded one; on this project's CPUs it is about 4 times faster: ``bernoulli_`` was 31% of a
    two-branch training step (measured by ``flickr-retrieval-bench``'s training lines).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.p == 1.0:
            return torch.zeros_like(x)
        keep = torch.rand(x.shape, device=x.device) >= self.p
        return x * keep.to(x.dtype) * (1.0 / (1.0 - self.p))


def use_fast_dropout(module: nn.Module) -> nn.Module:
    """Swap every plain ``nn.Dropout`` inside ``module`` (e.g. a transformers BERT) for :class:`Dropout`
    with the same ``p``, in place; return ``module``. Dropout inside fused attention is left as it is."""
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, Dropout(child.p))
    return module


def branch(in_dim: int, hidden_dim: int, out_dim: int, dropout: float) -> nn.Sequential:
    """One branch of Wang, Li & Lazebnik (2016): Linear, ReLU, Dropout, Linear."""
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), Dropout(dropout), nn.Linear(hidden_dim, out_dim))


class PooledHead(nn.Module):
    """A backbone's last layer made trainable: ``Linear(channels, out)`` at each position (a 1x1
    convolution with its BatchNorm folded in), ReLU6, mean over positions. Takes (N, positions *
    channels), position-major; gives (N, out), the backbone's pooled feature."""

    def __init__(self, positions: int, channels: int, out: int):
        super().__init__()
        self.positions, self.channels = positions, channels
        self.layer = nn.Linear(channels, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = x.reshape(len(x), self.positions, self.channels)
        return torch.clamp(self.layer(a), 0.0, 6.0).mean(dim=1)


class DualEncoder(RetrievalModel):
    """Section IX: an image branch and a text branch into a shared space, compared by ``similarity``.

    With ``cosine`` the embeddings are L2-normalised (the report's model); with ``dot`` or
    ``euclidean`` they are left as they are. With ``spec.image_heads``, the image side starts with
    the last layer of each backbone (:class:`PooledHead`), trained too.
    """

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        self.text_branch = branch(spec.text_dim, spec.hidden_dim, spec.embed_dim, spec.dropout)
        self.image_branch = branch(spec.image_dim, spec.hidden_dim, spec.embed_dim, spec.dropout)
        self.image_heads = nn.ModuleList(PooledHead(*h) for h in spec.image_heads)

    def load_pretrained_heads(self, heads) -> None:
        """Start each trained last layer from the backbone's (``ImageHead``: folded ``weight``, ``bias``)."""
        if [tuple(h.shape) for h in heads] != [tuple(h) for h in self.spec.image_heads]:
            raise ValueError(f"pretrained heads {[h.shape for h in heads]} do not match {self.spec.image_heads}")
        with torch.no_grad():
            for module, head in zip(self.image_heads, heads):
                module.layer.weight.copy_(torch.as_tensor(head.weight))
                module.layer.bias.copy_(torch.as_tensor(head.bias))

    def _image_features(self, image: torch.Tensor) -> torch.Tensor:
        if not self.spec.image_heads:
            return image
        widths = [p * c for p, c, _ in self.spec.image_heads]
        return torch.cat([head(x) for head, x in zip(self.image_heads, image.split(widths, dim=1))], dim=1)

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1) if self.similarity == "cosine" else x

    def embed_text_vectors(self, text: torch.Tensor) -> torch.Tensor:
        return self._finish(self.text_branch(text))

    def embed_queries(self, queries: Queries) -> torch.Tensor:
        return self.embed_text_vectors(queries.vectors)

    def embed_images(self, image: torch.Tensor) -> torch.Tensor:
        return self._finish(self.image_branch(self._image_features(image)))


class TextTunedDualEncoder(RetrievalModel):
    """A trainable sentence encoder + pooling + (frozen-statistics) normalisation + the two branches.

    Queries are sentences. In training mode a batch is encoded as given (one forward pass); in eval
    mode sentences are encoded in batches of similar length, without gradient.
    """

    def __init__(self, spec: ModelSpec):
        super().__init__()
        from .text_encoders import load_text_encoder

        self.spec = spec
        encoder = load_text_encoder(spec.text_encoder)
        self.tokenizer, self.max_length = encoder.tokenizer, encoder.spec.max_length
        self.text_model = use_fast_dropout(encoder.model)
        for p in self.text_model.parameters():
            p.requires_grad_(True)
        # The head's weights always come from a trained run or a checkpoint: building it must not
        # shift the random stream that training draws its dropout from.
        with torch.random.fork_rng(devices=[]):
            self.head = DualEncoder(dataclasses.replace(spec, kind="dual_encoder", text_encoder=""))
        dim = encoder.model.config.hidden_size
        self.register_buffer("text_mean", torch.zeros(dim))
        self.register_buffer("text_std", torch.ones(dim))

    def set_text_normaliser(self, mean: np.ndarray | None, std: np.ndarray | None) -> None:
        """Copy the frozen training statistics of the pooled sentence vectors (``standardize``)."""
        if mean is not None:
            self.text_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
            self.text_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def tokenize(self, sentences: list[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(sentences, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec.text_norm == "l2":
            return F.normalize(x, dim=-1)
        if self.spec.text_norm == "standardize":
            return (x - self.text_mean) / self.text_std
        return x

    def _embed_tokens(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        from .text_encoders import pool

        pooled = pool(self.text_model(**tokens).last_hidden_state, tokens["attention_mask"])[self.spec.text_pooling]
        return self.head.embed_text_vectors(self._normalise(pooled))

    def embed_queries(self, queries: Queries, batch_size: int = 128) -> torch.Tensor:
        sentences = list(queries.sentences or [])
        if self.training:
            return self._embed_tokens(self.tokenize(sentences))
        order = np.argsort([len(s.split()) for s in sentences], kind="stable")
        out = torch.zeros(len(sentences), self.spec.embed_dim)
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                out[torch.from_numpy(idx)] = self._embed_tokens(self.tokenize([sentences[i] for i in idx]))
        return out

    def embed_images(self, image: torch.Tensor) -> torch.Tensor:
        return self.head.embed_images(image)


_BUILDERS = {
    "pair_classifier": PairClassifier,
    "cosine_projection": CosineProjection,
    "dual_encoder": DualEncoder,
    "text_tuned": TextTunedDualEncoder,
}


def build_model(spec: ModelSpec) -> RetrievalModel:
    """The model a spec describes, initialised from torch's current random state, which is left as
    it was (building a model changes no global state; :func:`build_model_drawing` advances it)."""
    with torch.random.fork_rng(devices=[]):
        return build_model_drawing(spec)


def build_model_drawing(spec: ModelSpec) -> RetrievalModel:
    """:func:`build_model` that draws the initial weights from torch's global generator and leaves it
    advanced, as torch's own layers do: for training, which seeds that generator inside its own
    ``fork_rng`` so that initialisation, dropout and every later draw follow the run's seed."""
    return _BUILDERS[spec.kind](spec)
