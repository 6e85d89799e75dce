"""The sealed hold-out: its rule, the confirmatory data, the one reader and its log, the declared
family with unread members at p = 1, and that nothing else in the package reaches the hold-out."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from flickr_retrieval import holdout, paths, standing
from flickr_retrieval.data import Flickr8k
from flickr_retrieval.errors import DatasetError

TRAIN = [f"{1000 + i}_x.jpg" for i in range(12)]
DEV, TEST = ["2000_d.jpg"], ["3000_t.jpg"]


def fake_data() -> Flickr8k:
    images = [*TRAIN, *DEV, *TEST]
    captions = {image: [f"a picture {image} {n}" for n in range(5)] for image in images}
    splits = {"train": list(TRAIN), "dev": list(DEV), "test": list(TEST)}
    return Flickr8k(Path("."), Path("."), Path("."), captions, splits)


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root, check=True, capture_output=True
    )


DECLARATION = {
    "name": "decl",
    "seeds": [0, 1],
    "alpha": 0.05,
    "pipelines": {"A": {"stage": 1, "cnn_passes_per_image": 1}, "B": {"stage": 1, "cnn_passes_per_image": 1}},
    "family": [
        {"id": "B-A", "a": "B", "b": "A", "expected": "helps"},
        {"id": "A-B", "a": "A", "b": "B", "expected": "hurts"},
    ],
}


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project root (a git repository) whose results/holdout holds a list of 3 of 12 training images
    made by the rule and a committed declaration."""
    root = tmp_path / "project"
    (root / "results" / "holdout" / "declarations").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[project]\nname = "flickr-retrieval"\n')
    monkeypatch.setenv("RCP217_ROOT", str(root))
    data = fake_data()
    listed = holdout.holdout_images(data, 3)
    (root / "results" / "holdout" / "images.txt").write_text("".join(f"{i}\n" for i in listed))
    (root / "results" / "holdout" / "declarations" / "decl.json").write_text(json.dumps(DECLARATION))
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "declared")
    return root, data


def experiment_on(data, rows=("A", "B"), seeds=(0, 1)):
    table = {
        r: SimpleNamespace(
            seeds=list(seeds), spec=SimpleNamespace(id=r), name=f"{r} row", is_ensemble=False, rescored="", members=()
        )
        for r in rows
    }
    return SimpleNamespace(data=data, rows=table)


def scorer(shift: float = 0.0):
    """Scores that put each caption's own image first for pipeline B, and shuffle for A."""

    def score(experiment, row_id, seed, images):
        n = len(images)
        rng = np.random.default_rng(seed)
        sim = rng.random((5 * n, n))
        if row_id == "B":
            sim[np.arange(5 * n), np.repeat(np.arange(n), 5)] += 2.0 + shift
        return sim

    return score


def test_the_rule_is_the_smallest_salted_digests_and_a_drifted_list_is_refused(project):
    root, data = project
    chosen = holdout.holdout_images(data, 3)
    assert chosen == sorted(TRAIN, key=holdout.rule_key)[:3] and len(set(chosen)) == 3
    assert holdout.committed_list(data) == chosen
    (root / "results" / "holdout" / "images.txt").write_text(
        "".join(f"{i}\n" for i in TRAIN[:3] if i not in chosen) or "x\n"
    )
    with pytest.raises(DatasetError, match="does not follow the hold-out rule"):
        holdout.committed_list(data)


def test_confirmatory_data_trains_on_the_rest_and_has_no_holdout_split(project):
    _, data = project
    sealed = holdout.confirmatory_data(data)
    held = holdout.committed_list(data)
    assert sorted(sealed.split_images["train"]) == sorted(set(TRAIN) - set(held))
    assert sealed.split_images["dev"] == DEV and sealed.split_images["test"] == TEST
    assert holdout.committed_list(sealed) == held  # the rule checked on the confirmatory data too
    for d in (data, sealed):
        with pytest.raises(KeyError):
            d.split("holdout")


def test_a_read_is_logged_once_with_its_ranks_and_a_reproduction_is_checked_not_logged(project):
    root, data = project
    sealed = holdout.confirmatory_data(data)
    declaration = holdout.load_declaration("decl")
    first = holdout.read(experiment_on(sealed), declaration, "B", score=scorer())
    assert first["status"] == "logged" and first["read"] == 1 and first["seeds"] == [0, 1]
    assert first["declaration_commit"] and first["mean"]["R@1"] == 100.0
    log = (root / "results" / "holdout" / "reads.jsonl").read_text().splitlines()
    assert len(log) == 1 and json.loads(log[0])["pipeline"] == "B"
    ranks = holdout.logged_ranks(json.loads(log[0]))
    assert sorted(ranks) == [0, 1] and all((r == 1).all() for r in ranks.values())

    again = holdout.read(experiment_on(sealed), declaration, "B", score=scorer())
    assert again["status"] == "reproduced" and again["read"] == 1
    other = holdout.read(experiment_on(sealed), declaration, "A", score=scorer())  # another pipeline: a new read
    assert other["status"] == "logged" and other["read"] == 2
    changed = holdout.read(experiment_on(sealed), declaration, "A", score=lambda *a: scorer()(*a) + np.eye(15, 3))
    assert changed["status"] == "differs" and "difference" in changed
    assert len((root / "results" / "holdout" / "reads.jsonl").read_text().splitlines()) == 2
    told = holdout.read(experiment_on(sealed), declaration, "A", again="a stated reason", score=scorer())
    assert told["status"] == "logged" and told["again"] == "a stated reason" and told["read"] == 3
    assert [e["read"] for e in holdout.first_reads("decl").values()] == [1, 2]  # the first read of each stands


