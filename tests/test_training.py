"""Losses, models and the training loop on small synthetic features."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flickr_retrieval import losses, metrics
from flickr_retrieval.checkpoint import TrainedModel
from flickr_retrieval.config import RunConfig
from flickr_retrieval.evaluation import similarity
from flickr_retrieval.metrics import retrieval_metrics
from flickr_retrieval.models import DualEncoder, ModelSpec, PairClassifier, Queries
from flickr_retrieval.sampling import most_different_images, random_negatives
from flickr_retrieval.split_features import SplitFeatures
from flickr_retrieval.train import train


def evaluate(model, split, n_boot=1000):
    return retrieval_metrics(similarity(model, split), split.caption_image, n_boot=n_boot)


def test_a_zero_target_adds_no_loss_in_cosine_embedding_loss():
    a, b = torch.randn(6, 4), torch.randn(6, 4)
    zero = losses.cosine_embedding(a, b, torch.zeros(6))
    assert zero.item() == 0.0
    mixed = losses.cosine_embedding(a, b, torch.tensor([1.0, 1, 1, 0, 0, 0]))
    positives_only = (1 - F.cosine_similarity(a[:3], b[:3])).sum() / 6
    assert mixed.item() == pytest.approx(positives_only.item(), abs=1e-6)


def test_triplet_by_hand():
    scores = torch.tensor([[0.9, 0.5, 0.1], [0.2, 0.6, 0.7], [0.3, 0.1, 0.8]])
    positive = torch.eye(3, dtype=torch.bool)
    # caption direction, margin 0.2: row0 max(0, .2+.5-.9)=0; row1 .2+.7-.6=.3; row2 .2+.3-.8=0
    # image direction: col0 .2+.3-.9=0; col1 .2+.5-.6=.1; col2 .2+.7-.8=.1
    hardest = losses.triplet(scores, positive, margin=0.2, max_violation=True)
    assert hardest.item() == pytest.approx((0.3) / 3 + (0.1 + 0.1) / 3)
    summed = losses.triplet(scores, positive, margin=0.2, max_violation=False)
    # row1 also has .2+.2-.6=0 -> 0 ; col1: .2+.1-.6 <0; col2: .2+.1-.8<0 -> same as hardest here
    assert summed.item() == pytest.approx(hardest.item())


def test_same_image_captions_are_not_negatives():
    image = torch.tensor([0, 0, 1])
    positive = losses.same_image_mask(image)
    scores = torch.tensor([[0.5, 0.9, 0.0], [0.9, 0.5, 0.0], [0.0, 0.0, 0.5]])
    # captions 0 and 1 share an image: their high cross scores must not be penalised
    assert losses.triplet(scores, positive, margin=0.2).item() == 0.0
    nce_masked = losses.info_nce(scores, positive, 0.1)
    nce_unmasked = losses.info_nce(scores, torch.eye(3, dtype=torch.bool), 0.1)
    assert nce_masked < nce_unmasked


def test_info_nce_prefers_aligned_scores():
    eye = torch.eye(4, dtype=torch.bool)
    assert losses.info_nce(torch.eye(4), eye, 0.1) < losses.info_nce(torch.ones(4, 4) - torch.eye(4), eye, 0.1)


def test_pair_losses():
    logits, labels = torch.tensor([3.0, -3.0]), torch.tensor([1.0, 0.0])
    assert losses.pair_loss(logits, labels, "bce") < losses.pair_loss(-logits, labels, "bce")
    mse = losses.pair_loss(logits, labels, "mse")
    gauss = losses.pair_loss(logits, labels, "gaussian_nll")
    assert gauss.item() == pytest.approx(mse.item() / 2 + 0.5 * np.log(2 * np.pi), abs=1e-5)


def test_pair_classifier_score_matrix_equals_pairwise_forward():
    torch.manual_seed(0)
    model = PairClassifier(ModelSpec("pair_classifier", 5, 7)).eval()
    text, image = torch.randn(4, 5), torch.randn(3, 7)
    brute = torch.stack([torch.stack([model(t[None], i[None])[0] for i in image]) for t in text])
    assert torch.allclose(model.score_matrix(Queries(text), image), brute, atol=1e-5)
    assert torch.allclose(model.pair_scores(Queries(text[:3]), image), brute.diagonal(), atol=1e-5)


@pytest.mark.parametrize("kind", ["cosine", "dot", "euclidean"])
def test_dual_encoder_similarities(kind):
    model = DualEncoder(ModelSpec("dual_encoder", 5, 7, hidden_dim=16, embed_dim=4, similarity=kind)).eval()
    text, image = torch.randn(4, 5), torch.randn(3, 7)
    s = model.score_matrix(Queries(text), image)
    assert s.shape == (4, 3)
    if kind == "cosine":
        assert s.abs().max() <= 1 + 1e-5
    if kind == "euclidean":
        assert (s <= 0).all()


def test_random_negatives_never_pick_the_own_image():
    own = np.repeat(np.arange(5), 5)
    neg = random_negatives(own, 5, np.random.default_rng(0))
    assert (neg != own).all() and set(neg) <= set(range(5))


def test_most_different_image():
    cnn = np.array([[1.0, 0.0], [0.9, 0.1], [-1.0, 0.2]])
    assert most_different_images(cnn).tolist() == [2, 2, 0]


def _toy_splits(seed=0, n_train=60, n_eval=20, dim=12):
    """Images are random vectors; captions are noisy linear views of their image."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(dim, 8))

    def split(name, n):
        image = rng.normal(size=(n, dim)).astype(np.float32)
        own = np.repeat(np.arange(n), 5)
        text = (image[own] @ mix + 0.3 * rng.normal(size=(5 * n, 8))).astype(np.float32)
        return SplitFeatures(
            name,
            [f"{name}{i}.jpg" for i in range(n)],
            [f"{name}{i // 5}.jpg#{i % 5}" for i in range(5 * n)],
            torch.from_numpy(text),
            torch.from_numpy(image),
            own,
            image,
        )

    return {"train": split("train", n_train), "dev": split("dev", n_eval), "test": split("test", n_eval)}


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"loss": "triplet", "negatives": "hardest_in_batch", "margin": 0.2},
        {"loss": "infonce", "negatives": "in_batch"},
        {"negatives": "most_different"},
    ],
)
def test_training_learns_the_toy_task_and_is_deterministic(changes):
    feats = _toy_splits()
    cfg = RunConfig(
        name="toy",
        hidden_dim=32,
        embed_dim=8,
        dropout=0.1,
        lr=3e-3,
        batch_size=32,
        max_epochs=15,
        patience=15,
        **changes,
    )
    before = torch.random.get_rng_state()
    a = train(cfg, feats, show_progress=False)
    b = train(cfg, feats, show_progress=False)
    assert torch.equal(torch.random.get_rng_state(), before)  # training leaves torch's global RNG alone
    ra, rb = evaluate(a.model, feats["test"], n_boot=10), evaluate(b.model, feats["test"], n_boot=10)
    assert ra == rb
    chance_r5 = 100 * 5 / 20
    assert ra["t2i"]["R@5"] > 2 * chance_r5
    dev_rsum = [h["dev_R@1"] + h["dev_R@5"] + h["dev_R@10"] for h in a.history]
    assert a.best_epoch == 1 + int(np.argmax(dev_rsum))  # the first best epoch is the one restored


