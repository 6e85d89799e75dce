"""The training core: one fit loop with early stopping, the objective as one module, models built
from a spec, safe checkpoints, and no hidden side effects."""

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from flickr_retrieval import imports, losses
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
    cfg = RunConfig(
        name="es",
        loss="infonce",
        negatives="in_batch",
        hidden_dim=32,
        embed_dim=8,
        dropout=0.1,
        lr=1e-2,
        batch_size=32,
        max_epochs=40,
        patience=2,
    )
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
    cfg = RunConfig(
        name="rep",
        loss="infonce",
        negatives="in_batch",
        hidden_dim=32,
        embed_dim=8,
        lr=3e-3,
        batch_size=16,
        max_epochs=3,
    )
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


def test_the_package_import_graph_has_no_cycle():
    graph = {m: set(imports.imports(m)) for m in imports.modules()}
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


def test_the_training_core_does_not_import_feature_extraction():
    """models, objective, fit, evaluation, train and checkpoint take feature tensors; they never pull
    in the CNNs, the text encoders or the data set reader."""
    graph = {m: set(imports.imports(m)) for m in imports.modules()}

    def reach(node, seen):
        for nxt in graph.get(node, ()):
            if nxt not in seen:
                seen.add(nxt)
                reach(nxt, seen)
        return seen

    for core in ("models", "objective", "fit", "evaluation", "train", "checkpoint", "sampling"):
        pulled = reach(core, set()) & {"features", "backbones", "data", "inputs", "images"}
        assert not pulled, f"{core} imports {sorted(pulled)}"


