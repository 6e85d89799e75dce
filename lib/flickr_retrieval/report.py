"""The HTML report's index page: the notebooks in order, and every exported run's test metrics.

``python -m flickr_retrieval.report REPORT_DIR NOTEBOOK_DIR`` (``run_all.sh`` calls it after
``jupyter nbconvert --to html`` has written one page per notebook into REPORT_DIR).
"""

from __future__ import annotations

import html
import json
import re
import sys
from pathlib import Path

import mistune
import nbformat

from . import paths, verdicts

SUMMARY_CHARS = 900  # a summary longer than this ends at the last sentence that fits
_SENTENCE_END = re.compile(r"(?<=[.!?:])\s+(?=[A-Z(*`\"])")


def summary_markdown(paragraphs: list[str], limit: int = SUMMARY_CHARS) -> str:
    """The opening of a notebook: its first paragraph (and the next while short), ended at a sentence,
    never mid-word."""
    text = ""
    for paragraph in paragraphs:
        text = f"{text}\n\n{paragraph}".strip()
        if len(text) >= 250:
            break
    if len(text) <= limit:
        return text
    ends = [m.start() for m in _SENTENCE_END.finditer(text) if m.start() <= limit]
    return text[: ends[-1]] if ends else text[: text.rfind(" ", 0, limit)] + " ..."


def render_markdown(text: str) -> str:
    """Markdown as HTML (raw HTML in the text is escaped)."""
    return mistune.create_markdown(escape=True)(text)


def notebook_title(path: Path) -> tuple[str, str]:
    """The first markdown heading of a notebook and its opening summary (markdown)."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        lines = cell.source.splitlines()
        heading = next((line.lstrip("#").strip() for line in lines if line.startswith("#")), path.stem)
        body = "\n".join(line for line in lines if not line.startswith("#"))
        paragraphs = [
            " ".join(p.split()) if not p.lstrip().startswith(("|", "-", "*", "1.")) else p.strip()
            for p in re.split(r"\n\s*\n", body)
            if p.strip()
        ]
        return heading, summary_markdown(paragraphs)
    return path.stem, ""


def runs_table(results: Path) -> str:
    rows = []
    for metrics_file in sorted(results.glob("*/metrics.json")):
        m = json.loads(metrics_file.read_text())
        t2i, i2t = m["test"]["strict"]["t2i"], m["test"]["strict"]["i2t"]
        cfg = m["config"]
        rows.append(
            f"<tr><td>{html.escape(metrics_file.parent.name)}</td><td>{html.escape(cfg['image_backbone'])}</td>"
            f"<td>{html.escape(cfg['text_encoder'])} ({cfg['text_pooling']})</td><td>{cfg['loss']}</td>"
            + "".join(f"<td>{t2i[k]:.1f}</td>" for k in ("R@1", "R@5", "R@10"))
            + f"<td>{t2i['medr']:.0f}</td>"
            + "".join(f"<td>{i2t[k]:.1f}</td>" for k in ("R@1", "R@5", "R@10"))
            + "</tr>"
        )
    if not rows:
        return "<p>No exported runs yet.</p>"
    head = "".join(
        f"<th>{h}</th>"
        for h in ("run", "images", "text", "loss", "t2i R@1", "R@5", "R@10", "medr", "i2t R@1", "R@5", "R@10")
    )
    head = f"<tr>{head}</tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def improvements_section(results: Path) -> str:
    """07's table (as exported with the best run): every row's test recalls (means over its seeds),
    with the seed-paired verdict against the row it changes, and which row dev chose."""
    path = results / "best" / "metrics.json"
    if not path.is_file():
        return "<p>07 has not exported its table yet.</p>"
    record = json.loads(path.read_text())
    table, comparisons = record.get("improvements_table") or {}, record.get("comparisons") or {}
    chosen = (record.get("selection") or {}).get("chosen", "")
    head = (
        "<tr><th>row</th><th>changed from</th><th>seeds</th><th>R@1</th><th>R@5</th><th>R@10</th><th>medr</th><th>epochs kept</th>"
        "<th>R@1+R@5+R@10 vs parent (95% CI over seeds and images)</th></tr>"
    )
    rows = []
    for name, row in table.items():
        row_id = str(row.get("id", name.split()[0]))
        c = comparisons.get(row_id)
        verdict = verdicts.describe(c) if c else "-"
        mark = ' class="chosen"' if row_id == chosen else ""
        rows.append(
            f"<tr{mark}><td>{html.escape(name)}</td><td>{html.escape(str(row.get('changed from', '')))}</td><td>{row.get('seeds', 1)}</td>"
            + "".join(f"<td>{row[k]:.1f}</td>" for k in ("R@1", "R@5", "R@10"))
            + f"<td>{row['medr']:.1f}</td><td>{html.escape(str(row.get('epochs kept', '')))}</td><td>{html.escape(verdict)}</td></tr>"
        )
    return (
        f"<h2>07: the improvements, measured (test, text to image)</h2><p>Chosen on dev: <b>{html.escape(chosen)}</b> "
        f'(highlighted). Details, dev numbers and i2t in <a href="07_improvements.html">07_improvements</a>.</p>'
        f'<table class="results">{head}{"".join(rows)}</table>'
    )


def screenshots_section(report_dir: Path) -> str:
    """The search figures of 07 and the search page as the browser test saw it (when present)."""
    shots = [
        (f"../figures/{p.name}", p.stem.replace("_", " ")) for p in sorted(paths.figures_dir().glob("07_search_*.png"))
    ]
    shots += [
        (f"screenshots/{p.name}", p.stem.replace("_", " "))
        for p in sorted((report_dir / "screenshots").glob("search_page*.png"))
    ]
    if not shots:
        return ""
    figures = "".join(
        f'<figure><img src="{html.escape(src)}" alt="{html.escape(alt)}"><figcaption>{html.escape(alt)}</figcaption></figure>'
        for src, alt in shots
    )
    return (
        "<h2>Search with the chosen run</h2><p>Start the page with <code>flickr-retrieval-serve</code>, or see "
        f'<code>09_search</code> in Jupyter.</p><div class="shots">{figures}</div>'
    )


def ledger_section() -> str:
    """The ledger of the report's claims (generated from ``results/claims/``), for the top of the page."""
    from . import ledger

    claims = ledger.load(fallback=ledger.committed_dir())
    if not claims:
        return "<p>No claims recorded yet: run the notebooks.</p>"
    tally = ", ".join(f"{n} {verdict}" for verdict, n in ledger.counts(claims).items() if n)
    own = sum(c.section == ledger.STUDY for c in claims)
    return (
        f"<h2>Was the report right? The ledger of its claims</h2><p>{len(claims) - own} checkable statements of the report "
        f"and {own} of this study's own: {tally}. "
        'Each verdict and number comes from the notebook linked beside it (see <a href="08_ledger.html">08_ledger</a>).</p>'
        + ledger.to_html(claims)
    )


