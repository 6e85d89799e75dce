"""The ledger of the report's claims."""

import pytest
from flickr_retrieval import ledger


def _claim(id_="c1", section="IX-C", verdict="confirmed", notebook="02_sanity_checks"):
    return ledger.Claim(
        id_,
        section,
        "les vecteurs",
        "the vectors",
        verdict,
        "because",
        (ledger.Evidence(notebook, "mean cosine", "0.98"),),
    )


def test_a_claim_needs_a_known_verdict_and_evidence():
    with pytest.raises(ValueError, match="verdict"):
        _claim(verdict="probably")
    with pytest.raises(ValueError, match="no evidence"):
        ledger.Claim("c", "X", "a", "b", "refuted", "c", ())
    with pytest.raises(ValueError, match="claim id"):
        _claim(id_="Bad Id")


def test_record_and_load_round_trip_in_report_order(tmp_path):
    ledger.record("07_improvements", [_claim("late", "XIII"), _claim("mid", "IX-C")], tmp_path)
    ledger.record("00_data", [_claim("early", "IV-B", notebook="00_data")], tmp_path)
    claims = ledger.load(tmp_path)
    assert [c.id for c in claims] == ["early", "mid", "late"]
    assert claims[0].evidence[0].notebook == "00_data"
    assert ledger.counts(claims)["confirmed"] == 3
    assert ledger.problems(claims, ["00_data", "02_sanity_checks"]) == []
    assert "unknown notebook" in ledger.problems(claims, ["00_data"])[0]
    md = ledger.to_markdown(claims)
    assert md.count("\n") == 4 and "[00_data](00_data.html)" in md
    assert "<table" in ledger.to_html(claims) and "&laquo;" not in ledger.to_html(claims)


def test_a_claim_recorded_twice_is_an_error(tmp_path):
    ledger.record("a", [_claim("same")], tmp_path)
    ledger.record("b", [_claim("same")], tmp_path)
    with pytest.raises(ValueError, match="twice"):
        ledger.load(tmp_path)


def test_status_reads_the_comparisons_words_and_no_difference_is_not_shown():
    from flickr_retrieval.ledger import status

    assert status(["helps", "helps"], "helps") == "confirmed"
    assert status(["hurts"], "hurts") == "confirmed"
    assert status(["helps", "hurts"], "helps") == "refuted"
    assert status(["no measurable difference"], "helps") == "not shown"
    assert status(["helps", "no measurable difference"], "helps") == "not shown"
    with pytest.raises(ValueError):
        status([], "helps")


def test_a_claim_refuted_on_no_measurable_difference_alone_is_graded_not_shown():
    from flickr_retrieval.ledger import Claim, Evidence, graded

    def claim(verdict, *values):
        return Claim(
            "c", "study", "", "x helps", verdict, "why", tuple(Evidence("07_improvements", "w", v) for v in values)
        )

    null = claim("refuted", "+1.2 (-0.0 to +2.4): no measurable difference")
    assert graded(null).verdict == "not shown" and "not evidence against" in graded(null).why
    opposite = claim("refuted", "-2.5 (-4.1 to -1.0): hurts", "+0.7 (-0.4 to +1.9): no measurable difference")
    assert graded(opposite) == opposite
    assert graded(claim("refuted", "0.250")).verdict == "refuted"  # not a comparison: the notebook's reasoning stands
    assert graded(claim("confirmed", "+3.3 (+1.9 to +4.8): helps")).verdict == "confirmed"
