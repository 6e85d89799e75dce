"""Fixtures: a tiny Flickr8k made on the fly, in either layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from flickr_retrieval.data import ExpectedCounts
from PIL import Image

TINY_SPLITS = {"train": 4, "dev": 2, "test": 2}
TINY = ExpectedCounts(images=8, splits=tuple(TINY_SPLITS.items()))
#: A small InfoNCE run on the tiny data set (the ``tiny_run`` fixture's; tests vary it with ``**``).
TINY_CONFIG = dict(
    name="tiny",
    image_backbone="mobilenet_v2",
    loss="infonce",
    negatives="in_batch",
    hidden_dim=32,
    embed_dim=16,
    lr=1e-3,
    batch_size=8,
    captions_per_image=5,
    max_epochs=3,
    early_stopping=False,
)
COLOURS = ["red", "green", "blue", "yellow", "black", "white", "orange", "purple"]


def make_tiny_flickr8k(root: Path, layout: str = "prepared", size: int = 40) -> Path:
    """Write 8 coloured images with 5 captions each and 4/2/2 splits under ``root``."""
    if layout == "prepared":
        image_dir, text_dir = root / "Images", root
    else:
        image_dir, text_dir = root / "Flicker8k_Dataset", root / "Flickr8k_text"
    image_dir.mkdir(parents=True, exist_ok=True)
    text_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = [f"{1000 + i}_{c}.jpg" for i, c in enumerate(COLOURS)]
    lines = []
    for name, colour in zip(names, COLOURS):
        pixels = (rng.random((size, size, 3)) * 60).astype(np.uint8) + np.array(
            Image.new("RGB", (1, 1), colour).getpixel((0, 0)), dtype=np.uint8
        ) // 2
        Image.fromarray(pixels).save(image_dir / name)
        for n in range(5):
            lines.append(f"{name}#{n}\tA {colour} picture number {n} .")
    (text_dir / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n")
    start = 0
    for split, count in TINY_SPLITS.items():
        (text_dir / f"Flickr_8k.{split}Images.txt").write_text("\n".join(names[start : start + count]) + "\n")
        start += count
    return root


@pytest.fixture(autouse=True)
def isolated_from_the_test_run(monkeypatch):
    """Unit tests see none of the study's run settings that ./run_tests.sh exports for the
    notebooks (where exports go, sampled re-training, the seed shift): each test sets what it needs."""
    for name in ("RCP217_RESULTS", "RCP217_FIGURES", "RCP217_RETRAIN", "RCP217_SEED_OFFSET", "RCP217_ROOT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def tiny_root(tmp_path) -> Path:
    return make_tiny_flickr8k(tmp_path / "flickr8k")


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("RCP217_CACHE", str(folder))
    return folder


@pytest.fixture
def tiny_run(tiny_root, isolated_cache):
    """(data, config, space, split features, trained model): a small InfoNCE run on the tiny data set."""
    from flickr_retrieval.config import RunConfig
    from flickr_retrieval.data import load_flickr8k
    from flickr_retrieval.inputs import FeatureSpace
    from flickr_retrieval.train import train

    data = load_flickr8k(tiny_root, expected=TINY)
    config = RunConfig(**TINY_CONFIG)
    space = FeatureSpace(config, data)
    feats = {name: space.split(name) for name in ("train", "dev", "test")}
    return data, config, space, feats, train(config, feats, text_norm=space.text_norm, image_norms=space.image_norms)


def pytest_collection_modifyitems(config, items):
    """Mark ``slow`` every test that builds the tiny Flickr8k (it loads backbones and encoders, and
    most of them train): ``./run_tests.sh fast`` runs the others, pure functions on hand-made data."""
    for item in items:
        if "tiny_root" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
