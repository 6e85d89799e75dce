"""Fine-tuning the text encoder together with the text branch; image features stay frozen.

The second stage of a two-stage recipe (as VSE++ fine-tunes its CNN after training the embedding):
start from a dual encoder trained on frozen features, then update all of all-MiniLM-L6-v2 (22M
parameters) with a small learning rate and the branches with the usual one, on the symmetric
InfoNCE loss. Batches group captions of similar length, so little time goes to padding.
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch
from torch import nn

from . import losses
from .config import RunConfig
from .features import progress
from .metrics import summarize_ranks, t2i_ranks
from .models import DualEncoder, pairwise_similarity
from .text_encoders import load_text_encoder, pool
from .train import Normaliser, SplitFeatures, TrainedModel, epoch_batches, similarity


class TextTunedDualEncoder(nn.Module):
    """A trainable sentence encoder + pooling + (frozen-statistics) normalisation + the two branches."""

    def __init__(self, config: RunConfig, head: DualEncoder, text_norm: Normaliser):
        super().__init__()
        encoder = load_text_encoder(config.text_encoder)
        self.tokenizer, self.max_length = encoder.tokenizer, encoder.spec.max_length
        self.text_model = encoder.model
        for p in self.text_model.parameters():
            p.requires_grad_(True)
        self.pooling = config.text_pooling
        self.head = head
        self.similarity = head.similarity
        self.norm_how = text_norm.how
        dim = encoder.model.config.hidden_size
        self.register_buffer("text_mean", torch.as_tensor(text_norm.mean if text_norm.mean is not None else np.zeros(dim), dtype=torch.float32))
        self.register_buffer("text_std", torch.as_tensor(text_norm.std if text_norm.std is not None else np.ones(dim), dtype=torch.float32))

    def tokenize(self, sentences: list[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(sentences, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm_how == "l2":
            return nn.functional.normalize(x, dim=-1)
        if self.norm_how == "standardize":
            return (x - self.text_mean) / self.text_std
        return x

    def embed_tokens(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        pooled = pool(self.text_model(**tokens).last_hidden_state, tokens["attention_mask"])[self.pooling]
        return self.head.embed_texts(self._normalise(pooled))

    @torch.no_grad()
    def embed_sentences(self, sentences: list[str], batch_size: int = 128) -> torch.Tensor:
        """(len(sentences), E) embeddings, in input order (batches of similar length, eval mode)."""
        was_training = self.training
        self.eval()
        order = np.argsort([len(s.split()) for s in sentences], kind="stable")
        out = torch.zeros(len(sentences), self.head.text_branch[-1].out_features)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            out[torch.from_numpy(idx)] = self.embed_tokens(self.tokenize([sentences[i] for i in idx]))
        self.train(was_training)
        return out

    def embed_images(self, image: torch.Tensor) -> torch.Tensor:
        return self.head.embed_images(image)


def length_bucketed(batches: list[np.ndarray], lengths: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Re-cut an epoch's captions into batches of similar length, in a random batch order."""
    chosen = np.concatenate(batches)
    size = max(len(b) for b in batches)
    jitter = rng.random(len(chosen))  # random order among equal lengths
    by_length = chosen[np.lexsort((jitter, lengths[chosen]))]
    cut = [by_length[i : i + size] for i in range(0, len(by_length), size)]
    return [cut[i] for i in rng.permutation(len(cut))]


def dev_score(model: TextTunedDualEncoder, dev: SplitFeatures) -> dict[str, float]:
    return summarize_ranks(t2i_ranks(similarity(model, dev), dev.caption_image))


def finetune_text(config: RunConfig, features: dict[str, SplitFeatures], init: TrainedModel, text_norm: Normaliser, show_progress: bool = True) -> TrainedModel:
    """Fine-tune ``config.text_encoder`` with the branches of ``init`` on InfoNCE.

    ``config.text_lr`` for the transformer, ``config.lr`` for the branches and the temperature
    (starting from ``init``'s). Dev t2i R@1+R@5+R@10 after every epoch selects the weights kept.
    """
    if not isinstance(init.model, DualEncoder):
        raise ValueError("fine-tuning starts from a trained DualEncoder run")
    t0 = time.perf_counter()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    head = copy.deepcopy(init.model)
    model = TextTunedDualEncoder(config, head, text_norm)
    train_split, dev = features["train"], features["dev"]
    sentences = train_split.sentences
    lengths = np.array([len(s.split()) for s in sentences])
    log_scale = nn.Parameter(torch.tensor(math.log(1.0 / (init.temperature or config.temperature))), requires_grad=config.learn_temperature)
    optimizer = torch.optim.AdamW(
        [
            {"params": model.text_model.parameters(), "lr": config.text_lr},
            {"params": [*model.head.parameters(), log_scale], "lr": config.lr},
        ],
        weight_decay=0.0,
    )
    start = dev_score(model, dev)
    history = [{"epoch": 0, "loss": float("nan"), **{f"dev_{k}": v for k, v in start.items()}}]
    best_score, best_state, best_epoch, stale = start["R@1"] + start["R@5"] + start["R@10"], copy.deepcopy(model.state_dict()), 0, 0
    epochs = range(1, config.max_epochs + 1)
    for epoch in progress(epochs, f"{config.name} epochs") if show_progress else epochs:
        epoch_start = time.perf_counter()
        model.train()
        batches = length_bucketed(epoch_batches(train_split.caption_image, config.captions_per_image, config.batch_size, rng), lengths, rng)
        total, count = 0.0, 0
        for idx in batches:
            own = torch.from_numpy(train_split.caption_image[idx])
            images, inverse = torch.unique(own, return_inverse=True)
            image_emb = model.embed_images(train_split.image[images])[inverse]
            text_emb = model.embed_tokens(model.tokenize([sentences[i] for i in idx]))
            scores = pairwise_similarity(text_emb, image_emb, model.similarity)
            loss = losses.info_nce(scores, losses.same_image_mask(own), torch.exp(-log_scale))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                log_scale.clamp_(0.0, math.log(100.0))
            total += loss.item() * len(idx)
            count += len(idx)
        score = dev_score(model, dev)
        history.append({"epoch": epoch, "loss": total / count, "seconds": time.perf_counter() - epoch_start, **{f"dev_{k}": v for k, v in score.items()}})
        if score["R@1"] + score["R@5"] + score["R@10"] > best_score:
            best_score, best_state, best_epoch, stale = score["R@1"] + score["R@5"] + score["R@10"], copy.deepcopy(model.state_dict()), epoch, 0
        else:
            stale += 1
        if config.early_stopping and stale >= config.patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    return TrainedModel(config, model, history, best_epoch, time.perf_counter() - t0, float(torch.exp(-log_scale.detach())))
