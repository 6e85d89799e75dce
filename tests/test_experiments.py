"""Experiment (notebook 07's machinery) through every outcome of the dev choice: a fine-tuned row
chosen, a tie, a row missing, seeds added to a fine-tuned row, an ensemble, the export."""

import numpy as np
import pytest
from flickr_retrieval import experiments
from flickr_retrieval.experiments import Experiment, RowSpec


@pytest.fixture
def table(tiny_run):
    """A reference row (seeds 0, 1), a one-factor row, and a fine-tuned row started from the reference."""
    data, config, space, feats, trained = tiny_run
    exp = Experiment(data, n_boot=10)
    exp.add(RowSpec("3", "reference", None, "-", config), trained)
    exp.run(RowSpec("5", "shorter", "3", "one epoch", config.replace(name="short", max_epochs=1)), seeds=(0, 1))
    tuned = config.replace(
        name="tuned", finetune_text=True, max_epochs=1, early_stopping=True, patience=1, text_lr=1e-5
    )
    exp.run(RowSpec("8", "fine-tuned", "3", "MiniLM trained too", tuned, init="3"), seeds=(0, 1))
    return exp


def test_a_finetuned_row_takes_more_seeds_from_the_same_seeds_of_its_start(table):
    assert table.rows["3"].seeds == [0, 1]  # seed 1 of the start was trained for seed 1 of the fine-tuning
    assert table.rows["8"].runs[1].config.seed == 1 and table.rows["8"].runs[1].config.finetune_text
    table.ensure_seeds("8", (2,))
    assert table.rows["8"].seeds == [0, 1, 2] and 2 in table.rows["3"].runs


def test_comparisons_pair_seeds_and_skip_rows_whose_parent_is_missing(table, tiny_run):
    data, config, *_ = tiny_run
    c = table.compare("5")
    assert (
        c["seed_list"] == [0, 1]
        and c["criterion"] == "R@1+R@5+R@10"
        and c["verdict"] in ("helps", "hurts", "no measurable difference")
    )
    table.run(
        RowSpec(
            "4b", "not run here", "4", "its parent 4 was never trained", config.replace(name="orphan", max_epochs=1)
        )
    )
    assert "4b" not in table.comparisons()  # no parent row: no verdict, no crash
    with pytest.raises(KeyError, match="its parent '4' is not in the table"):
        table.compare("4b")
    assert len(table.table()) == 4


def test_a_finetuned_row_chosen_on_dev_is_exported_and_searchable(table, tmp_path, monkeypatch):
    monkeypatch.setenv("RCP217_ROOT", str(tmp_path))
    (tmp_path / "pyproject.toml").write_text("flickr-retrieval")
    monkeypatch.setattr(experiments, "dev_rsum", lambda run: 300.0 if run.config.finetune_text else 100.0)
    selection = table.selection()
    assert selection["chosen"] == "8"
    table.ensure_seeds(selection["chosen"], (0, 1, 2))  # seeds of a fine-tuned choice (it once crashed here)
    folder = table.export_choice(selection)
    from flickr_retrieval import results
    from flickr_retrieval.search.searcher import Searcher

    metrics = results.load_metrics("best")
    assert folder.name == "best" and metrics["row"] == "8" and metrics["config"]["finetune_text"]
    assert len(Searcher("best", data=table.data).search("a red picture", k=2)) == 2


def test_a_tie_on_dev_keeps_the_simplest_row(table, monkeypatch):
    monkeypatch.setattr(experiments, "dev_rsum", lambda run: 200.0)
    selection = table.selection()
    assert selection["within_tolerance"] == ["3", "5", "8"] and selection["chosen"] == "3"
    monkeypatch.setattr(experiments, "dev_rsum", lambda run: 200.0 + run.config.seed)  # a spread: a tolerance from it
    assert table.selection()["tolerance"] > 0


def test_an_ensemble_is_compared_with_its_own_members_and_seed_sets_with_each_other(table):
    rows = table.rows
    table.ensemble(RowSpec("E1", "seeds of 5", "5", "mean of seeds 0 and 1"), [rows["5"].runs[0], rows["5"].runs[1]])
    c = table.compare("E1")
    assert table.rows["E1"].is_ensemble and c["vs"] == "its members' mean" and c["seed_list"] == [0, 1]
    assert table.rows["E1"].first.dev_ranks is not None and "dev" in table.compare("E1", split="dev")["split"]
    with pytest.raises(ValueError, match="ensemble"):
        table.export_choice({"chosen": "E1"})
    table.ensure_seeds("5", (0, 1, 2, 3))
    table.ensure_seeds("3", (0, 1, 2, 3))
    het = table.heterogeneity((0, 1), (2, 3))
    assert list(het.index) == ["5 shorter"] and set(het["the two sets"]) <= {"consistent", "disagree (|z| > 2)"}
    aa = table.aa_check((0, 1), (2, 3))
    assert set(aa["rows"]) == {"3", "5"} and aa["checked"] == 2 and 0 <= aa["false_positives"] <= 2
    assert set(table.seed_spread()) == {"R@1", "R@5", "R@10", "medr"}


