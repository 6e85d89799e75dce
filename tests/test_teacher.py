"""The distillation teacher: its embeddings give the ensemble's scores, are cached by what identifies
the members' weights, and never trust a damaged entry."""

import numpy as np
import pytest
from flickr_retrieval import teacher
from flickr_retrieval.evaluation import similarity
from flickr_retrieval.experiments import Experiment, RowSpec


@pytest.fixture
def two_seeds(tiny_run):
    data, config, *_ = tiny_run
    exp = Experiment(data, n_boot=10)
    exp.run(RowSpec("A", "two seeds", None, "-", config.replace(max_epochs=1)), seeds=(0, 1), quiet=True)
    return exp


def test_a_teacher_of_two_runs_scores_as_their_ensemble(two_seeds):
    exp = two_seeds
    runs = [exp.rows["A"].runs[s] for s in (0, 1)]
    t = teacher.embeddings(exp, runs, split="dev")
    feats = exp.features(runs[0].config)[1]["dev"]
    mean = np.mean([similarity(r.model.model, feats) for r in runs], axis=0)
    assert t["text"].shape == (len(feats.caption_ids), 2 * runs[0].config.embed_dim)
    np.testing.assert_allclose(t["text"] @ t["image"].T, mean, atol=3e-3)  # stored in float16
    one = teacher.embeddings(exp, runs[:1], split="dev")
    np.testing.assert_allclose(one["text"] @ one["image"].T, similarity(runs[0].model.model, feats), atol=3e-3)


def test_the_cache_is_keyed_by_the_members_and_a_damaged_entry_is_recomputed(two_seeds, isolated_cache):
    exp = two_seeds
    runs = [exp.rows["A"].runs[s] for s in (0, 1)]
    first = teacher.embeddings(exp, runs, split="dev")
    entries = sorted(isolated_cache.glob("teacher-*.npz"))
    assert len(entries) == 1
    np.testing.assert_array_equal(teacher.embeddings(exp, runs, split="dev")["text"], first["text"])  # read back
    teacher.embeddings(exp, runs[::-1], split="dev")  # other order: another teacher (columns swapped)
    assert len(list(isolated_cache.glob("teacher-*.npz"))) == 2
    np.savez(entries[0], text=np.zeros((3, 3), np.float16), image=np.zeros((3, 3), np.float16))
    with pytest.warns(UserWarning, match="shape"):
        again = teacher.embeddings(exp, runs, split="dev")
    np.testing.assert_array_equal(again["text"], first["text"])


def test_a_member_without_dev_ranks_cannot_be_identified(two_seeds):
    run = two_seeds.rows["A"].runs[0]
    run.dev_ranks = None
    with pytest.raises(ValueError, match="no dev ranks"):
        teacher.member_key(run)


def test_another_notebooks_rows_and_ensemble_are_adopted_from_its_records_with_the_same_teacher_key(
    tiny_run, tmp_path, monkeypatch
):
    monkeypatch.setenv("RCP217_ROOT", str(tmp_path))
    (tmp_path / "pyproject.toml").write_text("flickr-retrieval")
    data, config, *_ = tiny_run
    source = Experiment(data, n_boot=10, notebook="src")
    source.run(RowSpec("A", "two seeds", None, "-", config.replace(max_epochs=1)), seeds=(0, 1), quiet=True)
    runs = [source.rows["A"].runs[s] for s in (0, 1)]
    source.ensemble(RowSpec("E", "both", None, "mean"), runs)
    here = Experiment(data, n_boot=10)
    adopted = here.adopt("src", "A", (0, 1))
    assert all(r.source == "record" and r.model is None for r in adopted.runs.values())
    np.testing.assert_array_equal(adopted.runs[1].ranks["t2i"], runs[1].ranks["t2i"])
    assert [teacher.member_key(r) for r in adopted.runs.values()] == [teacher.member_key(r) for r in runs]
    ensemble = here.adopt_ensemble("src", "E")
    assert [m.seed for m in ensemble.members] == [0, 1] and ensemble.members[0] is adopted.runs[0]
    with pytest.raises(FileNotFoundError, match="seed 2"):
        here.adopt("src", "A", (2,))
    del here.rows["A"]
    with pytest.raises(ValueError, match="not an ensemble of runs here"):
        here.adopt_ensemble("src", "E")


def test_dev_verdicts_and_dev_means_read_dev_ranks_only(two_seeds):
    exp = two_seeds
    cfg = exp.rows["A"].first.config
    exp.run(
        RowSpec("B", "two epochs", "A", "one more epoch", cfg.replace(name="b", max_epochs=2)), seeds=(0, 1), quiet=True
    )
    exp.family = ("B",)
    for row in exp.rows.values():
        for run in row.runs.values():
            run.ranks = {}  # no test ranks: reading one would raise
    dev = exp.comparisons("dev")["B"]
    assert dev["split"] == "dev" and "p_adjusted" in dev
    assert exp.family_table("dev").iloc[0]["verdict, family-adjusted"] == dev["verdict_adjusted"]
    mean = exp.rows["B"].mean_dev()
    assert 0 <= mean["R@1"] <= mean["R@5"] <= mean["R@10"] <= 100 and mean["medr"] >= 1


def test_adopt_reads_every_committed_seed_by_default(tiny_run, tmp_path, monkeypatch):
    from flickr_retrieval import records

    monkeypatch.setenv("RCP217_ROOT", str(tmp_path))
    (tmp_path / "pyproject.toml").write_text("flickr-retrieval")
    data, config, *_ = tiny_run
    Experiment(data, n_boot=10, notebook="src").run(
        RowSpec("A", "three seeds", None, "-", config.replace(max_epochs=1)), seeds=(0, 2, 1), quiet=True
    )
    (records.committed_record_path("src", "A-seedx", 0).parent / "A-seedx.npz").write_text("not a seed")
    assert records.committed_seeds("src", "A") == [0, 1, 2] and records.committed_seeds("src", "B") == []
    assert Experiment(data, n_boot=10).adopt("src", "A").seeds == [0, 1, 2]
    with pytest.raises(FileNotFoundError, match="no committed record of row 'B'"):
        Experiment(data, n_boot=10).adopt("src", "B")


def test_two_rows_that_are_not_parent_and_child_compare_on_dev(two_seeds):
    exp = two_seeds
    cfg = exp.rows["A"].first.config
    exp.run(RowSpec("C", "other", None, "-", cfg.replace(name="c", max_epochs=2)), seeds=(1, 2), quiet=True)
    c = exp.compare_rows("C", "A")
    assert (
        c["seed_list"] == [1] and c["split"] == "dev" and c["verdict"] in ("helps", "hurts", "no measurable difference")
    )
