"""A first model after a clone: the recipe read from 07's committed export, trained once, exported as
``quickstart``, and trained by the first ``flickr-retrieval-index`` when no run exists."""

import json

import pytest
from flickr_retrieval import quickstart, results
from flickr_retrieval.config import RunConfig
from flickr_retrieval.search import index_cli
from flickr_retrieval.search.searcher import Searcher


def test_the_recipe_is_notebook_07s_committed_choice_renamed_seed_0():
    config = quickstart.recipe()
    committed = json.loads((results.paths.project_root() / "results" / "best" / "metrics.json").read_text())["config"]
    assert config.name == "quickstart" and config.seed == 0
    assert config.setting() == RunConfig.from_dict(committed).setting()


def test_a_first_model_is_trained_exported_and_searched_then_found_by_default(tiny_run, tmp_path, monkeypatch):
    data, config, *_ = tiny_run
    monkeypatch.setenv("RCP217_RESULTS", str(tmp_path / "results"))
    assert results.default_run() == "quickstart"
    said = []
    out = quickstart.train(data, config.replace(name="quickstart", max_epochs=1), say=said.append)
    assert (out["folder"] / "model.pt").is_file() and 0 <= out["t2i"]["R@1"] <= 100
    assert said[0].startswith("training a first model") and said[-1].startswith("quickstart ready in")
    assert results.default_run() == "quickstart"
    metrics = json.loads((out["folder"] / "metrics.json").read_text())
    assert metrics["made_by"].startswith("flickr_retrieval.quickstart") and metrics["config"]["seed"] == 0
    assert len(Searcher("quickstart", "test", data=data).search("a red picture", 2)) == 2


def test_the_first_index_trains_the_first_model_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RCP217_RESULTS", str(tmp_path / "results"))
    trained = []

    def fake_train(say):
        trained.append(True)
        say("training a first model (fake)")
        raise SystemExit(7)  # stop before indexing: the call is what is checked

    monkeypatch.setattr(quickstart, "train", lambda say=print: fake_train(say))
    with pytest.raises(SystemExit) as stopped:
        index_cli.main([str(tmp_path), "--name", "mine"])
    assert stopped.value.code == 7 and trained and "training a first model" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # a run named on purpose is never trained behind the user's back
        index_cli.main([str(tmp_path), "--name", "mine", "--run", "nosuch"])
    assert len(trained) == 1
