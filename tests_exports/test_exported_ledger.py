"""After the notebooks ran: the ledger of the report's claims they recorded."""

import json
import re
import subprocess
from pathlib import Path

import pytest

from flickr_retrieval import ledger
from flickr_retrieval.experiments import EXPORT_RECALL_TOLERANCE

ROOT = Path(__file__).resolve().parents[1]


def test_every_claim_has_a_verdict_and_evidence_that_exists():
    claims = ledger.load(ROOT / "results" / "claims")
    notebooks = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert len(claims) >= 15
    assert ledger.problems(claims, notebooks) == []
    assert all(c.verdict in ledger.VERDICTS and c.evidence for c in claims)
    recording = {p.stem for p in (ROOT / "results" / "claims").glob("*.json")}
    for c in claims:  # each piece of evidence names a notebook that recorded claims and is exported
        assert {e.notebook for e in c.evidence} <= recording | set(notebooks), c.id


def test_the_claims_are_those_committed():
    out = subprocess.run(["git", "ls-files", "results/claims/*.json"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    committed = set()
    for path in out:
        text = subprocess.run(["git", "show", f"HEAD:{path}"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        committed |= {c["id"] for c in json.loads(text)["claims"]}
    fresh = {c.id for c in ledger.load(ROOT / "results" / "claims")}
    assert fresh == committed, (sorted(fresh - committed), sorted(committed - fresh))


NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def _numbers(text: str) -> list[float]:
    return [float(n) for n in NUMBER.findall(text)]


def test_the_evidence_numbers_match_the_committed_ones():
    """The headline figures a reader relies on (03's pair AUCs, 04's recalls, every notebook's
    evidence) within the float-rounding tolerances of the exports: recalls and ranks within
    EXPORT_RECALL_TOLERANCE points (or 10% of a large value), AUCs and cosines within 0.05; timings
    are not compared."""
    out = subprocess.run(["git", "ls-files", "results/claims/*.json"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    committed = {}
    for path in out:
        text = subprocess.run(["git", "show", f"HEAD:{path}"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        for claim in json.loads(text)["claims"]:
            for e in claim["evidence"]:
                committed[(claim["id"], e["notebook"], e["what"])] = e["value"]
    checked = 0
    for claim in ledger.load(ROOT / "results" / "claims"):
        for e in claim.evidence:
            key = (claim.id, e.notebook, e.what)
            if key not in committed or any(word in e.what for word in ("second", "time", " ms")):
                continue
            old, fresh = _numbers(committed[key]), _numbers(e.value)
            assert len(old) == len(fresh), (key, committed[key], e.value)
            for a, b in zip(fresh, old):
                tolerance = 0.05 if abs(b) <= 1 else max(EXPORT_RECALL_TOLERANCE, 0.1 * abs(b))
                assert a == pytest.approx(b, abs=tolerance), (key, committed[key], e.value)
            checked += 1
    assert checked >= 20