def test_reads_are_refused_when_undeclared_uncommitted_trained_on_the_holdout_or_tampered(project):
    root, data = project
    sealed = holdout.confirmatory_data(data)
    declaration = holdout.load_declaration("decl")
    with pytest.raises(holdout.HoldoutError, match="not declared"):
        holdout.read(experiment_on(sealed, rows=("C",)), declaration, "C", score=scorer())
    with pytest.raises(holdout.HoldoutError, match="trains on hold-out images"):
        holdout.read(experiment_on(data), declaration, "A", score=scorer())
    path = root / "results" / "holdout" / "declarations" / "decl.json"
    path.write_text(json.dumps({**DECLARATION, "seeds": [0]}))
    with pytest.raises(holdout.HoldoutError, match="not committed as it is"):
        holdout.read(experiment_on(sealed), holdout.load_declaration("decl"), "A", score=scorer())
    git(root, "checkout", "--", ".")
    entry = holdout.read(experiment_on(sealed), holdout.load_declaration("decl"), "A", score=scorer())
    (root / "results" / "holdout" / entry["ranks_file"]).write_bytes(b"not the logged ranks")
    with pytest.raises(holdout.HoldoutError, match="does not match the digest"):
        holdout.logged_ranks(entry)


def test_a_declaration_naming_an_undeclared_pipeline_or_no_direction_is_refused(project):
    root, _ = project
    path = root / "results" / "holdout" / "declarations" / "decl.json"
    path.write_text(json.dumps({**DECLARATION, "family": [{"id": "x", "a": "A", "b": "Z", "expected": "helps"}]}))
    with pytest.raises(ValueError, match="undeclared pipeline"):
        holdout.load_declaration("decl")
    path.write_text(json.dumps({**DECLARATION, "family": [{"id": "x", "a": "A", "b": "B"}]}))
    with pytest.raises(ValueError, match="expected direction"):
        holdout.load_declaration("decl")


def test_the_family_counts_unread_members_at_p_one(project):
    _, data = project
    declaration = holdout.load_declaration("decl")
    caption_image = holdout.holdout_caption_image(40)
    rng = np.random.default_rng(0)
    good = {s: np.ones(200, dtype=np.int64) for s in (0, 1)}
    poor = {s: rng.integers(1, 40, 200) for s in (0, 1)}
    both = standing.family_table(declaration, {"A": poor, "B": good}, caption_image)
    assert list(both["verdict"]) == ["helps", "hurts"] and both["as expected"].all()
    # one member read (a declaration of three whose third is unread): Holm multiplies by the declared size
    three = holdout.Declaration(
        "d",
        Path("d"),
        declaration.pipelines,
        [*declaration.family, {"id": "C-A", "a": "C", "b": "A", "expected": "helps"}],
        (0, 1),
        0.05,
        "",
    )
    table = standing.family_table(three, {"A": poor, "B": good}, caption_image)
    assert table.loc["C-A", "verdict"] == "not read"
    assert table.loc["B-A", "Holm p"] >= both.loc["B-A", "Holm p"]


def test_only_the_holdout_module_builds_holdout_features_or_reads_its_list():
    """The hold-out's list, its split and its features are reached in flickr_retrieval.holdout alone
    (other modules may read the log); the notebooks reach it through holdout's functions only (the
    confirmatory notebook)."""
    lib = Path(holdout.__file__).parent
    offenders = []
    for path in lib.rglob("*.py"):
        if path.name == "holdout.py":
            continue
        text = path.read_text(encoding="utf-8")
        # reading the log (holdout.logged_reads, first_reads, logged_ranks) is allowed; reaching the
        # list, the hold-out's split or its features is not
        reach = r"\bimages\.txt|committed_list|holdout_images|_holdout_features|pipeline_similarity|_run_matrices|[\"']holdout[\"']"
        if re.search(reach, text):
            offenders.append(path.name)
    assert offenders == []
    root = paths.project_root()
    declarations = (root / "results" / "holdout" / holdout.DECLARATIONS).glob("*.json")
    confirmatory = {holdout.load_declaration(p.stem).notebook + ".ipynb" for p in declarations}
    assert "17_confirmatory.ipynb" in confirmatory
    for notebook in sorted((root / "notebooks").glob("*.ipynb")):
        sources = "".join(
            "".join(c["source"]) for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"
        )
        if "holdout" not in sources:
            continue
        assert notebook.name in confirmatory, notebook.name  # a notebook a declaration names
        assert (
            "/images.txt" not in sources
            and "holdout/images" not in sources
            and '"holdout"' not in sources
            and "_holdout_features" not in sources
        )


