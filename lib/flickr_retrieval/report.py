"""The HTML report's index page: the notebooks in order, and every exported run's test metrics.

``python -m flickr_retrieval.report REPORT_DIR NOTEBOOK_DIR`` (``run_all.sh`` calls it after
``jupyter nbconvert --to html`` has written one page per notebook into REPORT_DIR).
"""

from __future__ import annotations

import html
import json
import sys
from pathlib import Path

import nbformat

from . import paths


def notebook_title(path: Path) -> tuple[str, str]:
    """The first markdown heading of a notebook and the paragraph after it."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        lines = [line.strip() for line in cell.source.splitlines()]
        heading = next((line.lstrip("#").strip() for line in lines if line.startswith("#")), path.stem)
        body = " ".join(line for line in lines if line and not line.startswith("#"))
        return heading, body[:400]
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
    head = "<tr><th>run</th><th>images</th><th>text</th><th>loss</th><th>t2i R@1</th><th>R@5</th><th>R@10</th><th>medr</th><th>i2t R@1</th><th>R@5</th><th>R@10</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def ledger_section() -> str:
    """The ledger of the report's claims (generated from ``results/claims/``), for the top of the page."""
    from . import ledger

    claims = ledger.load()
    if not claims:
        return "<p>No claims recorded yet: run the notebooks.</p>"
    tally = ", ".join(f"{n} {verdict}" for verdict, n in ledger.counts(claims).items() if n)
    return (f'<h2>Was the report right? The ledger of its claims</h2><p>{len(claims)} checkable statements of the report: {tally}. '
            'Each verdict and number comes from the notebook linked beside it (see <a href="08_ledger.html">08_ledger</a>).</p>'
            + ledger.to_html(claims))


def write_index(report_dir: Path, notebook_dir: Path) -> Path:
    items = []
    for nb in sorted(notebook_dir.glob("[0-9][0-9]_*.ipynb")):
        title, body = notebook_title(nb)
        items.append(f'<li><a href="{nb.stem}.html">{html.escape(title)}</a><br><small>{html.escape(body)}</small></li>')
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>rcp217: text-to-image retrieval on Flickr8k</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}}td,th{{padding:2px 8px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}table{{border-collapse:collapse}}
table.ledger td,table.ledger th{{text-align:left;vertical-align:top;font-size:90%}}tr.confirmed td:nth-child(3){{color:#176317}}
tr.refuted td:nth-child(3){{color:#a11}}tr.partly td:nth-child(3){{color:#8a5a00}}tr.not-testable-here td:nth-child(3){{color:#555}}tr:nth-child(even){{background:#f3f3f3}}li{{margin:.6em 0}}</style></head>
<body><h1>rcp217: text-to-image retrieval on Flickr8k</h1>
<p>A re-run, stage by stage, of a student report (CNAM RCP217), and what the field does since. Each notebook below was executed headlessly by <code>./run_all.sh</code>.</p>
{ledger_section()}
<h2>Notebooks</h2><ol>{''.join(items)}</ol>
<h2>Exported runs (Flickr8k test split, 1000 images, 5000 captions)</h2>
{runs_table(paths.results_dir())}
<p>Text-to-image (t2i): each caption ranks the 1000 test images. Image-to-text (i2t): each image ranks the 5000 captions (its best caption counts).</p>
</body></html>"""
    out = report_dir / "index.html"
    out.write_text(page, encoding="utf-8")
    return out


if __name__ == "__main__":
    report_dir, notebook_dir = (Path(a) for a in sys.argv[1:3])
    print(write_index(report_dir, notebook_dir))
