"""The dev-only grid (notebook 18): trained settings scored on dev, the test split never loaded, and
the dev choice over an extended grid keeping the old edge on a tie."""

from __future__ import annotations

from conftest import TINY, TINY_CONFIG
from flickr_retrieval import dev_grid
from flickr_retrieval.config import RunConfig
from flickr_retrieval.data import load_flickr8k
from flickr_retrieval.inputs import FeatureSpace


def test_a_grid_is_trained_and_scored_on_dev_without_loading_test(tiny_root, isolated_cache, monkeypatch):
    data = load_flickr8k(tiny_root, expected=TINY)
    real = FeatureSpace.split

    def no_test(self, name):
        assert name != "test", "the dev grid loaded the test split"
        return real(self, name)

    monkeypatch.setattr(FeatureSpace, "split", no_test)
    base = RunConfig(**{**TINY_CONFIG, "early_stopping": True, "patience": 3})
    grid = {"lr 1e-3": base, "lr 5e-4": base.replace(name="tiny-half", lr=5e-4)}
    results = dev_grid.explore(data, grid, seeds=(0, 1))
    assert set(results) == set(grid) and all(len(r["dev"]) == 2 for r in results.values())
    assert all(0 <= v <= 300 for r in results.values() for v in r["dev"])
    assert list(dev_grid.table(results).index) == list(grid)


def test_the_dev_choice_keeps_the_old_edge_on_a_tie_and_moves_for_a_clear_gain():
    tie = {"edge": {"dev": [150.0, 151.0, 149.0]}, "past": {"dev": [150.5, 151.5, 149.5]}}
    assert dev_grid.verdict(tie, "edge", ["edge", "past"])["moved"] is False
    gain = {"edge": {"dev": [150.0, 151.0, 149.0]}, "past": {"dev": [160.0, 161.0, 159.0]}}
    out = dev_grid.verdict(gain, "edge", ["edge", "past"])
    assert out["moved"] is True and out["chosen"] == "past"
