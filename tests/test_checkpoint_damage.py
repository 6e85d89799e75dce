"""Damaged checkpoints: every damage is a CheckpointError, never another exception, never other weights."""

import random

import pytest
import torch
from flickr_retrieval.checkpoint import TrainedModel
from flickr_retrieval.errors import CheckpointError


@pytest.fixture
def saved(tiny_run, tmp_path):
    *_, trained = tiny_run
    path = tmp_path / "model.pt"
    trained.save(path)
    return trained, path


def _same_weights(a, b) -> bool:
    sa, sb = a.objective.state_dict(), b.objective.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_fuzzed_files_load_the_same_weights_or_fail_clearly(saved, tmp_path):
    trained, path = saved
    data = path.read_bytes()
    rng = random.Random(0)
    outcomes = {"error": 0, "same": 0}
    for n in range(150):
        damaged = bytearray(data)
        how = n % 3
        if how == 0:  # flip one byte
            i = rng.randrange(len(damaged))
            damaged[i] ^= 1 << rng.randrange(8)
        elif how == 1:  # truncate
            damaged = damaged[: rng.randrange(len(damaged))]
        else:  # overwrite a run of bytes
            i = rng.randrange(len(damaged))
            damaged[i : i + 16] = bytes(rng.randrange(256) for _ in range(16))
        target = tmp_path / f"damaged-{n}.pt"
        target.write_bytes(bytes(damaged))
        try:
            loaded = TrainedModel.load(target)
        except CheckpointError:
            outcomes["error"] += 1
            continue
        assert _same_weights(loaded, trained), f"mutation {n} loaded other weights silently"
        outcomes["same"] += 1
    assert outcomes["error"] > 100


def test_a_huge_size_in_the_spec_is_refused_before_allocation(saved, tmp_path):
    trained, path = saved
    state = torch.load(path, weights_only=True)
    state["spec"]["hidden_dim"] = 10**9  # would ask for gigabytes when the model is built
    torch.save(state, tmp_path / "huge.pt")
    with pytest.raises(CheckpointError, match="hidden_dim=1000000000"):
        TrainedModel.load(tmp_path / "huge.pt")


def test_non_finite_weights_are_refused(saved, tmp_path):
    from flickr_retrieval.checkpoint import state_digest

    trained, path = saved
    state = torch.load(path, weights_only=True)
    key = next(iter(state["state_dict"]))
    state["state_dict"][key] = torch.full_like(state["state_dict"][key], float("nan"))
    state["sha256"] = state_digest(state["state_dict"])  # a consistent file whose weights are NaN
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="non-finite"):
        TrainedModel.load(tmp_path / "nan.pt")