def test_holdout_scores_are_computed_as_test_scores_for_every_row_kind(tiny_run):
    """pipeline_similarity on the test images gives the very matrix the experiment scored on test:
    a trained run, a re-scored row (the parameters its row chose on dev), an ensemble, and an
    ensemble re-scored."""
    from flickr_retrieval.evaluation import similarity
    from flickr_retrieval.experiments import Experiment, RowSpec

    data, config, space, feats, trained = tiny_run
    exp = Experiment(data, n_boot=10)
    exp.add(RowSpec("3", "reference", None, "-", config), trained)
    exp.run(RowSpec("5", "shorter", "3", "one epoch", config.replace(name="short", max_epochs=1)), seeds=(0,))
    exp.rescore(
        RowSpec("IS", "inverted softmax", "3", "bank"), "inverted_softmax", grid=[{"beta": 5.0}, {"beta": 20.0}]
    )
    exp.ensemble(RowSpec("E", "ensemble", None, "both"), [exp.rows["3"].runs[0], exp.rows["5"].runs[0]])
    exp.rescore(RowSpec("EIS", "ensemble + inverted softmax", "E", "bank"), "inverted_softmax", grid=[{"beta": 5.0}])
    images = data.split("test").image_ids
    got = holdout.pipeline_similarity(exp, "3", 0, images)
    np.testing.assert_allclose(got, similarity(trained.model, feats["test"]), rtol=1e-5, atol=1e-6)
    assert exp.rows["IS"].params in ({"beta": 5.0}, {"beta": 20.0})
    for row_id in ("IS", "E", "EIS"):
        row = exp.rows[row_id]
        expected = row.runs[row.seeds[0]].result["similarity"]
        np.testing.assert_allclose(
            holdout.pipeline_similarity(exp, row_id, row.seeds[0], images), expected, rtol=1e-5, atol=1e-5
        )


def test_an_ensembles_members_are_logged_with_it_and_read_back(project, monkeypatch):
    root, data = project
    sealed = holdout.confirmatory_data(data)
    exp = experiment_on(sealed, rows=("B",), seeds=(0,))
    member = SimpleNamespace(config=SimpleNamespace(name="m"), seed=3)
    exp.rows["B"].is_ensemble, exp.rows["B"].members = True, (member, member)
    monkeypatch.setattr(holdout, "_run_matrices", lambda e, m, images, bank: (scorer()(e, "A", 0, images), None))
    entry = holdout.read(exp, holdout.load_declaration("decl"), "B", score=scorer())
    assert entry["members"] == ["m seed 3", "m seed 3"]
    ranks = holdout.logged_ranks(entry)
    assert sorted(k for k in ranks if k != "members") == [0] and len(ranks["members"]) == 2
    assert holdout.read(exp, holdout.load_declaration("decl"), "B", score=scorer())["status"] == "reproduced"
    table = standing.family_table(
        holdout.Declaration(
            "d", Path("d"), {"B": {}}, [{"id": "B-m", "a": "B", "b": "members", "expected": "helps"}], (0,), 0.05, ""
        ),
        {"B": ranks},
        holdout.holdout_caption_image(3),
    )
    assert table.loc["B-m", "verdict"] in ("helps", "no measurable difference")


def test_a_later_declaration_compares_an_earlier_read_and_never_reads_it_again(project):
    root, data = project
    sealed = holdout.confirmatory_data(data)
    holdout.read(experiment_on(sealed), holdout.load_declaration("decl"), "A", score=scorer())
    later = {
        **DECLARATION,
        "name": "later",
        "notebook": "19_x",
        "pipelines": {"A": {"stage": 1, "read_in": "decl"}, "C": {"stage": 1}},
        "family": [{"id": "C-A", "a": "C", "b": "A", "expected": "helps"}],
    }
    folder = root / "results" / "holdout" / "declarations"
    (folder / "later.json").write_text(json.dumps(later))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "later")
    declaration = holdout.load_declaration("later")
    assert declaration.notebook == "19_x" and declaration.read_elsewhere == {"A": "decl"}
    assert holdout.load_declaration("decl").notebook == "17_confirmatory"
    with pytest.raises(holdout.HoldoutError, match="never reads it again"):
        holdout.read(experiment_on(sealed, rows=("A", "C")), declaration, "A", score=scorer())
    read = holdout.read(experiment_on(sealed, rows=("A", "C")), declaration, "C", score=scorer())
    assert read["status"] == "logged" and read["declaration"] == "later"
    both = holdout.declared_reads(declaration)
    assert {p: e["declaration"] for p, e in both.items()} == {"C": "later", "A": "decl"}
    (folder / "wrong.json").write_text(
        json.dumps(
            {
                **later,
                "name": "wrong",
                "pipelines": {"Z": {"stage": 1, "read_in": "decl"}, "C": {"stage": 1}},
                "family": [],
            }
        )
    )
    with pytest.raises(ValueError, match="which does not declare it"):
        holdout.load_declaration("wrong")
