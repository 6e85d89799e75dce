"""The trainable objective: a model, its loss and (for InfoNCE) its learned temperature, in one
``nn.Module``, so that everything trained is saved, restored and checkpointed together (as
open_clip keeps ``logit_scale`` on the model)."""

from __future__ import annotations

import math

import torch
from torch import nn

from . import losses
from .config import RunConfig
from .models import RetrievalModel
from .sampling import Batch

MAX_LOGIT_SCALE = math.log(100.0)  # CLIP clips the scale 1 / T at 100


class Objective(nn.Module):
    """``objective(batch)`` is the batch's loss; ``objective.model`` is what gets evaluated."""

    def __init__(self, model: RetrievalModel, config: RunConfig, temperature: float | None = None):
        super().__init__()
        self.model = model
        self.loss_name, self.negatives = config.loss, config.negatives
        self.spec = losses.loss_spec(config.loss)  # what the loss takes, as it declares it
        self.margin, self.label_scheme = config.margin, config.label_scheme
        self.hardest_weight, self.hardest_from_epoch = config.hardest_weight, config.hardest_from_epoch
        self.distill_weight, self.distill_temperature = config.distill_weight, config.distill_temperature
        self.epoch = 1  # the epoch being trained (fit sets it): the hardest-negative term starts from one
        if self.spec.learns_temperature:  # CLIP's learned temperature, as log(1 / T)
            start = temperature if temperature is not None else config.temperature
            self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / start)), requires_grad=config.learn_temperature)
        else:
            self.log_scale = None

    @property
    def temperature(self) -> float | None:
        return None if self.log_scale is None else float(torch.exp(-self.log_scale.detach()))

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next batches belong to (counted from 1), as :func:`flickr_retrieval.fit.fit` trains it."""
        self.epoch = epoch

    @property
    def hardest_on(self) -> bool:
        """Whether the hardest-negative hinge is added to the batch loss in the current epoch."""
        return self.hardest_weight > 0 and self.epoch >= self.hardest_from_epoch

    def after_step(self) -> None:
        """Keep the learned scale in CLIP's range after each optimiser step."""
        if self.log_scale is not None:
            with torch.no_grad():
                self.log_scale.clamp_(0.0, MAX_LOGIT_SCALE)

    def forward(self, batch: Batch) -> torch.Tensor:
        model, q, own, inputs = self.model, batch.queries, batch.own, self.spec.inputs
        if inputs == "pairs":
            positive = model.pair_scores(q, batch.images[own])
            if batch.negatives is None:  # positives only, as the report first did
                return losses.pair_loss(positive, torch.ones(len(batch)), self.loss_name)
            negative = model.pair_scores(q, batch.images[batch.negatives])
            labels = torch.cat([torch.ones(len(batch)), torch.zeros(len(batch))])
            return losses.pair_loss(torch.cat([positive, negative]), labels, self.loss_name)
        t = model.embed_queries(q)
        images, inverse = torch.unique(own, return_inverse=True)
        own_emb = model.embed_images(batch.images[images])[inverse]  # each image embedded once per batch
        if inputs == "one_negative":
            if batch.in_batch is not None:
                neg_emb = own_emb[batch.in_batch]
            else:  # a fixed image per caption (most_different)
                neg_emb = model.embed_images(batch.images[batch.negatives])
            negative_label = -1.0 if self.label_scheme == "pm1" else 0.0
            target = torch.cat([torch.ones(len(batch)), torch.full((len(batch),), negative_label)])
            return losses.cosine_embedding(torch.cat([t, t]), torch.cat([own_emb, neg_emb]), target, self.margin)
        scores = model.scores(t, own_emb)
        temperature = None if self.log_scale is None else torch.exp(-self.log_scale)
        positive = losses.same_image_mask(own)
        loss = self.spec.batch_loss(
            scores,
            positive,
            margin=self.margin,
            hardest=self.negatives == "hardest_in_batch",
            temperature=temperature,
        )
        if self.hardest_on:  # after the warm-up: VSE++'s hardest negatives beside InfoNCE's softmax
            loss = loss + self.hardest_weight * losses.triplet(scores, positive, self.margin, max_violation=True)
        if self.distill_weight > 0:  # the teacher's in-batch distribution beside the labels
            if batch.teacher is None:
                raise ValueError("this objective learns from a teacher: the batch carries no teacher scores")
            loss = loss + self.distill_weight * losses.distillation(scores, batch.teacher, self.distill_temperature)
        return loss
