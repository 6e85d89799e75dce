"""The training core: one fit loop with early stopping, the objective as one module, models built
from a spec, safe checkpoints, and no hidden side effects (issue "One training core")."""

import ast
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from flickr_retrieval import losses
from flickr_retrieval.checkpoint import TrainedModel
from flickr_retrieval.config import RunConfig
from flickr_retrieval.errors import CheckpointError
from flickr_retrieval.evaluation import similarity
from flickr_retrieval.fit import EarlyStopping
from flickr_retrieval.train import train
from test_training import _toy_splits

PACKAGE = Path(__file__).resolve().parents[1] / "lib" / "flickr_retrieval"


def _state(trained):
    return {k: v.clone() for k, v in trained.objective.state_dict().items()}


def test_early_stopping_stops_before_the_cap_and_restores_the_best_epoch():
    feats = _toy_splits()
    cfg = RunConfig(name="es", loss="infonce", negatives="in_batch", hidden_dim=32, embed_dim=8, dropout=0.1, lr=1e-2,
                    batch_size=32, max_epochs=40, patience=2)
    stopped = train(cfg, feats)
    assert len(stopped.history) < cfg.max_epochs  # it did stop early
    assert stopped.best_epoch == len(stopped.history) - cfg.patience
    rsum = [h["dev_R@1"] + h["dev_R@5"] + h["dev_R@10"] for h in stopped.history]
    assert stopped.best_epoch == 1 + int(np.argmax(rsum))
    # the same run cut at the best epoch, without early stopping, has exactly the restored weights
    cut = train(cfg.replace(max_epochs=stopped.best_epoch, early_stopping=False), feats)
    assert cut.best_epoch == stopped.best_epoch == len(cut.history)
    a, b = _state(stopped), _state(cut)
    assert a.keys() == b.keys() and "log_scale" in a  # the temperature is part of what is restored
    assert all(torch.equal(a[k], b[k]) for k in a)
    np.testing.assert_array_equal(similarity(stopped.model, feats["test"]), similarity(cut.model, feats["test"]))
    assert stopped.temperature == cut.temperature


def test_without_early_stopping_the_last_epoch_is_kept():
    stopper = EarlyStopping(patience=1, enabled=False)
    module = torch.nn.Linear(2, 2)
    assert not stopper.step(1, 5.0, module) and not stopper.step(2, 1.0, module) and not stopper.step(3, 0.0, module)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    assert stopper.finish(module, 3) == 3
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_early_stopping_helper_keeps_the_first_best_state():
    stopper = EarlyStopping(patience=2)
    module = torch.nn.Linear(2, 1)
    with torch.no_grad():
        module.weight.fill_(1.0)
    assert not stopper.step(1, 3.0, module)
    with torch.no_grad():
        module.weight.fill_(2.0)
    assert not stopper.step(2, 3.0, module)  # a tie is not an improvement
    assert stopper.step(3, 1.0, module)  # second stale epoch: stop
    assert stopper.finish(module, 3) == 1 and torch.all(module.weight == 1.0)


def test_hardest_negative_differs_from_summed_violations():
    # caption 0: negatives 1 and 2 both violate the margin, by 0.3 and 0.1
    scores = torch.tensor([[0.5, 0.6, 0.4], [0.0, 0.9, 0.0], [0.0, 0.0, 0.9]])
    positive = torch.eye(3, dtype=torch.bool)
    # caption direction, margin 0.2: row 0: [.2+.6-.5]=.3, [.2+.4-.5]=.1 -> max .3, sum .4; rows 1, 2: 0
    # image direction: col 0: [.2+0-.5]<0 -> 0; col 1: [.2+.6-.9]<0; col 2: [.2+.4-.9]<0
    hardest = losses.triplet(scores, positive, margin=0.2, max_violation=True)
    summed = losses.triplet(scores, positive, margin=0.2, max_violation=False)
    assert hardest.item() == pytest.approx(0.3 / 3)
    assert summed.item() == pytest.approx(0.4 / 3)


