"""Partial fine-tuning of the image towers: the cached inputs of each backbone's last layer, that
layer made trainable, and a run that trains it with the branches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY, TINY_CONFIG
from flickr_retrieval import features, head_features, runs
from flickr_retrieval.checkpoint import TrainedModel
from flickr_retrieval.config import RunConfig
from flickr_retrieval.data import load_flickr8k
from flickr_retrieval.inputs import FeatureSpace
from flickr_retrieval.models import DualEncoder, ModelSpec, build_model


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "efficientnet_lite0"])
def test_the_last_layer_over_its_cached_inputs_gives_the_backbone_features(tiny_root, isolated_cache, backbone):
    ds = load_flickr8k(tiny_root, expected=TINY)
    inputs = head_features.head_inputs(ds, backbone)
    assert inputs.inputs.dtype == np.float16 and inputs.head.shape == (49, 320, 1280)
    assert inputs.inputs.shape == (8, 49 * 320)
    frozen = features.image_features(ds, backbone).vectors
    again = head_features.pooled(inputs.inputs, inputs.head)
    assert _cosines(again, frozen).min() > 0.9999
    assert head_features.head_inputs(ds, backbone).from_cache


def test_a_model_with_pretrained_heads_embeds_as_the_frozen_model_over_pooled_features(tiny_root, isolated_cache):
    ds = load_flickr8k(tiny_root, expected=TINY)
    space = FeatureSpace(RunConfig(**{**TINY_CONFIG, "image_backbone": "mobilenet_v2+efficientnet_lite0"}), ds)
    tuned = FeatureSpace(
        RunConfig(**{**TINY_CONFIG, "image_backbone": "mobilenet_v2+efficientnet_lite0", "tune_image_heads": True}), ds
    )
    heads = tuned.split("dev").image_heads
    spec = ModelSpec("dual_encoder", 384, 2560, 32, 16, 0.0, image_heads=tuple(h.shape for h in heads))
    with_heads = build_model(spec)
    with_heads.load_pretrained_heads(heads)
    frozen = build_model(ModelSpec("dual_encoder", 384, 2560, 32, 16, 0.0))
    frozen.load_state_dict({k: v for k, v in with_heads.state_dict().items() if not k.startswith("image_heads")})
    dev, dev_tuned = space.split("dev"), tuned.split("dev")
    assert dev_tuned.image.shape == (2, 2 * 49 * 320)
    with torch.no_grad():
        np.testing.assert_allclose(
            with_heads.eval().embed_images(dev_tuned.image), frozen.eval().embed_images(dev.image), atol=2e-3
        )
    with pytest.raises(ValueError, match="do not match"):
        with_heads.load_pretrained_heads(heads[:1])
    with pytest.raises(ValueError, match="image_heads belong"):
        ModelSpec("dual_encoder", 384, 1280, image_heads=tuple(h.shape for h in heads))
    assert "image_heads" not in frozen.spec.to_dict()  # earlier checkpoints' specs stay as they were
    assert ModelSpec.from_dict(with_heads.spec.to_dict()) == with_heads.spec


def test_a_run_trains_the_last_layers_at_their_own_rate_and_its_checkpoint_reloads(
    tiny_root, isolated_cache, tmp_path, monkeypatch
):
    monkeypatch.setenv("RCP217_RUN_CACHE", "0")
    ds = load_flickr8k(tiny_root, expected=TINY)
    config = RunConfig(**{**TINY_CONFIG, "tune_image_heads": True, "image_head_lr": 1e-3})
    space = FeatureSpace(config, ds)
    feats = {n: space.split(n) for n in ("train", "dev", "test")}
    trained = runs.train_cached(config, feats)
    model = trained.model
    assert isinstance(model, DualEncoder) and len(model.image_heads) == 1
    start = feats["train"].image_heads[0]
    moved = model.image_heads[0].layer.weight.detach().numpy() - start.weight
    assert np.abs(moved).max() > 0  # the last layer was trained
    path = tmp_path / "model.pt"
    trained.save(path)
    loaded = TrainedModel.load(path)
    with torch.no_grad():
        np.testing.assert_allclose(
            loaded.model.embed_images(feats["test"].image), model.eval().embed_images(feats["test"].image), atol=1e-6
        )
    assert loaded.config.tune_image_heads


def test_the_config_says_where_last_layer_training_applies():
    assert "image_head_lr" not in RunConfig().unused_fields()  # not written, so not listed
    assert "image_head_lr" in RunConfig(image_head_lr=1e-3).unused_fields()
    assert "tune_image_heads" not in RunConfig().to_dict()
    projection = {"model": "cosine_projection", "loss": "cosine_embedding", "negatives": "random"}
    for bad in ({"feature_norm": "standardize"}, {"image_views": "flip"}, projection):
        with pytest.raises(ValueError, match="tune_image_heads trains"):
            RunConfig(**{**TINY_CONFIG, "tune_image_heads": True, **bad})
    with pytest.raises(ValueError, match="image_head_lr must be positive"):
        RunConfig(image_head_lr=0.0)
