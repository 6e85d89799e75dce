"""The cache of trained runs: a second call reads what the first trained, and anything that changes
the weights changes the key."""

import numpy as np
import pytest
from flickr_retrieval import runs
from flickr_retrieval.config import RunConfig
from flickr_retrieval.evaluation import similarity
from test_training import _toy_splits


def test_a_second_call_reads_the_run_back(isolated_cache):
    feats = _toy_splits()
    cfg = RunConfig(
        name="a", loss="infonce", negatives="in_batch", hidden_dim=16, embed_dim=4, lr=3e-3, batch_size=16, max_epochs=2
    )
    first = runs.train_cached(cfg, feats)
    second = runs.train_cached(cfg.replace(name="b"), feats)  # the name is not part of the key
    assert not first.from_cache and second.from_cache and second.config.name == "b"
    assert (
        second.history == first.history
        and second.best_epoch == first.best_epoch
        and second.temperature == first.temperature
    )
    np.testing.assert_array_equal(similarity(second.model, feats["test"]), similarity(first.model, feats["test"]))
    assert not runs.train_cached(cfg.replace(seed=1), feats).from_cache  # another config
    other = _toy_splits(seed=1)
    assert not runs.train_cached(cfg, other).from_cache  # other inputs
    assert len(list((isolated_cache / "runs").glob("run-*.pt"))) == 3


def test_a_damaged_entry_is_trained_again(isolated_cache):
    feats = _toy_splits()
    cfg = RunConfig(name="a", hidden_dim=16, embed_dim=4, max_epochs=1)
    runs.train_cached(cfg, feats)
    (entry,) = (isolated_cache / "runs").glob("run-*.pt")
    entry.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="ignoring run-cache entry"):
        again = runs.train_cached(cfg, feats)
    assert not again.from_cache


def test_the_cache_can_be_turned_off(isolated_cache, monkeypatch):
    monkeypatch.setenv("RCP217_RUN_CACHE", "0")
    feats = _toy_splits()
    cfg = RunConfig(name="a", hidden_dim=16, embed_dim=4, max_epochs=1)
    runs.train_cached(cfg, feats)
    assert not runs.train_cached(cfg, feats).from_cache and not (isolated_cache / "runs").exists()


def test_the_run_cache_key_ignores_layout_comments_and_docstrings_but_not_code():
    from flickr_retrieval.runs import code_digest

    source = 'def f(x):\n    """Twice x."""\n    return 2 * x  # doubled\n'
    same = 'def f(x):\n    """Two times ``x``, reworded."""\n    return 2*x\n'
    other = 'def f(x):\n    """Twice x."""\n    return 3 * x\n'
    assert code_digest(source) == code_digest(same)
    assert code_digest(source) != code_digest(other)
    assert code_digest('"""Module."""\nX = 1\n') == code_digest("X = 1\n") != code_digest("X = 2\n")
