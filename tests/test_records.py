"""Run records (flickr_retrieval.records) and the sampled re-training that reads them."""

import numpy as np
import pytest
from flickr_retrieval import protocol, records
from flickr_retrieval.checkpoint import TrainedModel
from flickr_retrieval.errors import CheckpointError
from flickr_retrieval.experiments import Experiment, RowSpec
from flickr_retrieval.records import Run


def test_a_record_round_trips_and_refuses_damage(tiny_run, tmp_path):
    data, config, space, feats, trained = tiny_run
    exp = Experiment(data, n_boot=10)
    record = exp.add(RowSpec("3", "ref", None, "-", config), trained).runs[0]
    path = tmp_path / "r.npz"
    record.save(path)
    n_captions, n_images = len(feats["test"].caption_ids), len(feats["test"].image_ids)
    n_dev = (len(feats["dev"].caption_ids), len(feats["dev"].image_ids))
    back = Run.load(path, n_captions, n_images, n_dev)
    assert back.config == trained.config and back.best_epoch == trained.best_epoch and back.source == "record"
    assert back.precision == trained.precision in ("float32", "bfloat16") and back.cpu
    for k in ("t2i", "i2t", "lenient"):
        np.testing.assert_array_equal(back.ranks[k], record.ranks[k])
    np.testing.assert_array_equal(back.dev_ranks, record.dev_ranks)
    # the dev ranks are the kept epoch's: they give back the dev values logged for it
    from flickr_retrieval.metrics import summarize_ranks

    kept = summarize_ranks(back.dev_ranks)
    assert all(kept[k] == pytest.approx(back.kept()[f"dev_{k}"]) for k in ("R@1", "R@5", "R@10", "medr"))
    with pytest.raises(CheckpointError, match="not a valid run record"):
        Run.load(path, n_captions + 1, n_images)  # another test split
    with pytest.raises(CheckpointError, match="not a valid run record"):
        Run.load(path, n_captions, n_images, (n_dev[0] + 1, n_dev[1]))  # another dev split
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="not a valid run record"):
        Run.load(path, n_captions, n_images)


def test_retrain_mode_is_validated(monkeypatch):
    monkeypatch.delenv("RCP217_RETRAIN", raising=False)
    assert records.retrain_all()
    monkeypatch.setenv("RCP217_RETRAIN", "sample")
    assert not records.retrain_all()
    monkeypatch.setenv("RCP217_RETRAIN", "resume")
    assert not records.retrain_all() and records.Sampling.from_env().mode == "resume"
    monkeypatch.setenv("RCP217_RETRAIN", "some")
    with pytest.raises(ValueError, match="RCP217_RETRAIN"):
        records.retrain_all()


def test_resume_reads_every_recorded_run_and_sample_only_the_later_seeds():
    resume, sample, every = records.Sampling("resume"), records.Sampling("sample"), records.Sampling("all")
    assert resume.may_read(first_seed_of_row=True, retrain_in_sample=True)
    assert not sample.may_read(first_seed_of_row=True, retrain_in_sample=True)
    assert sample.may_read(first_seed_of_row=False, retrain_in_sample=True)
    assert not every.may_read(first_seed_of_row=False, retrain_in_sample=False)
    assert "two sittings" in resume.describe()


def test_sampled_runs_train_the_first_seed_and_read_the_others(tiny_run, tmp_path, monkeypatch):
    """A full run writes records; a sampled run trains each row's first seed and reads the rest,
    giving the same comparisons; a fine-tuned row's read seeds need no start; ensembles of read
    runs come from their own record."""
    data, config, *_ = tiny_run
    monkeypatch.setenv("RCP217_ROOT", str(tmp_path))
    (tmp_path / "pyproject.toml").write_text("flickr-retrieval")
    tuned = config.replace(
        name="tuned", finetune_text=True, max_epochs=1, early_stopping=True, patience=1, text_lr=1e-5
    )

    def study():
        exp = Experiment(data, n_boot=10, notebook="nb")
        exp.run(RowSpec("3", "ref", None, "-", config), seeds=(0, 1))
        exp.run(RowSpec("5", "short", "3", "one epoch", config.replace(name="short", max_epochs=1)), seeds=(0, 1))
        exp.run(RowSpec("8", "tuned", "3", "MiniLM", tuned, init="3"), seeds=(0, 1))
        exp.ensemble(RowSpec("E1", "seeds", "5", "mean"), [exp.rows["5"].runs[s] for s in (0, 1)])
        return exp

    full = study()
    assert (tmp_path / "results" / "runs" / "nb" / "5-seed1.npz").is_file()
    assert (tmp_path / "results" / "runs" / "nb" / "E1-seed0.npz").is_file()
    monkeypatch.setenv("RCP217_RETRAIN", "sample")
    sampled = study()
    for row in ("3", "5", "8"):
        assert sampled.rows[row].runs[1].from_record and not sampled.rows[row].runs[0].from_record
        assert sampled.compare(row)["diff"] == pytest.approx(full.compare(row)["diff"]) if row != "3" else True
        assert (
            sampled.compare(row, split="dev")["diff"] == pytest.approx(full.compare(row, split="dev")["diff"])
            if row != "3"
            else True
        )
    assert sampled.rows["E1"].t2i["R@1"] == pytest.approx(full.rows["E1"].t2i["R@1"])
    assert "read from committed run records" in sampled.describe("5")


