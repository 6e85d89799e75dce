"""Search and text fine-tuning on the tiny data set, with the real offline models."""

import numpy as np
import pytest
from flickr_retrieval.checkpoint import TrainedModel
from flickr_retrieval.evaluation import similarity
from flickr_retrieval.models import ModelSpec, TextTunedDualEncoder, build_model
from flickr_retrieval.sampling import length_bucketed
from flickr_retrieval.search.searcher import Searcher
from flickr_retrieval.train import train


def test_search_returns_k_ranked_hits_and_rejects_bad_input(tiny_run):
    data, config, space, feats, trained = tiny_run
    searcher = Searcher(trained, collection="all", data=data)
    hits = searcher.search("A red picture", k=3)
    assert [h.rank for h in hits] == [1, 2, 3]
    assert hits[0].score >= hits[1].score >= hits[2].score
    assert all(h.image_id in data.image_ids for h in hits)
    with pytest.raises(ValueError, match="empty"):
        searcher.search("   ")
    with pytest.raises(ValueError, match="k must be"):
        searcher.search("a dog", k=9)
    with pytest.raises(ValueError, match="k must be"):
        searcher.search("a dog", k=0)
    with pytest.raises(ValueError, match="unknown run"):
        Searcher("no-such-run", data=data)
    for name in ("../../x", "/tmp/x", "..", "a/b", ""):
        with pytest.raises(ValueError, match="invalid run name"):
            Searcher(name, data=data)
    with pytest.raises(ValueError, match="unknown collection 'validation'"):
        Searcher(trained, collection="validation", data=data)
    for name in ("../x", "/etc", "a/b"):
        with pytest.raises(ValueError, match="invalid collection name"):
            Searcher(trained, collection=name, data=data)
    with pytest.raises(ValueError, match="too long: .* at most 64"):  # never silently truncated
        searcher.search("a dog runs on the beach " * 30)
    with pytest.raises(ValueError, match="too long"):
        searcher.figure("a dog " * 2000, k=2)
    import io

    buffer = io.BytesIO()
    searcher.figure("a big brown dog runs " * 11, k=2).savefig(buffer, format="png", bbox_inches="tight")
    from PIL import Image

    assert Image.open(io.BytesIO(buffer.getvalue())).size[0] < 1500  # the long title is wrapped


def test_search_scores_match_the_evaluation_similarity(tiny_run):
    data, config, space, feats, trained = tiny_run
    searcher = Searcher(trained, collection="test", data=data)
    test = feats["test"]
    sim = similarity(trained.model, test)
    hits = searcher.search(test.sentences[0], k=2)
    assert hits[0].score == pytest.approx(float(sim[0].max()), abs=1e-4)


def test_length_buckets_keep_every_caption():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 20, size=40)
    batches = [np.arange(i, i + 8) for i in range(0, 40, 8)]
    bucketed = length_bucketed(batches, lengths, rng)
    assert sorted(np.concatenate(bucketed).tolist()) == list(range(40))
    assert np.mean([np.ptp(lengths[b]) for b in bucketed]) < np.mean([np.ptp(lengths[b]) for b in batches])


def test_finetuning_runs_saves_and_reloads(tiny_run, tmp_path):
    data, config, space, feats, trained = tiny_run
    tuned_config = config.replace(name="tiny-tuned", finetune_text=True, max_epochs=1, batch_size=8)
    tuned = train(tuned_config, feats, init=trained, text_norm=space.text_norm)
    assert isinstance(tuned.model, TextTunedDualEncoder) and tuned.spec.kind == "text_tuned"
    assert [h["epoch"] for h in tuned.history] == [0, 1]
    before = similarity(tuned.model, feats["test"])
    tuned.save(tmp_path / "tuned.pt")
    loaded = TrainedModel.load(tmp_path / "tuned.pt")
    np.testing.assert_allclose(similarity(loaded.model, feats["test"]), before, atol=1e-5)
    # epoch 0 (no update yet) reproduces the frozen-feature model's dev ranking
    frozen_dev = similarity(trained.model, feats["dev"])
    start = build_model(ModelSpec.from_config(tuned_config, trained.spec.text_dim, trained.spec.image_dim))
    start.head.load_state_dict(trained.model.state_dict())
    np.testing.assert_allclose(similarity(start, feats["dev"]), frozen_dev, atol=1e-4)
    searcher = Searcher(loaded, collection="all", data=data)
    assert len(searcher.search("a green picture", k=2)) == 2