def test_the_family_is_adjusted_together_and_its_words_are_the_adjusted_ones(table):
    table.family = ("5", "8")
    comps = table.comparisons()
    assert comps["5"]["family_size"] == 2 and comps["5"]["p_adjusted"] >= comps["5"]["p"]
    assert table.word("5") == comps["5"]["verdict_adjusted"]
    assert "Holm p" in table.verdicts()[0] and list(table.family_table().index) == ["5 shorter", "8 fine-tuned"]


def test_settle_climbs_the_seed_ladder_only_for_close_calls_judged_on_dev(table, monkeypatch):
    calls = []
    monkeypatch.setattr(
        experiments.protocol, "is_close_call", lambda c, margin: calls.append(c["split"]) or c["row"] == "5"
    )
    said = table.settle(((0, 1, 2),))
    assert set(calls) == {"dev"}
    assert table.rows["5"].seeds == [0, 1, 2] and table.rows["3"].seeds == [0, 1, 2]
    assert len(said) == 1 and said[0].startswith("5 shorter")
    assert table.rows["8"].seeds == [0, 1]  # not a close call: no extra seed


def test_at_cap_flags_rows_stopped_within_patience_of_their_cap(tiny_run):
    import dataclasses

    *_, trained = tiny_run
    c = trained.config.replace(early_stopping=True, max_epochs=20, patience=3)
    assert experiments.at_cap(dataclasses.replace(trained, config=c, best_epoch=18))
    assert not experiments.at_cap(dataclasses.replace(trained, config=c, best_epoch=17))
    assert not experiments.at_cap(
        dataclasses.replace(trained, config=c.replace(patience=20), best_epoch=20)
    )  # a fixed schedule


def test_seed_offset_shifts_training_and_is_validated(tiny_run, monkeypatch):
    from flickr_retrieval.config import seed_offset
    from flickr_retrieval.train import train

    data, config, space, feats, trained = tiny_run
    monkeypatch.setenv("RCP217_SEED_OFFSET", "100")
    assert seed_offset() == 100 and Experiment(data).offset == 100  # read at the entry point, passed down
    shifted = train(config, feats, seed_offset=100)
    assert shifted.seed_offset == 100
    assert shifted.config.seed == config.seed  # the nominal seed is kept
    assert not np.allclose(shifted.history[-1]["loss"], trained.history[-1]["loss"])
    for bad in ("x", "-1"):
        monkeypatch.setenv("RCP217_SEED_OFFSET", bad)
        with pytest.raises(ValueError, match="RCP217_SEED_OFFSET"):
            seed_offset()


def test_a_rescored_row_keeps_its_parents_runs_chooses_on_dev_and_is_less_simple(table, monkeypatch):
    """Hubness reduction as a row: the parent's models and seeds, the method's parameters chosen on
    dev (test never read for it), compared with its parent seed by seed; on a dev tie the parent
    (no query bank) is chosen; a transductive re-scoring is never a candidate."""
    from flickr_retrieval import hubness

    read = []
    real_tune = hubness.tune

    def spy(method, sims, banks, caption_image, grid=None):
        read.append(sims)
        return real_tune(method, sims, banks, caption_image, grid)

    monkeypatch.setattr(hubness, "tune", spy)
    row = table.rescore(RowSpec("5q", "QB-Norm", "5", "query-bank normalisation"), "querybank_norm")
    parent = table.rows["5"]
    dev = [table.bank_matrices(parent.runs[s], "dev")[0] for s in parent.seeds]
    test = [table.bank_matrices(parent.runs[s], "test")[0] for s in parent.seeds]
    assert len(read) == 1 and all(np.array_equal(a, b) for a, b in zip(read[0], dev))
    assert not any(np.array_equal(a, b) for a, b in zip(read[0], test))  # the choice read dev, not test
    assert row.seeds == table.rows["5"].seeds and row.rescored == "querybank_norm" and "chosen on dev" in row.note
    assert all(row.runs[s].model is table.rows["5"].runs[s].model for s in row.seeds)
    c = table.compare("5q")
    assert c["vs"] == "5" and c["seed_list"] == [0, 1]
    table.rescore(RowSpec("5d", "dual softmax", "5", "transductive"), "dual_softmax")
    monkeypatch.setattr(experiments, "dev_rsum", lambda run: 100.0)  # every row ties on dev
    chosen = table.selection()
    assert chosen["chosen"] != "5q" and "5d" not in chosen["seeds"]


