"""After notebook 10 ran (``./run_tests.sh field`` or ``all``): its export against the committed one.

The same checks as 07's (test_exports.py): every number of the exported single model within the
seed spread, the table row by row, the dev choice among the committed ties; and the exported model
searches (the search page's default can be it).
"""

import pytest
from test_exports import _problems, committed, committed_runs, fresh, spreads, table_problems

RUNS = committed_runs(field=True)


def test_notebook_10_exported_its_dev_choice():
    if not RUNS:
        pytest.fail("no committed results/field_best/metrics.json: run ./run_all.sh 10 and commit it")
    new, old = fresh("field_best"), committed("field_best")
    assert new["timings_s"] != old["timings_s"], (
        "field_best/metrics.json was not rewritten by this run (did notebook 10 run?)"
    )
    problems = _problems(new["test"], old["test"], spreads())
    if new.get("row") != old.get("row"):
        problems = (
            [
                f"the dev choice changed: {new.get('row_name')!r} instead of {old.get('row_name')!r}; against the committed choice's:"
            ]
            + problems
            if problems
            else []
        )
    assert not problems, "\n".join(problems)


def test_the_field_table_matches_the_committed_one():
    problems = table_problems("field_best", "beyond_table")
    assert not problems, "\n".join(problems)


def test_the_field_dev_choice_is_among_the_committed_ties():
    new, old = fresh("field_best"), committed("field_best")
    tied = old.get("selection", {}).get("within_tolerance", [old.get("row")])
    assert new.get("row") in tied, (
        f"the dev choice changed: row {new.get('row')!r} instead of {old.get('row')!r} (committed ties: {tied})"
    )


def test_the_field_choice_searches():
    from flickr_retrieval.search.searcher import Searcher

    hits = Searcher("field_best", "test").search("two dogs play in the snow", k=5)
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
