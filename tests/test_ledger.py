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