def test_a_committed_record_of_another_setting_is_not_read(tiny_run, tmp_path, monkeypatch):
    """A row built from a dev choice (its config depends on it) whose committed records are of the
    committed choice's setting: when the choice moves, its seeds are trained, never read."""
    data, config, *_ = tiny_run
    monkeypatch.setenv("RCP217_ROOT", str(tmp_path))
    (tmp_path / "pyproject.toml").write_text("flickr-retrieval")
    Experiment(data, n_boot=10, notebook="nb").run(
        RowSpec("T", "built", None, "-", config.replace(name="a", max_epochs=1)), seeds=(0, 1)
    )
    monkeypatch.setenv("RCP217_RETRAIN", "sample")
    same = Experiment(data, n_boot=10, notebook="nb").run(
        RowSpec("T", "built", None, "-", config.replace(name="other-name", max_epochs=1)), seeds=(0, 1)
    )
    assert same.runs[1].from_record  # the name is not the setting
    moved = Experiment(data, n_boot=10, notebook="nb").run(
        RowSpec("T", "built", None, "-", config.replace(name="a", max_epochs=2)), seeds=(0, 1)
    )
    assert not moved.runs[1].from_record and moved.runs[1].config.max_epochs == 2


def test_an_ensemble_record_is_read_only_for_the_same_members(tiny_run, tmp_path, monkeypatch):
    """A sampled run whose ensemble has other members than the committed one (a row given more
    seeds since) computes it, retraining the members read from records, never reads the old one."""
    data, config, *_ = tiny_run
    monkeypatch.setenv("RCP217_ROOT", str(tmp_path))
    (tmp_path / "pyproject.toml").write_text("flickr-retrieval")
    short = config.replace(name="short", max_epochs=1)
    full = Experiment(data, n_boot=10, notebook="nb")
    full.run(RowSpec("5", "short", None, "-", short), seeds=(0, 1, 2))
    full.ensemble(
        RowSpec("E1", "seeds", "5", "mean"), [full.rows["5"].runs[s] for s in (0, 1)]
    )  # committed: two members
    monkeypatch.setenv("RCP217_RETRAIN", "sample")
    sampled = Experiment(data, n_boot=10, notebook="nb")
    sampled.run(RowSpec("5", "short", None, "-", short), seeds=(0, 1, 2))
    assert sampled.rows["5"].runs[2].from_record
    three = sampled.ensemble(RowSpec("E1", "seeds", "5", "mean"), [sampled.rows["5"].runs[s] for s in (0, 1, 2)])
    assert len(three.members) == 3 and all(m.model is not None for m in three.members)
    assert Run.load(records.record_path("nb", "E1", 0), 2 * 5, 2).members == [
        records.member_id(m.config) for m in three.members
    ]


