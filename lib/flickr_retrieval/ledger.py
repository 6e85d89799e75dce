"""The ledger: the report's claims, and this study's own, with what the measurements say of each.

Each notebook records the claims it measures, with verdicts and evidence computed from its own
numbers (:func:`record` writes ``results/claims/<notebook>.json``); the ledger notebook and the HTML
report's index page read them all back (:func:`load`). Nothing in the ledger is typed by hand except
the report's own words, so a re-run updates it.

Two kinds of claim: the report's (a section of the report, its French words and an English
rendering) and the study's own (section :data:`STUDY`, no French: what the README says a notebook
found). Verdicts follow the study's rules: comparisons rest on seed-paired intervals, their words are
the family-adjusted verdicts; "not testable here" names what is missing. "No measurable difference"
refutes nothing: a claim whose evidence shows no difference either way is **not shown**
(:func:`status`, and :func:`graded` for claims a notebook recorded as "refuted" on such evidence).
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from . import paths

VERDICTS = ("confirmed", "refuted", "not shown", "partly", "not testable here")
#: The verdict words of a comparison (:mod:`flickr_retrieval.verdicts`), as evidence values end them.
_WORD = re.compile(r"\): (helps|hurts|no measurable difference)")
#: The section of the study's own claims (after the report's).
STUDY = "study"
_SECTION_ORDER = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII", "XIII", "XIV", STUDY]


@dataclass(frozen=True)
class Evidence:
    """A number a notebook measured: ``notebook`` (its file stem), what it is, and its value."""

    notebook: str
    what: str
    value: str


@dataclass(frozen=True)
class Claim:
    """One checkable statement of the report.

    ``section``: the report's section (``"IX-C"``), or :data:`STUDY` for a claim of this study's own;
    ``french``: the report's words (empty for the study's claims); ``english``: a rendering, or the
    study's claim; ``verdict``: one of :data:`VERDICTS`; ``why``: the reasoning from the evidence.
    """

    id: str
    section: str
    french: str
    english: str
    verdict: str
    why: str
    evidence: tuple[Evidence, ...] = field(default_factory=tuple)

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if not self.evidence:
            raise ValueError(f"claim {self.id!r} has no evidence")
        if not re.fullmatch(r"[a-z0-9-]+", self.id):
            raise ValueError(f"claim id {self.id!r}: lower-case letters, digits and '-' only")


def evidence_words(claim: Claim) -> list[str]:
    """The verdict word of each piece of evidence that is a comparison ("+1.2 (-0.0 to +2.4): no
    measurable difference" -> "no measurable difference"); other evidence gives none."""
    return [m.group(1) for e in claim.evidence for m in [_WORD.search(e.value)] if m]


def status(words: list[str], claimed: str) -> str:
    """A claim's verdict from its comparisons' (family-adjusted) words, the claim saying the change
    ``claimed`` ("helps" or "hurts"): confirmed when every word says so, refuted when one says the
    opposite, and not shown otherwise ("no measurable difference" is the absence of evidence)."""
    if claimed not in ("helps", "hurts") or not words:
        raise ValueError("status takes the words of at least one comparison and a claimed direction, helps or hurts")
    opposite = "hurts" if claimed == "helps" else "helps"
    if opposite in words:
        return "refuted"
    return "confirmed" if all(w == claimed for w in words) else "not shown"


def graded(claim: Claim) -> Claim:
    """``claim``, or, when it was recorded as refuted on comparisons that all show no measurable
    difference, the same claim graded **not shown** (and its ``why`` says so)."""
    words = evidence_words(claim)
    if claim.verdict == "refuted" and words and all(w == "no measurable difference" for w in words):
        return replace(
            claim,
            verdict="not shown",
            why=claim.why + " (graded 'not shown': no measurable difference is not evidence against the claim)",
        )
    return claim


def claims_dir() -> Path:
    return paths.results_dir() / "claims"


def record(notebook: str, claims: list[Claim], folder: Path | None = None) -> Path:
    """Write ``notebook``'s claims to ``<folder>/<notebook>.json`` (default ``results/claims/``)."""
    folder = folder or claims_dir()
    folder.mkdir(parents=True, exist_ok=True)
    ids = [c.id for c in claims]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate claim ids in {notebook}: {ids}")
    path = folder / f"{paths.check_run_name(notebook)}.json"
    path.write_text(
        json.dumps({"notebook": notebook, "claims": [asdict(c) for c in claims]}, indent=1, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    return path


def _section_key(section: str) -> tuple[int, str]:
    match = re.match(r"[IVX]+|study", section)
    roman = match.group(0) if match else ""
    return (_SECTION_ORDER.index(roman) if roman in _SECTION_ORDER else len(_SECTION_ORDER), section)


def committed_dir() -> Path:
    """The project's own ``results/claims/`` (the committed claims), wherever this run writes."""
    return paths.project_root() / "results" / "claims"


def load(folder: Path | None = None, fallback: Path | None = None) -> list[Claim]:
    """Every recorded claim (:func:`graded`), in the report's order of sections (the study's own last). With
    ``fallback`` (the committed claims): a notebook that recorded nothing in ``folder`` (it has not
    run in this test run, e.g. the field notebooks of a default test run) counts with its committed
    claims."""
    files = {p.name: p for p in sorted((folder or claims_dir()).glob("*.json"))}
    if fallback is not None and fallback.is_dir():
        files = {**{p.name: p for p in sorted(fallback.glob("*.json"))}, **files}
    claims = []
    for path in [files[name] for name in sorted(files)]:
        for c in json.loads(path.read_text(encoding="utf-8"))["claims"]:
            claims.append(graded(Claim(**{**c, "evidence": tuple(Evidence(**e) for e in c["evidence"])})))
    ids = [c.id for c in claims]
    if len(set(ids)) != len(ids):
        raise ValueError(f"a claim id is recorded twice: {sorted(i for i in ids if ids.count(i) > 1)}")
    return sorted(claims, key=lambda c: _section_key(c.section))


def problems(claims: list[Claim], notebooks: list[str]) -> list[str]:
    """What is wrong with a ledger: evidence pointing at a notebook that does not exist, empty fields."""
    out = []
    for c in claims:
        for e in c.evidence:
            if e.notebook not in notebooks:
                out.append(f"{c.id}: evidence from unknown notebook {e.notebook!r}")
            if not e.value.strip() or not e.what.strip():
                out.append(f"{c.id}: empty evidence")
        if not ((c.french.strip() or c.section == STUDY) and c.english.strip() and c.why.strip()):
            out.append(f"{c.id}: empty text")
    return out


def counts(claims: list[Claim]) -> dict[str, int]:
    return {v: sum(c.verdict == v for c in claims) for v in VERDICTS}


def to_markdown(claims: list[Claim], link=lambda notebook: f"{notebook}.html") -> str:
    """A markdown table: section, claim (French and English), verdict, why, evidence (linked)."""
    rows = ["| section | the report says | verdict | why | evidence |", "| --- | --- | --- | --- | --- |"]
    cell = lambda s: s.replace("|", "\\|").replace("\n", " ")  # noqa: E731
    for c in claims:
        evidence = "<br>".join(
            f"[{e.notebook}]({link(e.notebook)}): {cell(e.what)} = **{cell(e.value)}**" for e in c.evidence
        )
        said = f"*« {cell(c.french)} »*<br>{cell(c.english)}" if c.french else f"(this study) {cell(c.english)}"
        rows.append(f"| {c.section} | {said} | **{c.verdict}** | {cell(c.why)} | {evidence} |")
    return "\n".join(rows)


def to_html(claims: list[Claim], link=lambda notebook: f"{notebook}.html") -> str:
    """An HTML table of the same."""
    esc = html.escape
    rows = []
    for c in claims:
        evidence = "<br>".join(
            f'<a href="{esc(link(e.notebook))}">{esc(e.notebook)}</a>: {esc(e.what)} = <b>{esc(e.value)}</b>'
            for e in c.evidence
        )
        said = f"<i>« {esc(c.french)} »</i><br>{esc(c.english)}" if c.french else f"(this study) {esc(c.english)}"
        rows.append(
            f'<tr class="{c.verdict.replace(" ", "-")}"><td>{esc(c.section)}</td><td>{said}</td>'
            f"<td><b>{esc(c.verdict)}</b></td><td>{esc(c.why)}</td><td>{evidence}</td></tr>"
        )
    return (
        '<table class="ledger"><thead><tr><th>section</th><th>the report says</th><th>verdict</th><th>why</th>'
        "<th>evidence</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
