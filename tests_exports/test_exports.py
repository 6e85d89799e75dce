"""After nbval has re-executed the notebooks: the exports they wrote against the committed ones.

Run after ``notebooks/`` in the same pytest call (``./run_tests.sh`` does, with the fresh exports
in a temporary folder, ``RCP217_RESULTS``). A re-run on another CPU, or with ``RCP217_SEED_OFFSET``,
is another draw of every training: numbers are compared within tolerances derived from the seed
spread that 07 measured and exported (:mod:`flickr_retrieval.regression`), every number, whether
or not the dev choice is the committed one (a failure then says that it changed).
"""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from flickr_retrieval import paths, regression

ROOT = Path(__file__).resolve().parents[1]


#: Runs that notebook 10 exports: checked by test_field_exports.py, in the field tier that runs it.
FIELD_RUNS = ("field_best", "augmented_best", "distilled")  # the field tier's (notebooks 10, 11 and 19)


def committed_runs(field: bool = False) -> list[str]:
    """The runs with a committed metrics.json: those of notebooks 00-09, or (``field``) of 10, 11 and 19."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "results/*/metrics.json"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    return sorted(run for run in (Path(line).parent.name for line in out.splitlines()) if (run in FIELD_RUNS) == field)


def committed(run: str) -> dict:
    text = subprocess.run(
        ["git", "show", f"HEAD:results/{run}/metrics.json"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return json.loads(text)


def fresh(run: str) -> dict:
    return json.loads((paths.results_dir(run) / "metrics.json").read_text())


def spreads() -> dict[str, dict[str, float]]:
    """The seed spread of every test number, measured on the committed run records of 07: pooled
    over its rows, and the largest of any row (for numbers drawn once)."""
    return regression.seed_spreads(ROOT / "results" / "runs" / "07_improvements")


#: A table row trained with one seed may move by this share of its value: such rows are far from
#: the reference family whose spread the records measure (the pair classifier, stopped early on a
#: noisy dev AUC, moved from R@10 34.6 to 40.7 under RCP217_SEED_OFFSET=100); their verdicts are
#: far outside that spread, which is why they have one seed.
SINGLE_DRAW_RELATIVE = 0.2

RUNS = committed_runs()


def test_there_are_committed_runs_to_check():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: no committed results to compare with")
    assert RUNS, "no results/*/metrics.json committed"


def _problems(new: dict, old: dict, spread: dict[str, dict[str, float]], prefix: str = "") -> list[str]:
    """Every strict, lenient and chance number of a single run's test results against the committed
    ones: recalls within the largest seed spread any row showed (a run drawn once has no spread of its
    own), median ranks within the pooled one (and a third of their value)."""
    largest, pooled = spread["largest"], spread["pooled"]
    out = []
    for direction in ("t2i", "i2t"):
        for k in ("R@1", "R@5", "R@10"):
            a, b = new["strict"][direction][k], old["strict"][direction][k]
            out.append(
                regression.check(f"{prefix}{direction} {k}", a, b, regression.tolerance(b, largest[f"{direction} {k}"]))
            )
        a, b = new["strict"][direction]["medr"], old["strict"][direction]["medr"]
        out.append(
            regression.check(
                f"{prefix}{direction} medr", a, b, regression.rank_tolerance(b, pooled[f"{direction} medr"])
            )
        )
    for k in ("R@1", "R@5", "R@10"):
        a, b = new["lenient"][k], old["lenient"][k]
        out.append(regression.check(f"{prefix}lenient {k}", a, b, regression.tolerance(b, largest[f"lenient {k}"])))
        # the chance level depends on the features only, never on training
        out.append(
            regression.check(f"{prefix}lenient chance {k}", new["chance_lenient"][k], old["chance_lenient"][k], 0.5)
        )
    return [p for p in out if p]


@pytest.mark.parametrize("run", RUNS)
def test_exported_metrics_match_the_committed_ones(run):
    new, old = fresh(run), committed(run)
    assert new["timings_s"] != old["timings_s"], (
        f"{run}: metrics.json was not rewritten by this run (did its notebook run?)"
    )
    changed = new.get("row") != old.get("row")
    if not changed:
        assert new["config"] == old["config"]
    problems = _problems(new["test"], old["test"], spreads())
    if changed:
        problems = (
            [
                f"the dev choice changed: {new.get('row_name', new.get('row'))!r} instead of the committed "
                f"{old.get('row_name', old.get('row'))!r}; its numbers against the committed choice's:"
            ]
            + problems
            if problems
            else []
        )
    assert not problems, f"{run}:\n" + "\n".join(problems)


@pytest.mark.parametrize("run", RUNS)
def test_similarity_export_is_well_formed(run):
    path = paths.results_dir(run) / "test_similarity.npz"
    assert path.is_file(), f"{path} missing: its notebook should have written it"
    with np.load(path) as npz:
        sim, captions, images = npz["similarity"], npz["caption_ids"], npz["image_ids"]
    assert sim.dtype == np.float32 and sim.shape == (5000, 1000) == (len(captions), len(images))
    assert str(captions[0]).split("#")[0] in set(images.tolist()) and str(images[0]).endswith(".jpg")
    assert np.isfinite(sim).all()


def table_problems(run: str, key: str) -> list[str]:
    """Every row of a notebook's table exported with ``run`` (``key`` in its metrics.json): the same
    rows, and each row's numbers (means over its seeds) within the tolerance of a mean over that many
    seeds."""
    old, new = committed(run).get(key), fresh(run).get(key)
    assert old and new, f"results/{run}/metrics.json has no {key}"
    by_id = lambda table: {str(v.get("id", k)): v for k, v in table.items()}  # noqa: E731 - labels may name the dev choice
    old, new = by_id(old), by_id(new)
    assert list(new) == list(old), f"the rows of {key} changed: {list(new)} against {list(old)}"
    spread = spreads()
    problems = []
    for row, values in old.items():
        n = max(1, min(int(values.get("seeds", 1)), int(new[row].get("seeds", 1))))
        for name, value in values.items():
            metric = name if name.startswith(("i2t ", "lenient ")) else f"t2i {name}"
            if name.endswith(" chance"):
                problems.append(regression.check(f"{row} {name}", new[row][name], value, 0.5))
            elif metric in spread["pooled"] and not name.endswith("medr") and "CI" not in name:
                # a row's mean over n seeds: the pooled spread (the largest one for a row drawn once)
                sd = spread["largest" if n == 1 else "pooled"][metric]
                if name == "R@1" and values.get("R@1 seed sd"):
                    sd = max(sd, float(values["R@1 seed sd"]))
                allowed = regression.tolerance(value, sd, n)
                if (
                    n == 1
                ):  # a row drawn once has no spread of its own; the pair classifier's moved by 6 R@10 between draws
                    allowed = max(allowed, SINGLE_DRAW_RELATIVE * abs(value))
                problems.append(regression.check(f"{row} {name}", new[row][name], value, allowed))
            elif name == "medr":
                problems.append(
                    regression.check(
                        f"{row} {name}",
                        new[row][name],
                        value,
                        regression.rank_tolerance(value, spread["pooled"]["t2i medr"], n),
                    )
                )
    return [p for p in problems if p]


def test_the_improvements_table_matches_the_committed_one():
    """Every row of 07's table (exported with the best run)."""
    if "best" not in RUNS:
        pytest.skip("no committed results/best")
    problems = table_problems("best", "improvements_table")
    assert not problems, "\n".join(problems)


def test_the_dev_choice_is_among_the_committed_ties_or_says_so():
    """The run chosen on dev is the committed one, or one the committed choice found tied on dev."""
    if "best" not in RUNS:
        pytest.skip("no committed results/best")
    new, old = fresh("best"), committed("best")
    tied = old.get("selection", {}).get("within_tolerance", [old.get("row")])
    assert new.get("row") in tied, (
        f"the dev choice changed: row {new.get('row')!r} instead of {old.get('row')!r} "
        f"(committed ties: {tied}; dev means now {new.get('selection', {}).get('dev_rsum_mean')})"
    )