def test_experiment_table_verdicts_and_best_export(tiny_run, tmp_path, monkeypatch):
    import dataclasses

    from flickr_retrieval import experiments, results
    from flickr_retrieval.experiments import RowSpec

    monkeypatch.setenv("RCP217_ROOT", str(tmp_path))  # exports go to a scratch results/
    (tmp_path / "pyproject.toml").write_text("flickr-retrieval")
    data, config, space, feats, trained = tiny_run
    experiment = experiments.Experiment(data, n_boot=20)
    experiment.add(RowSpec("1", "first", None, "-", config), trained)
    experiment.run(
        RowSpec("2", "second", "1", "one epoch only", config.replace(name="second", max_epochs=1)), seeds=(0, 1)
    )
    experiment.ensure_seeds("1", (0, 1))
    table = experiment.table()
    assert list(table.index) == ["1 first", "2 second"] and table.loc["2 second", "changed from"] == "1"
    assert table.loc["2 second", "seeds"] == 2 and table.loc["1 first", "seeds"] == 2
    assert len(experiment.verdicts()) == 1 and experiment.verdicts()[0].startswith(
        "2 second vs 1 (seeds 0, 1): R@1+R@5+R@10"
    )
    assert "t2i R@1" in repr(experiment.rows["1"])
    selection = experiment.selection()
    assert selection["chosen"] in ("1", "2") and set(selection["within_tolerance"]) <= {"1", "2"}
    chosen = experiment.rows[selection["chosen"]]
    best = dataclasses.replace(chosen.first.model, config=chosen.first.model.config.replace(name="best"))
    _, f = experiment.features(best.config)
    folder = results.export_run(
        best,
        chosen.result["similarity"],
        f["test"].caption_ids,
        f["test"].image_ids,
        {k: v for k, v in chosen.result.items() if k not in ("similarity", "seconds")},
    )
    assert folder == tmp_path / "results" / "best" and (folder / "metrics.json").is_file()
    assert results.load_metrics("best")["config"]["name"] == "best"
    assert results.load_metrics("best")["config_unused"] == best.config.unused_fields()
    assert experiments.target_check({"R@1": 30, "R@5": 50, "R@10": 70, "medr": 5}, experiments.ENSEMBLE_TARGETS) == {
        "R@1": True,
        "R@5": False,
        "R@10": True,
        "medr": True,
    }
    assert len(Searcher("best", data=data).search("a blue picture", k=1)) == 1
    fig = Searcher("best", data=data).figure("a blue picture", k=3)
    assert len(fig.axes) == 3
    from flickr_retrieval import plots

    bars = plots.bar_table(table.assign(lo=table["R@1"] - 1, hi=table["R@1"] + 1), "R@1", ("lo", "hi"))
    assert bars.axes[0].get_xlabel() == "R@1"


def test_search_needs_no_caption_features(tiny_run, monkeypatch):
    """The checkpoint carries the normalisers, so search reads the image features only."""
    import dataclasses

    from flickr_retrieval import inputs

    data, config, space, feats, trained = tiny_run
    bare = dataclasses.replace(trained, text_norm=None, image_norms=None)  # as 05 saves its runs (no normalisation)

    def refuse(*args, **kwargs):
        raise AssertionError("search loaded the caption features")

    monkeypatch.setattr(inputs, "dataset_caption_features", refuse)
    for run in (trained, bare):
        assert len(Searcher(run, collection="test", data=data).search("a red picture", k=2)) == 2


def test_search_through_the_approximate_index_finds_what_the_exact_scan_finds(tiny_run):
    from flickr_retrieval.search.vector_index import ApproximateIndex, ExactIndex

    data, config, space, feats, trained = tiny_run
    exact = Searcher(trained, collection="all", data=data)
    approximate = Searcher(trained, collection="all", data=data, approximate_from=1)  # any size: the approximate index
    assert isinstance(exact.index, ExactIndex) and isinstance(approximate.index, ApproximateIndex)
    assert (
        approximate.index.recall_at_10 >= 0.995 and approximate.index.calibration_queries == 10
    )  # the 10 dev captions
    for query in ("A red picture", "a green picture number 3", "something blue"):
        want, got = exact.search(query, k=4), approximate.search(query, k=4)
        assert [h.image_id for h in got] == [h.image_id for h in want]
        assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-5)