def test_pair_classifier_trains_and_scores_pairs():
    feats = _toy_splits()
    cfg = RunConfig(
        name="pc", model="pair_classifier", loss="bce", lr=3e-3, batch_size=32, max_epochs=10, early_stopping=False
    )
    trained = train(cfg, feats, show_progress=False)
    assert trained.best_epoch == 10 and "dev_auc" in trained.history[-1]
    assert trained.history[-1]["dev_auc"] > 0.7


def test_checkpoint_round_trip(tmp_path):
    feats = _toy_splits()
    cfg = RunConfig(name="rt", hidden_dim=16, embed_dim=4, max_epochs=2)
    trained = train(cfg, feats, show_progress=False)
    trained.save(tmp_path / "m.pt")
    loaded = TrainedModel.load(tmp_path / "m.pt")
    assert loaded.config == cfg
    assert np.array_equal(
        evaluate(loaded.model, feats["dev"], n_boot=5)["t2i"]["R@1"],
        evaluate(trained.model, feats["dev"], n_boot=5)["t2i"]["R@1"],
    )
    with pytest.raises(FileNotFoundError, match="run the notebook"):
        TrainedModel.load(tmp_path / "absent.pt")


def test_config_rejects_unknown_choices():
    with pytest.raises(ValueError, match="loss"):
        RunConfig(loss="hinge")
    assert RunConfig(image_backbone="a+b").backbones == ["a", "b"]