def test_importing_and_drawing_change_no_global_state():
    code = (
        "import matplotlib; matplotlib.use('Agg'); import matplotlib as mpl, torch\n"
        "before = dict(mpl.rcParams); rng = torch.random.get_rng_state()\n"
        "from flickr_retrieval import plots, models, train, search\n"
        "plots.caption_lengths({'a': [1, 2, 2, 3]})\n"
        "from flickr_retrieval.models import ModelSpec, build_model\n"
        "build_model(ModelSpec('dual_encoder', 4, 4, 8, 4))\n"
        "from flickr_retrieval.backbones import load_image_backbone\n"
        "load_image_backbone('mobilenet_v2', pretrained=False, seed=3)\n"
        "changed = [k for k, v in mpl.rcParams.items() if before.get(k) != v and k != 'backend']\n"
        "assert not changed, changed\n"
        "assert torch.equal(torch.random.get_rng_state(), rng), 'the global random state changed'\n"
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


@pytest.mark.parametrize("name", ["efficientnet_lite0", "mobilenet_v2"])
def test_the_extraction_batch_size_changes_features_only_by_float_rounding(tiny_root, name):
    """Why the batch size is not part of the feature cache key: features at batch 1 and 16 agree."""
    from flickr_retrieval.backbones import load_image_backbone
    from flickr_retrieval.features import extract_image_features

    files = sorted((tiny_root / "Images").glob("*.jpg"))
    bb = load_image_backbone(name)
    one = extract_image_features(bb, files, batch_size=1, show_progress=False)
    default = extract_image_features(bb, files, show_progress=False)
    sixteen = extract_image_features(bb, files, batch_size=16, show_progress=False)
    for other in (default, sixteen):
        cos = (one * other).sum(1) / np.linalg.norm(one, axis=1) / np.linalg.norm(other, axis=1)
        assert cos.min() > 0.99999


def test_the_bench_summary_adopts_only_matching_paths_that_are_much_faster():
    from flickr_retrieval.benches.throughput import summary

    rows = [
        {
            "model": "efficientnet_lite0",
            "unit": "images/s",
            "path": "package",
            "rate": 100.0,
            "cosine": 1.0,
            "package": True,
        },
        {
            "model": "efficientnet_lite0",
            "unit": "images/s",
            "path": "bf16",
            "rate": 300.0,
            "cosine": 0.99,
            "package": False,
        },
        {
            "model": "efficientnet_lite0",
            "unit": "images/s",
            "path": "other runtime",
            "rate": 140.0,
            "cosine": 0.9999,
            "package": False,
        },
        {"model": "mobilenet_v2", "unit": "images/s", "path": "package", "rate": 200.0, "cosine": 1.0, "package": True},
        {
            "model": "mobilenet_v2",
            "unit": "images/s",
            "path": "fast runtime",
            "rate": 320.0,
            "cosine": 0.9995,
            "package": False,
        },
    ]
    lines = summary(rows)
    assert "'other runtime' 140.0 (1.40x: keep the package path)" in lines[0] and "min cosine 0.9900" in lines[0]
    assert "(1.60x: adopt)" in lines[1]
    assert lines[2].endswith("0.50x")


def test_seeds_retrain_and_ensembles_average_the_members_scores(tiny_root, isolated_cache):
    from conftest import TINY, TINY_CONFIG
    from flickr_retrieval.config import RunConfig
    from flickr_retrieval.data import load_flickr8k
    from flickr_retrieval.evaluation import similarity
    from flickr_retrieval.experiments import Experiment

    data = load_flickr8k(tiny_root, expected=TINY)
    experiment = Experiment(data, n_boot=10)
    config = RunConfig(**{**TINY_CONFIG, "name": "tiny-seeds", "max_epochs": 2})
    from flickr_retrieval.experiments import RowSpec

    experiment.run(RowSpec("1", "tiny", None, "-", config), seeds=(0, 1))
    runs = [experiment.rows["1"].runs[s] for s in (0, 1)]
    assert [t.config.seed for t in runs] == [0, 1]
    assert not torch.equal(
        runs[0].model.model.state_dict()["text_branch.0.weight"],
        runs[1].model.model.state_dict()["text_branch.0.weight"],
    )
    row = experiment.ensemble(RowSpec("E1", "tiny x 2", "1", "mean of two seeds"), runs)
    test = experiment.features(config)[1]["test"]
    np.testing.assert_allclose(
        row.result["similarity"], np.mean([similarity(t.model.model, test) for t in runs], axis=0), rtol=1e-6
    )
    table = experiment.table()
    assert table.loc["E1 tiny x 2", "epochs kept"] == "2 models" and table.loc["1 tiny", "seeds"] == 2
    assert "±" not in str(table.loc["1 tiny", "R@1"]) and table.loc["1 tiny", "R@1 seed sd"] is not None
    assert {"i2t R@1", "i2t R@10", "lenient R@10 chance"} <= set(table.columns)
    assert "E1" in experiment.comparisons() and experiment.comparisons()["E1"]["vs"] == "its members' mean"
    assert experiment.selection()["chosen"] == "1"  # an ensemble is never the exported model


def test_random_once_negatives_are_drawn_once_and_random_ones_every_epoch(tiny_run):
    from flickr_retrieval.sampling import BatchSampler

    data, config, space, feats, trained = tiny_run
    train = feats["train"]
    once = config.replace(loss="cosine_embedding", negatives="random_once", batch_size=4, captions_per_image=5)
    sampler = BatchSampler(once, train)
    rng = np.random.default_rng(0)
    by_caption = []
    for _ in range(2):
        seen = {}
        for b in sampler.epoch(rng):
            for own, neg, vec in zip(b.own.tolist(), b.negatives.tolist(), b.queries.vectors):
                seen[float(vec.sum())] = (own, neg)
        by_caption.append(seen)
    assert by_caption[0] == by_caption[1]  # the same negative for each caption, epoch after epoch
    assert all(own != neg for own, neg in by_caption[0].values())
    assert len(by_caption[0]) == len(train.caption_ids)  # every caption in every epoch
    per_epoch = BatchSampler(
        config.replace(loss="cosine_embedding", negatives="random", batch_size=4, captions_per_image=5), train
    )
    draws = [
        [b.in_batch.tolist() for b in per_epoch.epoch(np.random.default_rng(0))],
        [b.in_batch.tolist() for b in per_epoch.epoch(np.random.default_rng(1))],
    ]
    assert draws[0] != draws[1]


def test_the_rand_mask_dropout_is_inverted_dropout_with_the_same_keep_rate():
    from flickr_retrieval.models import Dropout

    drop = Dropout(0.5)
    x = torch.ones(512, 1024)
    drop.eval()
    assert drop(x) is x  # identity in eval mode
    drop.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        y = drop(x)
        torch.manual_seed(0)
        assert torch.equal(drop(x), y)  # seeded: the same mask again
    assert set(y.unique().tolist()) == {0.0, 2.0}  # kept units scaled by 1 / (1 - p)
    assert abs(float((y > 0).float().mean()) - 0.5) < 0.005  # 524288 draws: sd 0.0007
    assert abs(float(Dropout(0.2).train()(x).ne(0).float().mean()) - 0.8) < 0.005
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert drop(x.bfloat16()).dtype == torch.bfloat16


def test_use_fast_dropout_swaps_every_plain_dropout_and_keeps_p():
    from flickr_retrieval.models import Dropout, branch, use_fast_dropout
    from torch import nn

    net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.1), nn.Sequential(nn.ReLU(), nn.Dropout(0.3)))
    assert use_fast_dropout(net) is net
    found = [m for m in net.modules() if isinstance(m, nn.Dropout)]
    assert [type(m) for m in found] == [Dropout, Dropout] and [m.p for m in found] == [0.1, 0.3]
    assert isinstance(branch(4, 8, 2, 0.5)[2], Dropout)


