"""Each loss declares what it trains (models, negatives, labels); the config asks it, and nothing
else in the package compares loss names."""

import ast
from pathlib import Path

import pytest
from flickr_retrieval import losses
from flickr_retrieval.config import LOSSES, NEGATIVES, RunConfig
from flickr_retrieval.losses import LOSS_SPECS, LossSpec

LIB = Path(__file__).resolve().parents[1] / "lib" / "flickr_retrieval"


@pytest.mark.parametrize("name", list(LOSS_SPECS))
def test_the_config_accepts_exactly_what_a_loss_declares(name):
    spec = LOSS_SPECS[name]
    for model in spec.models:
        for negatives in NEGATIVES:
            if negatives in spec.negatives:
                RunConfig(model=model, loss=name, negatives=negatives)
            else:
                with pytest.raises(ValueError, match="cannot be trained"):
                    RunConfig(model=model, loss=name, negatives=negatives)
    with pytest.raises(ValueError, match="cannot be trained"):
        RunConfig(
            model=next(m for m in ("dual_encoder", "pair_classifier") if m not in spec.models),
            loss=name,
            negatives=spec.negatives[0],
        )
    if "01" not in spec.label_schemes:
        with pytest.raises(ValueError, match="label_scheme"):
            RunConfig(model=spec.models[0], loss=name, negatives=spec.negatives[0], label_scheme="01")
    finetune = dict(model=spec.models[0], loss=name, negatives=spec.negatives[0], finetune_text=True)
    if spec.finetunes_text and spec.models[0] == "dual_encoder":
        RunConfig(**finetune)
    else:
        with pytest.raises(ValueError, match="finetune_text"):
            RunConfig(**finetune)


def test_the_config_lists_the_declared_losses():
    assert LOSSES == tuple(LOSS_SPECS)
    with pytest.raises(ValueError, match="loss must be one of"):
        RunConfig(loss="hinge")


def test_a_new_loss_is_one_registry_entry(monkeypatch):
    """A loss added to the registry alone trains: config, sampler and objective take it as declared."""
    from flickr_retrieval.train import train
    from test_training import _toy_splits

    calls = []

    def squared_hinge(scores, positive, *, margin, hardest, temperature):
        calls.append(scores.shape)
        return losses.triplet(scores, positive, margin, max_violation=False) ** 2

    spec = LossSpec("squared_hinge", "batch", ("dual_encoder",), ("in_batch",), batch_loss=squared_hinge)
    monkeypatch.setitem(LOSS_SPECS, "squared_hinge", spec)
    monkeypatch.setattr("flickr_retrieval.config.LOSSES", tuple(LOSS_SPECS))
    config = RunConfig(
        loss="squared_hinge",
        negatives="in_batch",
        margin=0.2,
        hidden_dim=16,
        embed_dim=4,
        lr=3e-3,
        batch_size=16,
        max_epochs=1,
        early_stopping=False,
    )
    trained = train(config, _toy_splits())
    assert calls and trained.temperature is None and len(trained.history) == 1


def test_a_spec_must_say_how_a_batch_reaches_it():
    with pytest.raises(ValueError, match="inputs must be one of"):
        LossSpec("x", "triples", ("dual_encoder",), ("in_batch",))
    with pytest.raises(ValueError, match="batch_loss"):
        LossSpec("x", "batch", ("dual_encoder",), ("in_batch",))


def test_no_module_but_losses_compares_loss_names():
    names = set(LOSS_SPECS)
    found = []
    for path in sorted(LIB.rglob("*.py")):
        if path.name == "losses.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                constants = {
                    c.value for c in ast.walk(node) if isinstance(c, ast.Constant) and isinstance(c.value, str)
                }
                if constants & names:
                    found.append(f"{path.name}:{node.lineno}")
    assert not found, f"loss names compared outside losses.py: {found}"


def test_the_export_says_which_config_fields_a_model_and_loss_do_not_read():
    projection = RunConfig(model="cosine_projection", early_stopping=False)
    assert {"hidden_dim", "dropout", "embed_dim", "temperature", "patience"} <= set(projection.unused_fields())
    assert "margin" not in projection.unused_fields()  # CosineEmbeddingLoss reads its margin
    infonce = RunConfig(loss="infonce", negatives="in_batch")
    assert {"margin", "label_scheme", "text_lr"} == set(infonce.unused_fields())
    assert not {"hidden_dim", "dropout", "temperature", "patience"} & set(infonce.unused_fields())
    pair = RunConfig(model="pair_classifier", loss="bce", negatives="random")
    assert {"hidden_dim", "dropout", "margin", "temperature"} <= set(pair.unused_fields())