@pytest.mark.parametrize(
    "changes",
    [
        {"loss": "cosine_embedding", "negatives": "in_batch"},  # crashed mid-training before
        {"loss": "triplet", "negatives": "random"},  # silently became the summed-violation loss
        {"loss": "infonce", "negatives": "random"},  # silently ignored the negatives
        {"loss": "infonce", "negatives": "hardest_in_batch"},
        {"model": "pair_classifier", "loss": "infonce", "negatives": "in_batch"},
        {"model": "dual_encoder", "loss": "bce", "negatives": "random"},
        {"model": "cosine_projection", "loss": "infonce", "negatives": "in_batch", "similarity": "euclidean"},
        {"loss": "triplet", "negatives": "hardest_in_batch", "finetune_text": True},
    ],
)
def test_config_rejects_combinations_that_cannot_train(changes):
    with pytest.raises(ValueError, match="allowed|needs model|finetune_text") as info:
        RunConfig(**changes)
    if "allowed" in str(info.value):
        assert "dual_encoder or cosine_projection + infonce: negatives in_batch" in str(info.value)


def test_config_rejects_bad_numbers_and_unknown_fields():
    for bad in ({"lr": 0}, {"batch_size": 0}, {"dropout": 1.0}, {"patience": 0}, {"max_epochs": 2.5}):
        with pytest.raises(ValueError):
            RunConfig(**bad)
    with pytest.raises(ValueError, match="unknown RunConfig fields"):
        RunConfig.from_dict({**RunConfig().to_dict(), "surprise": 1})


def test_selection_score_is_r1_plus_r5_plus_r10():
    assert metrics.selection_score({"R@1": 1.0, "R@5": 2.0, "R@10": 3.0, "medr": 9.0}) == 6.0
    assert metrics.dev_selection_score({"dev_R@1": 1.0, "dev_R@5": 2.0, "dev_R@10": 3.0, "epoch": 4}) == 6.0


def test_epoch_batches_visit_each_image_the_asked_number_of_times():
    from flickr_retrieval.sampling import epoch_batches

    own = np.repeat(np.arange(7), 5)
    rng = np.random.default_rng(0)
    one = np.concatenate(epoch_batches(own, 1, 4, rng))
    assert sorted(own[one].tolist()) == list(range(7))  # each image once
    assert len(set(one.tolist())) == 7
    all_ = np.concatenate(epoch_batches(own, 5, 4, rng))
    assert sorted(all_.tolist()) == list(range(35))
    seen = set()
    for _ in range(30):
        seen |= set(np.concatenate(epoch_batches(own, 1, 4, rng)).tolist())
    assert len(seen) == 35  # every caption comes round


def test_loading_a_backbone_leaves_the_global_random_state_alone():
    """Random weights are seeded inside a forked RNG: loading a backbone (random or pretrained) does
    not reseed or advance torch's global random state."""
    import torch
    from flickr_retrieval.backbones import load_image_backbone

    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    random_weights = load_image_backbone("mobilenet_v2", pretrained=False, seed=0)
    load_image_backbone("mobilenet_v2")
    assert torch.equal(torch.random.get_rng_state(), before)
    again = load_image_backbone("mobilenet_v2", pretrained=False, seed=0)  # still the same seeded weights
    first = next(random_weights.module.parameters())
    assert torch.equal(first, next(again.module.parameters()))
