"""Training objectives, each a short function of scores.

Batch losses take a (B, B) score matrix ``scores[i, j] = s(text_i, image_j)`` where image j is the
image of caption j, and a (B, B) bool ``positive`` mask that is True where caption i describes image
j (the diagonal, plus any other caption of the same image in the batch). Such pairs are never used
as negatives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def same_image_mask(image_index: torch.Tensor) -> torch.Tensor:
    """(B, B) bool: caption i and caption j describe the same image."""
    return image_index[:, None] == image_index[None, :]


def cosine_embedding(
    text: torch.Tensor, image: torch.Tensor, target: torch.Tensor, margin: float = 0.0
) -> torch.Tensor:
    """``torch.nn.CosineEmbeddingLoss`` on rows: 1 - cos for target 1, max(0, cos - margin) for -1.

    PyTorch applies no term at all to any other target value: a 0 target (the report's first labels)
    contributes a loss of 0 and no gradient, so 0/1 labels silently train on the positives alone.
    """
    return F.cosine_embedding_loss(text, image, target, margin=margin)


def triplet(
    scores: torch.Tensor, positive: torch.Tensor, margin: float = 0.2, max_violation: bool = True
) -> torch.Tensor:
    """VSE++ (Faghri et al. 2018) hinge in both directions, mean over the batch.

    For caption i: ``[margin + s(i, j) - s(i, i)]+`` over negative images j; for image j:
    ``[margin + s(i, j) - s(j, j)]+`` over negative captions i. ``max_violation`` keeps only the
    hardest negative of each query (VSE++), otherwise all violations are summed (VSE0).
    """
    diagonal = scores.diag()
    cost_caption = (margin + scores - diagonal[:, None]).clamp(min=0).masked_fill(positive, 0)
    cost_image = (margin + scores - diagonal[None, :]).clamp(min=0).masked_fill(positive, 0)
    if max_violation:
        return cost_caption.max(dim=1).values.mean() + cost_image.max(dim=0).values.mean()
    return cost_caption.sum(dim=1).mean() + cost_image.sum(dim=0).mean()


def info_nce(scores: torch.Tensor, positive: torch.Tensor, temperature: torch.Tensor | float) -> torch.Tensor:
    """Symmetric cross-entropy over the batch (CLIP), other same-image pairs masked out of both softmaxes."""
    logits = scores / temperature
    off_diagonal_positive = positive & ~torch.eye(len(scores), dtype=torch.bool, device=scores.device)
    logits = logits.masked_fill(off_diagonal_positive, float("-inf"))
    target = torch.arange(len(scores), device=scores.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def distillation(scores: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) of the in-batch softmaxes at one ``temperature``, for each caption over
    the batch's images and each image over its captions, averaged (Hinton et al. 2015 on a
    contrastive batch). ``scores`` and ``teacher``: (B, B), the same captions and images."""
    student, target = scores.float() / temperature, teacher.float() / temperature
    rows = F.kl_div(F.log_softmax(student, 1), F.log_softmax(target, 1), reduction="batchmean", log_target=True)
    cols = F.kl_div(F.log_softmax(student.T, 1), F.log_softmax(target.T, 1), reduction="batchmean", log_target=True)
    return 0.5 * (rows + cols)


def pair_loss(logits: torch.Tensor, labels: torch.Tensor, kind: str) -> torch.Tensor:
    """The pair classifier's losses on ``p = sigmoid(logit)`` against 0/1 labels.

    ``mse`` is the report's first choice; ``gaussian_nll`` is its "Gaussian loss" (torch's
    GaussianNLLLoss with unit variance, which is MSE / 2 plus a constant: the same optimum);
    ``bce`` is the Bernoulli likelihood that a binary label calls for.
    """
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, labels)
    p = torch.sigmoid(logits)
    if kind == "mse":
        return F.mse_loss(p, labels)
    if kind == "gaussian_nll":
        return F.gaussian_nll_loss(p, labels, torch.ones_like(p), full=True)
    raise ValueError(f"unknown pair loss {kind!r}")


# --------------------------------------------------------------------------- what each loss trains on

#: How a batch reaches a loss: ``pairs``, a score per (caption, image) pair against 0/1 labels (the
#: pair classifier); ``one_negative``, each caption with its image and one negative image (a cosine
#: loss on rows); ``batch``, the (B, B) score matrix of the batch's captions and images.
INPUTS = ("pairs", "one_negative", "batch")


@dataclass(frozen=True)
class LossSpec:
    """A loss and what it accepts: the models it trains, the negatives and label schemes it takes,
    how a batch reaches it, whether it learns a temperature and may fine-tune the text encoder.

    Adding a loss is one entry in :data:`LOSS_SPECS` (and its function above): the config checks a
    run against it, the objective and the sampler read it; nothing else compares loss names.
    """

    name: str
    inputs: str
    models: tuple[str, ...]
    negatives: tuple[str, ...]
    label_schemes: tuple[str, ...] = ("pm1",)
    learns_temperature: bool = False
    uses_margin: bool = False
    finetunes_text: bool = False
    takes_hardest_term: bool = False  # RunConfig.hardest_weight may add VSE++'s hardest-negative hinge to it
    batch_loss: Callable | None = None  # for ``batch`` inputs: (scores, positive, margin=, hardest=, temperature=)

    def __post_init__(self):
        if self.inputs not in INPUTS:
            raise ValueError(f"inputs must be one of {INPUTS}, got {self.inputs!r}")
        if (self.inputs == "batch") != (self.batch_loss is not None):
            raise ValueError(f"loss {self.name!r}: a batch_loss is given exactly for 'batch' inputs")


def _triplet_of_batch(scores, positive, *, margin, hardest, temperature):
    return triplet(scores, positive, margin, max_violation=hardest)


def _info_nce_of_batch(scores, positive, *, margin, hardest, temperature):
    return info_nce(scores, positive, temperature)


_EMBEDDING_MODELS = ("dual_encoder", "cosine_projection")

#: Every trainable loss. ``triplet`` with ``in_batch`` negatives sums every violation (VSE0), with
#: ``hardest_in_batch`` it keeps the hardest (VSE++). ``random`` draws a caption's negative image
#: again every epoch; ``random_once`` draws it once for the whole training, as the report built its
#: pair data set; ``most_different`` fixes it to the image least like the caption's own.
LOSS_SPECS: dict[str, LossSpec] = {
    spec.name: spec
    for spec in (
        LossSpec(
            "cosine_embedding",
            "one_negative",
            _EMBEDDING_MODELS,
            ("random", "random_once", "most_different"),
            label_schemes=("pm1", "01"),
            uses_margin=True,
        ),
        LossSpec(
            "triplet",
            "batch",
            _EMBEDDING_MODELS,
            ("in_batch", "hardest_in_batch"),
            uses_margin=True,
            batch_loss=_triplet_of_batch,
        ),
        LossSpec(
            "infonce",
            "batch",
            _EMBEDDING_MODELS,
            ("in_batch",),
            learns_temperature=True,
            finetunes_text=True,
            takes_hardest_term=True,
            batch_loss=_info_nce_of_batch,
        ),
        *(LossSpec(kind, "pairs", ("pair_classifier",), ("none", "random")) for kind in ("mse", "gaussian_nll", "bce")),
    )
}


def loss_spec(name: str) -> LossSpec:
    """The :class:`LossSpec` of ``name`` (ValueError naming the known losses otherwise)."""
    try:
        return LOSS_SPECS[name]
    except KeyError:
        raise ValueError(f"loss must be one of {tuple(LOSS_SPECS)}, got {name!r}") from None
