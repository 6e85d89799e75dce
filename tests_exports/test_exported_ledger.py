"""After the notebooks ran: the ledger of the report's claims they recorded."""

import json
import subprocess
from pathlib import Path

from flickr_retrieval import ledger

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
