"""After notebook 11 ran (``./run_tests.sh field`` or ``all``): its export against the committed one,
with the same checks as 10's (test_field_exports.py): the exported single model's numbers within the
seed spread, the table row by row, the dev choice among the committed ties."""

import pytest
from test_exports import _problems, committed, committed_runs, fresh, spreads, table_problems

RUN = "augmented_best"


@pytest.fixture(autouse=True)
def _committed():
    if RUN not in committed_runs(field=True):
        pytest.fail(f"no committed results/{RUN}/metrics.json: run ./run_all.sh 11 and commit it")


def test_notebook_11_exported_its_dev_choice():
    new, old = fresh(RUN), committed(RUN)
    assert new["timings_s"] != old["timings_s"], (
        f"{RUN}/metrics.json was not rewritten by this run (did notebook 11 run?)"
    )
    problems = _problems(new["test"], old["test"], spreads())
    if problems and new.get("row") != old.get("row"):
        problems.insert(0, f"the dev choice changed: {new.get('row_name')!r} instead of {old.get('row_name')!r}")
    assert not problems, "\n".join(problems)


def test_the_augmentation_table_matches_the_committed_one():
    problems = table_problems(RUN, "augmentation_table")
    assert not problems, "\n".join(problems)


def test_the_augmentation_dev_choice_is_among_the_committed_ties():
    new, old = fresh(RUN), committed(RUN)
    tied = old.get("selection", {}).get("within_tolerance", [old.get("row")])
    assert new.get("row") in tied, (
        f"the dev choice changed: row {new.get('row')!r} instead of {old.get('row')!r} (committed ties: {tied})"
    )
