"""InfoNCE with VSE++'s hardest-negative hinge switched on after a warm-up (``RunConfig.hardest_weight``,
``hardest_from_epoch``): the config, the objective's loss epoch by epoch, and the training loop."""

import pytest
import torch
from flickr_retrieval import losses
from flickr_retrieval.config import RunConfig
from flickr_retrieval.models import ModelSpec, Queries, build_model
from flickr_retrieval.objective import Objective
from flickr_retrieval.sampling import Batch
from flickr_retrieval.train import train
from test_training import _toy_splits

INFONCE = RunConfig(loss="infonce", negatives="in_batch", hidden_dim=32, embed_dim=8, dropout=0.0)


def test_the_term_is_off_by_default_and_leaves_every_earlier_config_dict_as_it_was():
    assert "hardest_weight" not in INFONCE.to_dict() and "hardest_from_epoch" not in INFONCE.to_dict()
    on = INFONCE.replace(hardest_weight=2.0, hardest_from_epoch=3, margin=0.2)
    assert on.to_dict()["hardest_weight"] == 2.0 and on.to_dict()["hardest_from_epoch"] == 3
    assert RunConfig.from_dict(on.to_dict()) == on
    assert on.setting() != INFONCE.replace(margin=0.2).setting()  # a different training, a different record


def test_the_config_refuses_what_the_term_cannot_do():
    with pytest.raises(ValueError, match="hardest_weight must be 0 or positive"):
        INFONCE.replace(hardest_weight=-1.0)
    with pytest.raises(ValueError, match="'infonce'"):
        RunConfig(loss="triplet", negatives="in_batch", hardest_weight=1.0)
    with pytest.raises(ValueError, match="hardest_from_epoch must be a positive integer"):
        INFONCE.replace(hardest_weight=1.0, hardest_from_epoch=0)


def test_with_the_term_the_margin_is_read_and_without_it_the_start_epoch_is_not():
    assert "margin" in INFONCE.replace(margin=0.2).unused_fields()
    assert "margin" not in INFONCE.replace(margin=0.2, hardest_weight=1.0).unused_fields()
    assert "hardest_from_epoch" in INFONCE.replace(hardest_from_epoch=4).unused_fields()
    assert "hardest_from_epoch" not in INFONCE.replace(hardest_weight=1.0, hardest_from_epoch=4).unused_fields()


def _batch_and_objective(config, seed=0):
    torch.manual_seed(seed)
    text, images = torch.randn(6, 10), torch.randn(4, 7)
    own = torch.tensor([0, 1, 2, 3, 0, 1])  # captions 0 and 4 share an image: never each other's negative
    model = build_model(ModelSpec.from_config(config, text_dim=10, image_dim=7))
    objective = Objective(model, config).eval()  # no dropout: the same scores every call
    return objective, Batch(Queries(text), own, images)


def test_the_objective_adds_the_weighted_hardest_hinge_from_its_start_epoch_on():
    config = INFONCE.replace(hardest_weight=3.0, hardest_from_epoch=3, margin=0.2)
    objective, batch = _batch_and_objective(config)
    with torch.no_grad():
        t = objective.model.embed_queries(batch.queries)
        scores = objective.model.scores(t, objective.model.embed_images(batch.images)[batch.own])
        positive = losses.same_image_mask(batch.own)
        nce = losses.info_nce(scores, positive, torch.exp(-objective.log_scale))
        hinge = losses.triplet(scores, positive, 0.2, max_violation=True)
        assert hinge.item() > 0  # random weights violate the margin: the term is not a zero
        for epoch, expected in ((1, nce), (2, nce), (3, nce + 3.0 * hinge), (7, nce + 3.0 * hinge)):
            objective.set_epoch(epoch)
            assert objective.hardest_on == (epoch >= 3)
            assert objective(batch).item() == pytest.approx(expected.item(), rel=1e-6)


def test_training_follows_the_warm_up_epoch_by_epoch():
    feats = _toy_splits()
    base = INFONCE.replace(lr=1e-2, batch_size=32, max_epochs=3, early_stopping=False, margin=0.2)
    alone = train(base, feats)
    never = train(base.replace(hardest_weight=5.0, hardest_from_epoch=4), feats)  # starts after the last epoch
    late = train(base.replace(hardest_weight=5.0, hardest_from_epoch=3), feats)
    assert [h["loss"] for h in never.history] == [h["loss"] for h in alone.history]
    assert [h["loss"] for h in late.history[:2]] == [h["loss"] for h in alone.history[:2]]  # the warm-up
    assert late.history[2]["loss"] > alone.history[2]["loss"]  # a non-negative term added, switched on