@pytest.mark.parametrize("arithmetic", ["float32", "bfloat16"])
def test_the_bench_times_every_training_path_and_marks_the_package_one(arithmetic, monkeypatch):
    from flickr_retrieval.benches.throughput import TRAINING_PATHS, training_paths

    monkeypatch.setenv("RCP217_PRECISION", arithmetic)
    rows = training_paths(steps=2, batches=(8,), repeats=1)
    assert [r["path"] for r in rows] == [label for label, _ in TRAINING_PATHS]
    package = [r["path"] for r in rows if r["package"]]
    assert len(package) == 1 and package[0].startswith(arithmetic) and "fused Adam" in package[0]
    assert all(r["rate"] > 0 and r["model"] == "dual encoder training, batch 8" for r in rows)


def test_the_training_step_is_measured_against_the_machines_limits():
    from flickr_retrieval.benches.training import format_limits, training_limits

    rows = training_limits(steps=2, repeats=1, batch=8, sizes={"tiny": (16, 32)}, peak_size=128, bandwidth_mb=16)
    assert [r["precision"] for r in rows] == ["float32", "bfloat16"]
    for r in rows:
        assert r["samples/s"] > 0 and r["GFLOP/step"] > 0 and 0 < r["of peak"] and 0 < r["of bandwidth"]
        assert set(r["MB/step"]) == {"weights", "gradients", "optimizer", "activations"}
    # float32: weights read twice, gradients written and read, Adam's state and weights read and written
    params = 16 * 2048 + 2048 + 2048 * 512 + 512 + 32 * 2048 + 2048 + 2048 * 512 + 512 + 1
    assert rows[0]["MB/step"]["weights"] == pytest.approx(8 * params / 1e6)
    assert len(format_limits(rows)) == 3


def test_building_or_loading_a_model_leaves_the_global_random_state_as_it_was(tmp_path):
    """Only training draws from torch's generator (inside its own fork); building a model, loading a
    checkpoint or a backbone with random weights changes nothing a caller would see."""
    from flickr_retrieval.backbones import load_image_backbone
    from flickr_retrieval.checkpoint import TrainedModel
    from flickr_retrieval.config import RunConfig
    from flickr_retrieval.models import ModelSpec, build_model, build_model_drawing
    from flickr_retrieval.train import train
    from test_training import _toy_splits

    trained = train(
        RunConfig(loss="infonce", negatives="in_batch", hidden_dim=8, embed_dim=4, max_epochs=1), _toy_splits()
    )
    trained.save(tmp_path / "model.pt")
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    first = build_model(ModelSpec("dual_encoder", 4, 4, 8, 4))
    TrainedModel.load(tmp_path / "model.pt")
    load_image_backbone("mobilenet_v2", pretrained=False, seed=5)
    train(RunConfig(loss="infonce", negatives="in_batch", hidden_dim=8, embed_dim=4, max_epochs=1), _toy_splits())
    assert torch.equal(torch.random.get_rng_state(), before)
    second = build_model(ModelSpec("dual_encoder", 4, 4, 8, 4))  # the same draw again: nothing advanced
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    build_model_drawing(ModelSpec("dual_encoder", 4, 4, 8, 4))  # the training primitive does advance it
    assert not torch.equal(torch.random.get_rng_state(), before)


def test_training_curves_mark_the_kept_epoch_of_a_history_that_starts_at_epoch_0():
    """A fine-tuning's history starts at epoch 0 (its start): the dot is on the kept epoch's row,
    not on ``history[best - 1]`` (with best 0, the last row)."""
    import matplotlib

    matplotlib.use("Agg")
    from flickr_retrieval import plots

    history = [
        {
            "epoch": e,
            "loss": 1.0 / (e + 1),
            "dev_R@1": 10.0 + e,
            "dev_R@5": 30.0 + e,
            "dev_R@10": 40.0 + 10 * e,
            "dev_medr": 9.0 - e,
        }
        for e in range(3)
    ]
    fig = plots.training_curves({"tuned": history}, {"tuned": 0})
    dots = [line for line in fig.axes[1].lines if line.get_marker() == "o"]
    assert [tuple(d.get_xdata()) for d in dots] == [(0,)] and [tuple(d.get_ydata()) for d in dots] == [(40.0,)]