def test_an_ensemble_is_rescored_as_one_model_and_compared_with_itself(table):
    """The ensemble's scores and its bank's are the means of its members'; the re-scored row keeps
    the ensemble's single run and is compared with the ensemble over test images, models fixed."""
    from flickr_retrieval import hubness, protocol

    members = [table.rows["5"].runs[s] for s in (0, 1)]
    ensemble = table.ensemble(RowSpec("E", "two seeds", "5", "mean"), members)
    row = table.rescore(RowSpec("EIS", "E + inverted softmax", "E", "bank"), "inverted_softmax", grid=[{"beta": 20.0}])
    sims, banks = zip(*(table.bank_matrices(m, "test") for m in members))
    expected = hubness.rescore("inverted_softmax", np.mean(sims, axis=0), np.mean(banks, axis=0), beta=20.0)
    np.testing.assert_allclose(row.first.result["similarity"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.mean(sims, axis=0), ensemble.first.result["similarity"], rtol=1e-5, atol=1e-6)
    assert row.seeds == [0] and not row.is_ensemble and "EIS" in table.compared()
    c = table.compare("EIS")
    own = protocol.ensemble_gain(row.first.ranks["t2i"], [ensemble.first.ranks["t2i"]], table.caption_image("test"))
    assert c["vs"] == "E" and c["diff"] == own["diff"] and c["ci95"] == own["ci95"]
    plain = table.rows["3"]
    with pytest.raises(ValueError, match="has an ensemble for parent"):
        table.rows["X"] = experiments.Row(RowSpec("X", "x", "E", "-"), runs=dict(plain.runs))
        table.compare("X")


def test_an_ensemble_whose_parent_is_an_ensemble_is_compared_with_it_models_fixed(table):
    """A second pool's ensemble against the first's (its parent): the difference of the two rank
    arrays over test images, not against its own members."""
    from flickr_retrieval import protocol

    runs = table.rows["5"].runs
    first = table.ensemble(RowSpec("G", "one pool", None, "mean"), [runs[0], runs[1]])
    wider = table.ensemble(RowSpec("P", "a wider pool", "G", "mean"), [runs[0], table.rows["3"].runs[0]])
    c = table.compare("P")
    expected = protocol.ensemble_gain(wider.first.ranks["t2i"], [first.first.ranks["t2i"]], table.caption_image("test"))
    assert c["vs"] == "G" and c["diff"] == expected["diff"] and c["ci95"] == expected["ci95"]
    assert table.compare("G")["vs"] == "its members' mean" and "P" in table.compared()
    assert table.compare("P", split="dev")["split"] == "dev"
    back = table.versus("G", "P")
    assert back["vs"] == "P" and back["diff"] == pytest.approx(-c["diff"])


def test_a_rescored_ensemble_is_not_counted_as_a_trained_run(table):
    members = [table.rows["5"].runs[s] for s in (0, 1)]
    table.ensemble(RowSpec("E", "two seeds", "5", "mean"), members)
    before = table.training_summary()
    table.rescore(RowSpec("EIS", "E + inverted softmax", "E", "bank"), "inverted_softmax", grid=[{"beta": 20.0}])
    assert table.training_summary() == before
    assert table.rows["EIS"].rescores_ensemble and not table.rows["E"].rescores_ensemble
    assert "ensemble E re-scored" in table.describe("EIS")
    assert "EIS E + inverted softmax" not in table.ci_sample().index


def test_an_ensemble_and_its_rescoring_are_recorded_as_key_0_whatever_their_first_members_seed(
    tiny_run, tmp_path, monkeypatch
):
    data, config, *_ = tiny_run
    monkeypatch.setenv("RCP217_RESULTS", str(tmp_path))
    exp = Experiment(data, n_boot=10, notebook="nb")
    row = exp.run(RowSpec("A", "a", None, "-", config.replace(name="short", max_epochs=1)), seeds=(0, 1))
    exp.ensemble(RowSpec("E", "seed 1 first", "A", "mean"), [row.runs[1], row.runs[0]])
    exp.rescore(RowSpec("EIS", "E + inverted softmax", "E", "bank"), "inverted_softmax", grid=[{"beta": 20.0}])
    written = sorted(p.name for p in (tmp_path / "runs" / "nb").glob("E*.npz"))
    assert written == ["E-seed0.npz", "EIS-seed0.npz"]
