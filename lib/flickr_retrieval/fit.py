"""The one training loop of the package, and its early-stopping helper.

Every training (the report's models, the contrastive ones, the fine-tuned text encoder) goes through
:func:`fit`: epochs of batches, a dev score after every epoch, and :class:`EarlyStopping` deciding
when to stop and which epoch's weights are kept.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

from .objective import Objective
from .sampling import Batch


class EarlyStopping:
    """Keeps the best dev epoch and says when to stop.

    With ``enabled``: training stops after ``patience`` epochs without a strictly better score and
    the best epoch's state (the whole objective: model and temperature) is restored; the first of
    equal scores wins. Without: every epoch runs and the last one is kept.
    """

    def __init__(self, patience: int, enabled: bool = True):
        if patience < 1:
            raise ValueError(f"patience must be at least 1, got {patience}")
        self.patience, self.enabled = patience, enabled
        self.best_score, self.best_epoch, self.stale = -math.inf, None, 0
        self._best_state: dict | None = None

    def step(self, epoch: int, score: float, module: nn.Module) -> bool:
        """Record ``epoch``'s dev score; True when training should stop now."""
        if score > self.best_score:
            self.best_score, self.best_epoch, self.stale = score, epoch, 0
            if self.enabled:
                self._best_state = copy.deepcopy(module.state_dict())
        else:
            self.stale += 1
        return self.enabled and self.stale >= self.patience

    def finish(self, module: nn.Module, last_epoch: int) -> int:
        """Restore the kept state into ``module`` (when enabled); return the kept epoch."""
        if not self.enabled:
            return last_epoch
        module.load_state_dict(self._best_state)
        return self.best_epoch


def training_step(
    objective: Objective,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    bf16: bool = False,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> float:
    """One optimiser step on ``batch`` (forward under bfloat16 autocast when ``bf16``); the batch's loss."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = objective(batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    objective.after_step()
    return loss.item()


def fit(
    objective: Objective,
    batches: Callable[[np.random.Generator], Iterable[Batch]],
    optimizer: torch.optim.Optimizer,
    dev_score: Callable[[], tuple[dict, float]],
    stopper: EarlyStopping,
    max_epochs: int,
    rng: np.random.Generator,
    score_start: bool = False,
    progress: Callable[[Iterable], Iterable] | None = None,
    bf16: bool = False,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> tuple[list[dict], int]:
    """Train ``objective`` for up to ``max_epochs`` epochs; return ``(history, kept epoch)``.

    ``batches(rng)`` gives one epoch's batches; ``dev_score()`` gives the logged dev values and the
    selection score of the current weights. With ``score_start`` the weights before any update are
    scored as epoch 0 and can be the ones kept (a fine-tuning that does not help keeps its start).
    ``bf16`` runs each training step's forward pass under bfloat16 autocast (weights, gradients and
    the optimiser stay float32; dev scores are computed in float32). ``scheduler`` (a learning-rate
    schedule) is stepped after every batch. ``objective.set_epoch`` is told each epoch (from 1) before
    its batches (a term of the loss may start after a warm-up).
    """
    history = []
    if score_start:
        values, score = dev_score()
        history.append({"epoch": 0, "loss": float("nan"), "seconds": 0.0, **values})
        stopper.step(0, score, objective)
    epochs = range(1, max_epochs + 1)
    epoch = 0
    for epoch in progress(epochs) if progress else epochs:
        start = time.perf_counter()
        objective.train()
        objective.set_epoch(epoch)
        total, count = 0.0, 0
        for batch in batches(rng):
            loss = training_step(objective, optimizer, batch, bf16, scheduler)
            total += loss * len(batch)
            count += len(batch)
        row = {
            "epoch": epoch,
            "loss": total / count,
            "seconds": time.perf_counter() - start,
            "lr": optimizer.param_groups[-1]["lr"],
        }
        values, score = dev_score()
        history.append({**row, **values})
        if stopper.step(epoch, score, objective):
            break
    kept = stopper.finish(objective, epoch)
    objective.eval()
    return history, kept
