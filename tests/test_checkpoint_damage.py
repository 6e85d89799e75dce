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


def _resealed(state: dict) -> dict:
    """A crafted file with a digest that matches its contents (what an attacker can write)."""
    from flickr_retrieval.checkpoint import checkpoint_digest

    state["sha256"] = checkpoint_digest(state)
    return state


def _refused_before_allocation(path, match: str) -> None:
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=match):
            TrainedModel.load(path)
        assert tracemalloc.get_traced_memory()[1] < 200 * 2**20  # nothing near what the spec asks for
    finally:
        tracemalloc.stop()


def test_a_huge_size_in_the_spec_is_refused_before_allocation(saved, tmp_path):
    trained, path = saved
    state = torch.load(path, weights_only=True)
    state["spec"]["hidden_dim"] = 10**9  # would ask for gigabytes when the model is built
    torch.save(_resealed(state), tmp_path / "huge.pt")
    _refused_before_allocation(tmp_path / "huge.pt", "shape")


def test_an_extra_empty_tensor_does_not_let_a_huge_spec_through(saved, tmp_path):
    """A zero-element tensor of the spec's sizes used to satisfy "each size appears in some tensor"."""
    trained, path = saved
    state = torch.load(path, weights_only=True)
    state["spec"]["hidden_dim"] = 300_000
    state["state_dict"]["padding"] = torch.zeros(0, 300_000)
    torch.save(_resealed(state), tmp_path / "empty.pt")
    _refused_before_allocation(tmp_path / "empty.pt", "do not match|shape")


def test_image_head_sizes_are_checked_before_allocation(saved, tmp_path):
    trained, path = saved
    state = torch.load(path, weights_only=True)
    state["spec"]["image_heads"] = [[49, 100_000, 50_000]]  # a head of 5 billion weights
    state["spec"]["image_dim"] = 50_000
    torch.save(_resealed(state), tmp_path / "heads.pt")
    _refused_before_allocation(tmp_path / "heads.pt", "do not match|shape")


def test_the_digest_covers_the_normalisers_the_config_and_the_history(saved, tmp_path):
    trained, path = saved
    for where in ("image_norms", "config", "history"):
        state = torch.load(path, weights_only=True)
        if where == "image_norms":
            state["image_norms"] = [
                {
                    "how": "standardize",
                    "mean": torch.full((4,), 9.8e306, dtype=torch.float64),
                    "std": torch.ones(4, dtype=torch.float64),
                }
            ]
        elif where == "config":
            state["config"]["lr"] = 1.0
        else:
            state["history"][0]["loss"] = 0.0
        torch.save(state, tmp_path / f"{where}.pt")  # the old digest, other contents
        with pytest.raises(CheckpointError, match="SHA-256"):
            TrainedModel.load(tmp_path / f"{where}.pt")


def test_non_finite_weights_are_refused(saved, tmp_path):
    trained, path = saved
    state = torch.load(path, weights_only=True)
    key = next(iter(state["state_dict"]))
    state["state_dict"][key] = torch.full_like(state["state_dict"][key], float("nan"))
    torch.save(_resealed(state), tmp_path / "nan.pt")  # a consistent file whose weights are NaN
    with pytest.raises(CheckpointError, match="non-finite"):
        TrainedModel.load(tmp_path / "nan.pt")


def test_a_small_file_describing_a_huge_tree_is_refused_at_once(saved, tmp_path):
    """The probe's 14.5 KB model.pt: a history whose shared references make a tree of 2^30 leaves; the
    digest walked it for about 40 minutes under the lock every search waited on."""
    import time

    trained, path = saved
    state = torch.load(path, weights_only=True)
    tree = [0]
    for _ in range(30):
        tree = [tree, tree]  # pickled once per level: the file stays small
    state["history"][0]["notes"] = tree
    torch.save(state, tmp_path / "tree.pt")
    assert (tmp_path / "tree.pt").stat().st_size - path.stat().st_size < 20_000  # a few KB more than the real one
    started = time.perf_counter()
    with pytest.raises(CheckpointError, match="more than 200000 values"):
        TrainedModel.load(tmp_path / "tree.pt")
    assert time.perf_counter() - started < 5


def test_a_stride_zero_view_claiming_gigabytes_is_refused_before_any_copy(saved, tmp_path):
    """The probe's 1.8 KB file: torch.zeros(1).expand(4e9) passed the size checks and asked for 16 GB."""
    trained, path = saved
    state = torch.load(path, weights_only=True)
    state["text_norm"] = {"how": "standardize", "mean": torch.zeros(1).expand(4_000_000_000), "std": None}
    torch.save(state, tmp_path / "view.pt")
    assert (tmp_path / "view.pt").stat().st_size - path.stat().st_size < 20_000
    _refused_before_allocation(tmp_path / "view.pt", "not dense")