def test_a_row_ci_need_not_retrain_is_read_whole_and_trained_when_a_model_is_needed(tiny_run, tmp_path, monkeypatch):
    """``ci_reads``: under RCP217_RETRAIN=sample every seed, the first included, is read
    from the records (the same comparisons); chosen on dev and exported, or started from by a
    fine-tuning, it is trained at that point; without a record it is trained as any row."""
    data, config, *_ = tiny_run
    monkeypatch.setenv("RCP217_ROOT", str(tmp_path))
    (tmp_path / "pyproject.toml").write_text("flickr-retrieval")
    costly = RowSpec(
        "5", "costly", "3", "one epoch", config.replace(name="short", max_epochs=1), ci_reads="row 3 trains its path"
    )
    tuned = config.replace(
        name="tuned", finetune_text=True, max_epochs=1, early_stopping=True, patience=1, text_lr=1e-5
    )

    def study(fine_tune: bool = False):
        exp = Experiment(data, n_boot=10, notebook="nb")
        exp.run(RowSpec("3", "ref", None, "-", config), seeds=(0, 1))
        exp.run(costly, seeds=(0, 1))
        if fine_tune:
            exp.run(RowSpec("8", "tuned", "5", "MiniLM", tuned, init="5"), seeds=(0,))
        return exp

    monkeypatch.setenv("RCP217_RETRAIN", "sample")
    unrecorded = study()  # no record yet: trained like any row
    assert not unrecorded.rows["5"].runs[0].from_record
    monkeypatch.setenv("RCP217_RETRAIN", "all")
    full = study()
    monkeypatch.setenv("RCP217_RETRAIN", "sample")
    sampled = study()
    assert all(sampled.rows["5"].runs[s].from_record for s in (0, 1))
    assert not sampled.rows["3"].runs[0].from_record
    assert sampled.compare("5")["diff"] == pytest.approx(full.compare("5")["diff"])
    folder = sampled.export_choice({"chosen": "5"}, run="best")  # the export needs its weights: trained now
    assert (folder / "model.pt").is_file() and isinstance(sampled.rows["5"].first.model, TrainedModel)
    assert not sampled.rows["5"].first.from_record  # the record now stands for the run trained here
    started = study(fine_tune=True)  # a fine-tuning from it: its start is trained
    assert started.rows["5"].runs[0].model is not None and started.rows["8"].runs[0].model is not None


def test_committed_rows_and_an_ensemble_chosen_on_dev(tiny_run, tmp_path, monkeypatch):
    """Another notebook's committed single-model rows come back as configs (its ensembles left out);
    an ensemble chosen on dev from their runs holds the members the dev selection named."""
    data, config, *_ = tiny_run
    monkeypatch.setenv("RCP217_ROOT", str(tmp_path))
    (tmp_path / "pyproject.toml").write_text("flickr-retrieval")
    with pytest.raises(FileNotFoundError, match="no committed run record"):
        Experiment(data, n_boot=10).committed_rows("other")
    other = Experiment(data, n_boot=10, notebook="other")
    short = config.replace(name="short", max_epochs=1)
    other.run(RowSpec("A", "a", None, "-", short), seeds=(0, 1))
    other.run(RowSpec("B", "b", "A", "lr", short.replace(name="b", lr=short.lr * 2)), seeds=(0,))
    other.ensemble(RowSpec("E", "seeds", "A", "mean"), [other.rows["A"].runs[s] for s in (0, 1)])
    here = Experiment(data, n_boot=10)
    rows = here.committed_rows("other")
    assert list(rows) == ["A", "B"] and rows["B"].setting() == short.replace(lr=short.lr * 2).setting()
    pool = {
        f"{i} seed 0": here.run(RowSpec(i, i, None, "-", c), seeds=(0,), quiet=True).runs[0] for i, c in rows.items()
    }
    assert all(run.source == "run cache" for run in pool.values())  # the same settings: nothing trained again
    row = here.select_ensemble(RowSpec("G", "chosen on dev", None, "greedy"), pool)
    picked = protocol.select_members({k: here.dev_similarity(r) for k, r in pool.items()}, here.caption_image("dev"))
    assert [m for m in row.members] == [pool[k] for k in picked["members"]]
    assert row.note.startswith(f"chosen on dev from 2 candidates, added in order: {picked['members'][0]}")
    seeds_of_a = [records.member_id(other.rows["A"].runs[s].config) for s in (0, 1)]
    assert here.committed_members("other", "E") == seeds_of_a and seeds_of_a[0] == records.member_id(rows["A"])
    with pytest.raises(ValueError, match="not an ensemble"):
        here.committed_members("other", "B")
    with pytest.raises(FileNotFoundError, match="no committed record"):
        here.committed_members("other", "Z")


def test_parameters_counts_the_branches_without_training(tiny_run):
    data, config, space, feats, trained = tiny_run
    exp = Experiment(data, n_boot=10)
    assert exp.parameters(config) == sum(p.numel() for p in trained.model.parameters())
    wider = config.replace(hidden_dim=config.hidden_dim * 2)
    d_text, d_image = feats["train"].text.shape[1], feats["train"].image.shape[1]
    assert exp.parameters(wider) - exp.parameters(config) == config.hidden_dim * (
        d_text + d_image + 2 + 2 * config.embed_dim
    )
    with pytest.raises(ValueError, match="frozen features"):
        exp.parameters(config.replace(tune_image_heads=True))
