"""After the notebooks ran: the ledger of the report's claims they recorded."""

import json
import subprocess
from pathlib import Path

from flickr_retrieval import ledger, paths, regression

ROOT = Path(__file__).resolve().parents[1]


def test_every_claim_has_a_verdict_and_evidence_that_exists():
    claims = ledger.load(paths.results_dir() / "claims", fallback=ledger.committed_dir())
    notebooks = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert len(claims) >= 15
    assert ledger.problems(claims, notebooks) == []
    assert all(c.verdict in ledger.VERDICTS and c.evidence for c in claims)
    recording = {p.stem for p in (paths.results_dir() / "claims").glob("*.json")}
    for c in claims:  # each piece of evidence names a notebook that recorded claims and is exported
        assert {e.notebook for e in c.evidence} <= recording | set(notebooks), c.id


def test_the_claims_are_those_committed():
    out = subprocess.run(
        ["git", "ls-files", "results/claims/*.json"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    committed = set()
    for path in out:
        text = subprocess.run(
            ["git", "show", f"HEAD:{path}"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        committed |= {c["id"] for c in json.loads(text)["claims"]}
    fresh = {c.id for c in ledger.load(paths.results_dir() / "claims", fallback=ledger.committed_dir())}
    assert fresh == committed, (sorted(fresh - committed), sorted(committed - fresh))


def _seed_sd() -> dict[str, float]:
    """The largest seed spread any row of 07 showed, per t2i recall (from the committed run records):
    most evidence numbers are drawn once."""
    largest = regression.seed_spreads(ROOT / "results" / "runs" / "07_improvements")["largest"]
    return {k: largest[f"t2i {k}"] for k in ("R@1", "R@5", "R@10")}


def test_the_evidence_numbers_match_the_committed_ones():
    """The headline figures a reader relies on (03's pair AUCs, 04's recalls, every notebook's
    evidence), each within :func:`regression.evidence_tolerance` (AUCs and cosines 0.05; recalls
    and differences of recalls from the measured seed spread, at most half a small value);
    timings are not compared."""
    out = subprocess.run(
        ["git", "ls-files", "results/claims/*.json"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    committed = {}
    for path in out:
        text = subprocess.run(
            ["git", "show", f"HEAD:{path}"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        for claim in json.loads(text)["claims"]:
            for e in claim["evidence"]:
                committed[(claim["id"], e["notebook"], e["what"])] = e["value"]
    sd, checked, problems = _seed_sd(), 0, []
    for claim in ledger.load(paths.results_dir() / "claims"):
        for e in claim.evidence:
            key = (claim.id, e.notebook, e.what)
            if key not in committed or any(word in e.what for word in ("second", "time", " ms")):
                continue
            old, fresh = regression.numbers(committed[key]), regression.numbers(e.value)
            if len(old) != len(fresh):
                problems.append(f"{key}: {committed[key]!r} became {e.value!r}")
                continue
            for a, b in zip(fresh, old):
                problems.append(
                    regression.check(
                        f"{key} ({committed[key]!r} -> {e.value!r})", a, b, regression.evidence_tolerance(b, e.what, sd)
                    )
                )
            checked += 1
    problems = [p for p in problems if p]
    assert not problems, "\n".join(problems)
    assert checked >= 20