@pytest.mark.parametrize(
    "changes",
    [
        {"loss": "infonce", "negatives": "in_batch"},
        {"model": "pair_classifier", "loss": "bce", "negatives": "random"},
        {"model": "cosine_projection", "loss": "cosine_embedding", "negatives": "random"},
        {"loss": "triplet", "negatives": "hardest_in_batch", "margin": 0.2, "similarity": "euclidean"},
    ],
)
def test_every_model_kind_round_trips_through_its_checkpoint(changes, tmp_path):
    feats = _toy_splits()
    cfg = RunConfig(name="rt", hidden_dim=16, embed_dim=4, lr=3e-3, batch_size=32, max_epochs=3, **changes)
    trained = train(cfg, feats)
    trained.save(tmp_path / "m.pt")
    loaded = TrainedModel.load(tmp_path / "m.pt")
    assert loaded.config == cfg and loaded.spec == trained.spec and loaded.best_epoch == trained.best_epoch
    assert loaded.temperature == trained.temperature
    np.testing.assert_array_equal(similarity(loaded.model, feats["test"]), similarity(trained.model, feats["test"]))


def test_training_is_repeatable_bit_for_bit_in_one_process():
    feats = _toy_splits()
    cfg = RunConfig(name="rep", loss="infonce", negatives="in_batch", hidden_dim=32, embed_dim=8, lr=3e-3, batch_size=16, max_epochs=3)
    first = _state(train(cfg, feats))
    train(cfg.replace(seed=7, dropout=0.2), feats)  # another run in between, other seed
    torch.randn(100)  # and someone else's use of the global RNG
    second = _state(train(cfg, feats))
    assert all(torch.equal(first[k], second[k]) for k in first)



def test_a_crafted_checkpoint_is_refused_without_running_its_code(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"format": 2, "config": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="loaded as data only"):
        TrainedModel.load(tmp_path / "evil.pt")
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", pickle.dumps({"a": 1})])
def test_a_damaged_checkpoint_is_a_clear_error(content, tmp_path):
    (tmp_path / "bad.pt").write_bytes(content)
    with pytest.raises(CheckpointError, match="bad.pt"):
        TrainedModel.load(tmp_path / "bad.pt")


def test_a_checkpoint_with_wrong_shapes_or_keys_is_a_clear_error(tmp_path):
    feats = _toy_splits()
    trained = train(RunConfig(name="x", hidden_dim=16, embed_dim=4, max_epochs=1), feats)
    trained.save(tmp_path / "m.pt")
    state = torch.load(tmp_path / "m.pt", weights_only=True)
    state["spec"]["hidden_dim"] = 17
    torch.save(state, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match="does not describe a valid model"):
        TrainedModel.load(tmp_path / "shape.pt")
    del state["config"]
    torch.save(state, tmp_path / "keys.pt")
    with pytest.raises(CheckpointError, match="lacks"):
        TrainedModel.load(tmp_path / "keys.pt")
    torch.save({"format": 1}, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match="format"):
        TrainedModel.load(tmp_path / "old.pt")


def _imports(module: Path) -> set[str]:
    """Package modules imported at module level (imports inside functions are deferred on purpose)."""
    tree = ast.parse(module.read_text())
    out = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                out.add(node.module.split(".")[0])
            else:
                out.update(alias.name for alias in node.names)
    return out


def test_the_package_import_graph_has_no_cycle():
    graph = {p.stem: _imports(p) for p in PACKAGE.glob("*.py")}
    state: dict[str, int] = {}

    def visit(node, stack):
        if state.get(node) == 1:
            pytest.fail("import cycle: " + " -> ".join([*stack, node]))
        if state.get(node) == 2:
            return
        state[node] = 1
        for nxt in graph.get(node, ()):
            visit(nxt, [*stack, node])
        state[node] = 2

    for node in graph:
        visit(node, [])
    assert "train" not in graph["models"] and "checkpoint" not in graph["models"]


def test_importing_and_drawing_change_no_global_state():
    code = (
        "import matplotlib; matplotlib.use('Agg'); import matplotlib as mpl, torch\n"
        "before = dict(mpl.rcParams); rng = torch.random.get_rng_state()\n"
        "from flickr_retrieval import plots, models, train, search\n"
        "plots.caption_lengths({'a': [1, 2, 2, 3]})\n"
        "from flickr_retrieval.models import ModelSpec, build_model\n"
        "build_model(ModelSpec('dual_encoder', 4, 4, 8, 4))\n"
        "changed = [k for k, v in mpl.rcParams.items() if before.get(k) != v and k != 'backend']\n"
        "assert not changed, changed\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_looking_up_a_path_creates_nothing(tmp_path, monkeypatch):
    from flickr_retrieval import paths, results

    (tmp_path / "pyproject.toml").write_text("flickr-retrieval")
    monkeypatch.setenv("RCP217_ROOT", str(tmp_path))
    monkeypatch.delenv("RCP217_CACHE", raising=False)
    paths.results_dir("no-such-run"), paths.cache_dir(), paths.figures_dir(), results.checkpoint_path("no-such-run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pyproject.toml"]
