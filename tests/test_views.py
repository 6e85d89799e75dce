"""Feature augmentation: the views of an image, their cached features, the config fields that ask for
them, and the training inputs and epochs built on them."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import TINY, TINY_CONFIG
from flickr_retrieval import config as config_module
from flickr_retrieval import features, records, runs
from flickr_retrieval.config import RunConfig
from flickr_retrieval.data import load_flickr8k
from flickr_retrieval.images import CORNERS, CROP_SCALE, VIEW_SETS, VIEWS, ImagePreprocessing
from flickr_retrieval.inputs import FeatureSpace
from flickr_retrieval.sampling import BatchSampler
from PIL import Image


def test_the_config_names_the_view_sets_the_images_module_defines():
    assert set(config_module.IMAGE_VIEWS) == set(VIEW_SETS)
    assert all(views[0] == "full" for views in VIEW_SETS.values())
    assert len(VIEW_SETS["crops"]) == 6 and set(VIEW_SETS["crops"]) == set(VIEWS)


def test_a_corner_view_is_that_corner_of_the_enlarged_image_and_a_flip_is_its_mirror():
    rng = np.random.default_rng(0)
    image = Image.fromarray((rng.random((50, 70, 3)) * 255).astype(np.uint8))
    pre = ImagePreprocessing(size=32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    big = round(32 / CROP_SCALE)
    enlarged = ImagePreprocessing(size=big, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)).transform()(image)
    corners = {"tl": (0, 0), "tr": (0, big - 32), "bl": (big - 32, 0), "br": (big - 32, big - 32)}
    for corner in CORNERS:
        top, left = corners[corner]
        view = pre.transform(corner)(image)
        assert view.shape == (3, 32, 32)
        np.testing.assert_allclose(view, enlarged[:, top : top + 32, left : left + 32], atol=1e-6)
        mirrored = ImagePreprocessing(size=32, mean=(0.0,) * 3, std=(1.0,) * 3, hflip=True).transform(corner)(image)
        np.testing.assert_allclose(mirrored, torch.flip(view, dims=[2]), atol=1e-6)
    whole = pre.transform()(image)
    np.testing.assert_allclose(replace(pre, hflip=True).transform()(image), torch.flip(whole, dims=[2]), atol=1e-6)
    with pytest.raises(ValueError, match="crop must be one of"):
        pre.transform("centre")


def test_view_features_are_cached_per_view_and_whole_image_keys_do_not_change(tiny_root, isolated_cache):
    ds = load_flickr8k(tiny_root, expected=TINY)
    full = features.image_features(ds, "mobilenet_v2")
    assert "crop" not in full.source["preprocessing"]  # the key every earlier cache entry has
    assert features.view_features(ds, "mobilenet_v2", "full").from_cache
    assert (
        features.view_features(ds, "mobilenet_v2", "flip").source
        == features.image_features(ds, "mobilenet_v2", hflip=True).source
    )
    tables = {v: features.view_features(ds, "mobilenet_v2", v) for v in VIEWS}
    assert len({t.cache_file for t in tables.values()}) == len(VIEWS)
    assert tables["tl"].source["preprocessing"]["crop"] == "tl"
    for a in VIEWS:
        for b in VIEWS:
            if a < b:
                assert not np.allclose(tables[a].vectors, tables[b].vectors), (a, b)
    with pytest.raises(ValueError, match="unknown view"):
        features.view_features(ds, "mobilenet_v2", "centre")


def test_later_config_fields_are_written_only_when_set():
    plain = RunConfig()
    assert "image_views" not in plain.to_dict() and "test_view" not in plain.to_dict()
    assert RunConfig.from_dict(plain.to_dict()) == plain
    augmented = RunConfig(loss="infonce", negatives="in_batch", image_views="crops", test_view="mean")
    assert augmented.to_dict()["image_views"] == "crops" and augmented.to_dict()["test_view"] == "mean"
    assert RunConfig.from_dict(augmented.to_dict()) == augmented
    assert records.member_id(plain) != records.member_id(plain.replace(image_views="flip"))
    assert "test_view" not in plain.unused_fields() and "test_view" not in augmented.unused_fields()
    with pytest.raises(ValueError, match="test_view 'mean' averages"):
        RunConfig(test_view="mean")
    with pytest.raises(ValueError, match="image_views must be one of"):
        RunConfig(image_views="tencrop")
    with pytest.raises(ValueError, match="pretrained image features"):
        RunConfig(image_views="flip", pretrained_images=False)


def test_training_carries_every_view_and_dev_scores_the_whole_image_or_the_mean_view(tiny_root, isolated_cache):
    ds = load_flickr8k(tiny_root, expected=TINY)
    base = RunConfig(**{**TINY_CONFIG, "feature_norm": "standardize"})
    plain = FeatureSpace(base, ds).split("train")
    assert plain.image_views is None
    space = FeatureSpace(base.replace(image_views="flip"), ds)
    train = space.split("train")
    assert train.image_views.shape == (2, 4, 1280)
    np.testing.assert_array_equal(train.image_views[0], train.image)
    np.testing.assert_array_equal(train.image, plain.image)
    mirrored = features.view_features(ds, "mobilenet_v2", "flip").rows(train.image_ids)
    np.testing.assert_allclose(train.image_views[1], space.image_norms[0](mirrored), rtol=1e-6)
    assert space.split("dev").image_views is None
    np.testing.assert_array_equal(space.split("dev").image, FeatureSpace(base, ds).split("dev").image)
    mean_space = FeatureSpace(base.replace(image_views="flip", test_view="mean"), ds)
    dev = mean_space.split("dev")
    whole = features.image_features(ds, "mobilenet_v2").rows(dev.image_ids)
    flipped = features.view_features(ds, "mobilenet_v2", "flip").rows(dev.image_ids)
    np.testing.assert_allclose(dev.image, mean_space.image_norms[0]((whole + flipped) / 2), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(dev.image_cnn, whole)  # the lenient criterion keeps the whole image's features
    np.testing.assert_array_equal(mean_space.split("train").image, train.image)  # training statistics: whole images


def test_an_epoch_draws_one_view_per_image_and_the_draws_follow_the_seed(tiny_root, isolated_cache):
    ds = load_flickr8k(tiny_root, expected=TINY)
    config = RunConfig(**{**TINY_CONFIG, "image_views": "crops"})
    train = FeatureSpace(config, ds).split("train")
    views = train.image_views

    def drawn(seed):
        sampler = BatchSampler(config, train)
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(6):
            images = next(iter(sampler.epoch(rng))).images
            which = [
                int(np.flatnonzero([torch.equal(images[i], views[v, i]) for v in range(len(views))])[0])
                for i in range(len(images))
            ]
            out.append(which)
        return out

    first = drawn(0)
    assert first == drawn(0)
    assert len({v for epoch in first for v in epoch}) > 2  # several views of each image come round
    assert any(a != b for a, b in zip(first, first[1:]))  # a new draw every epoch
    plain = RunConfig(**TINY_CONFIG)
    plain_train = FeatureSpace(plain, ds).split("train")
    batch = next(iter(BatchSampler(plain, plain_train).epoch(np.random.default_rng(0))))
    assert batch.images is plain_train.image


def test_views_change_the_run_key_and_a_run_with_views_trains(tiny_root, isolated_cache, monkeypatch):
    monkeypatch.setenv("RCP217_RUN_CACHE", "0")
    ds = load_flickr8k(tiny_root, expected=TINY)
    base = RunConfig(**TINY_CONFIG)
    flip = base.replace(image_views="flip")
    plain_feats = {n: FeatureSpace(base, ds).split(n) for n in ("train", "dev")}
    flip_feats = {n: FeatureSpace(flip, ds).split(n) for n in ("train", "dev")}
    assert runs.features_digest(plain_feats) != runs.features_digest(flip_feats)
    assert runs.run_key_parts(base, plain_feats)["config"] == {k: v for k, v in base.to_dict().items() if k != "name"}
    trained = runs.train_cached(flip, flip_feats)
    assert len(trained.history) == base.max_epochs
    assert trained.config.image_views == "flip"


def test_augmentation_and_trained_layers_make_a_config_less_simple_in_a_tie():
    from flickr_retrieval.experiments import complexity

    plain = RunConfig(**TINY_CONFIG)
    ladder = [
        plain,
        plain.replace(image_views="flip"),
        plain.replace(image_views="crops"),
        plain.replace(image_views="crops", test_view="mean"),
        plain.replace(tune_image_heads=True),
    ]
    assert [complexity(c) for c in ladder] == sorted(complexity(c) for c in ladder)
    assert len({complexity(c) for c in ladder}) == len(ladder)
