"""Tolerances of the regression checks (flickr_retrieval.regression) at their thresholds."""

import math

import pytest
from flickr_retrieval import regression


def test_tolerance_scales_with_the_seed_spread_and_the_number_of_seeds():
    assert regression.tolerance(50.0, 1.0) == pytest.approx(regression.Z * math.sqrt(2.0))
    assert regression.tolerance(50.0, 1.0, n_seeds=2) == pytest.approx(regression.Z)
    assert regression.tolerance(50.0, 0.0) == 0.5  # the floor


def test_small_values_may_move_by_at_most_half_themselves():
    assert regression.tolerance(3.3, 2.0) == pytest.approx(1.65)  # a recall of 3.3 cannot fall to 0 and pass
    assert regression.tolerance(0.3, 2.0) == 0.5  # near chance: the floor
    assert regression.tolerance(10.0, 2.0) == pytest.approx(regression.Z * math.sqrt(2.0) * 2.0)  # not small any more
    with pytest.raises(ValueError):
        regression.tolerance(1.0, -1.0)


def test_rank_tolerance_and_check():
    assert regression.rank_tolerance(5.0, 0.0) == pytest.approx(5.0 / 3)
    assert regression.rank_tolerance(2.0, 0.0) == 1.0
    assert regression.rank_tolerance(60.0, 0.5) == 20.0  # a weak model's median rank moves by tens
    assert regression.check("x", 10.0, 11.0, 1.0) is None
    assert "allowed" in regression.check("x", 10.0, 11.5, 1.0)
    assert regression.check("x", float("nan"), 1.0, 5.0) is not None


def test_evidence_tolerance_by_kind_of_number():
    sd = {"R@1": 0.5, "R@5": 1.0, "R@10": 1.0}
    assert regression.evidence_tolerance(0.93, "pair ROC AUC", sd) == 0.05
    assert regression.evidence_tolerance(0.3, "projection, dev R@10, correct vs broken features", sd) == 2.0
    assert regression.evidence_tolerance(48.6, "dev R@10", sd) == pytest.approx(regression.Z * math.sqrt(2.0) * 1.0)
    # a difference of two rows: sqrt(2) more spread, and no cap for being near 0
    assert regression.evidence_tolerance(0.4, "test R@1+R@5+R@10, row 5d minus row 5b", sd) == pytest.approx(
        regression.Z * 2.0 * 2.5
    )
    assert regression.evidence_tolerance(-21.6, "test R@1, row 2a minus row 1", sd) == pytest.approx(
        regression.Z * 2.0 * 1.0
    )
    assert regression.evidence_tolerance(3.0, "anything", sd, stated=0.1) == 0.1
    assert regression.numbers("+1.2 (+0.3 to -2.1): helps") == [1.2, 0.3, -2.1]