def write_index(report_dir: Path, notebook_dir: Path) -> Path:
    items = []
    for nb in sorted(notebook_dir.glob("[0-9][0-9]_*.ipynb")):
        title, body = notebook_title(nb)
        items.append(
            f'<li><a href="{nb.stem}.html">{html.escape(title)}</a><div class="summary">{render_markdown(body)}</div></li>'
        )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>rcp217: text-to-image retrieval on Flickr8k</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}}td,th{{padding:2px 8px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}table{{border-collapse:collapse}}
table.ledger td,table.ledger th{{text-align:left;vertical-align:top;font-size:90%}}tr.confirmed td:nth-child(3){{color:#176317}}
tr.refuted td:nth-child(3){{color:#a11}}tr.partly td:nth-child(3){{color:#8a5a00}}
tr.not-testable-here td:nth-child(3){{color:#555}}tr:nth-child(even){{background:#f3f3f3}}li{{margin:.6em 0}}
tr.chosen td{{font-weight:bold}}.summary p{{margin:.2em 0;font-size:92%}}.shots{{display:flex;flex-wrap:wrap;gap:1em}}
.shots img{{max-width:100%;border:1px solid #ccc}}.shots figure{{margin:0;max-width:100%}}</style></head>
<body><h1>rcp217: text-to-image retrieval on Flickr8k</h1>
<p>A re-run, stage by stage, of a student report (CNAM RCP217), and what the field does since.
Each notebook below was executed headlessly by <code>./run_all.sh</code>.</p>
{ledger_section()}
<h2>06: the exported runs (Flickr8k test split, 1000 images, 5000 captions)</h2>
{runs_table(paths.results_dir())}
<p>Text-to-image (t2i): each caption ranks the 1000 test images.
Image-to-text (i2t): each image ranks the 5000 captions (its best caption counts).</p>
{improvements_section(paths.results_dir())}
{screenshots_section(report_dir)}
<h2>Notebooks</h2><ol>{"".join(items)}</ol>
</body></html>"""
    out = report_dir / "index.html"
    out.write_text(page, encoding="utf-8")
    return out


if __name__ == "__main__":
    report_dir, notebook_dir = (Path(a) for a in sys.argv[1:3])
    print(write_index(report_dir, notebook_dir))
