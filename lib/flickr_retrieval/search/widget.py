"""A search box for Jupyter: type a sentence, see the top-k images with their scores.

    from flickr_retrieval.search.widget import SearchBox
    box = SearchBox(collection="test")  # the default run: field_best if notebook 10 made it, else best, else quickstart
    box.search("two dogs play in the snow")   # the first search, from code (or type in the box)
    box                                        # shows the box and its results

Runs (``results/*``) and collections (Flickr8k splits, your indexed folders) are chosen in dropdowns;
each (run, collection) pair is loaded once. The result grid is plain HTML with the images inlined,
so :meth:`SearchBox.html` also renders in an exported notebook where widgets do not.
"""

from __future__ import annotations

import base64
import html

import ipywidgets as widgets

from ..errors import QueryError, RunNameError
from .photo_index import THUMBNAIL_SIZE, view_bytes
from .searcher import Hit, Searcher, collections, default_run, trained_runs

THUMBNAIL = 224  # shown width, in pixels (the thumbnail itself has up to THUMBNAIL_SIZE)


def thumbnail_uri(path, size: int = THUMBNAIL_SIZE) -> str:
    """The cached thumbnail of an image (:func:`photo_index.view_bytes`: made once, upright, at most
    ``size`` pixels a side) as a data: URI, so the grid needs no file server."""
    with open(path, "rb") as f:
        data = f.read()
    return "data:image/jpeg;base64," + base64.b64encode(view_bytes(data, size)).decode("ascii")


def results_html(
    searcher: Searcher, query: str, hits: list[Hit], with_captions: bool = False, seconds: float | None = None
) -> str:
    """The grid of ``hits``: image, rank, score, id; the reference captions under each when asked."""
    cells = []
    for h in hits:
        captions = ""
        if with_captions:
            found = searcher.captions(h.image_id)
            items = (
                "".join(f"<li>{html.escape(c)}</li>" for c in found)
                or "<li><i>no reference captions (not a Flickr8k image)</i></li>"
            )
            captions = f'<ol style="font-size:80%;padding-left:1.2em;margin:2px 0">{items}</ol>'
        cells.append(
            f'<figure class="hit" data-score="{h.score:.5f}" style="margin:0;width:{THUMBNAIL}px">'
            f'<img src="{thumbnail_uri(searcher.image_path(h.image_id))}" alt="{html.escape(h.image_id)}" '
            f'style="width:{THUMBNAIL}px"><figcaption style="font-size:85%">#{h.rank} &nbsp; {h.score:.3f} &nbsp; '
            f"{html.escape(h.image_id)}</figcaption>{captions}</figure>"
        )
    timing = f", {1000 * seconds:.0f} ms" if seconds is not None else ""
    head = (
        f"<p><b>{html.escape(query)}</b>: top {len(hits)} of {len(searcher.image_ids)} images of "
        f"{html.escape(searcher.collection.name)}, run {html.escape(searcher.trained.config.name)}{timing}</p>"
    )
    return head + f'<div style="display:flex;flex-wrap:wrap;gap:8px">{"".join(cells)}</div>'


class SearchBox(widgets.VBox):
    """The search box (sentence, k, collection, run, captions on demand) and its result grid."""

    def __init__(self, run: str | None = None, collection: str = "all", k: int = 8, data=None):
        run = run or default_run()
        runs = trained_runs() or [run]
        self.data = data
        self._searchers: dict[tuple[str, str], Searcher] = {}
        self.query = widgets.Text(
            placeholder="two dogs play in the snow", description="Sentence", layout=widgets.Layout(width="32em")
        )
        self.k = widgets.IntSlider(value=k, min=1, max=48, description="k")
        self.collection = widgets.Dropdown(options=collections(), value=collection, description="Collection")
        self.run = widgets.Dropdown(options=runs if run in runs else [run, *runs], value=run, description="Run")
        self.with_captions = widgets.Checkbox(value=False, description="reference captions")
        self.button = widgets.Button(description="Search", button_style="primary")
        self.results = widgets.HTML()
        self.last_html = ""
        self.button.on_click(lambda _: self.search())
        self.query.continuous_update = False
        self.query.observe(lambda change: self.search(), names="value")
        self.with_captions.observe(lambda change: self.search() if self.query.value else None, names="value")
        super().__init__(
            [
                widgets.HBox([self.query, self.button]),
                widgets.HBox([self.k, self.collection, self.run, self.with_captions]),
                self.results,
            ]
        )

    def searcher(self) -> Searcher:
        key = (self.run.value, self.collection.value)
        if key not in self._searchers:
            self._searchers[key] = Searcher(*key, data=self.data)
        return self._searchers[key]

    def search(self, query: str | None = None) -> list[Hit]:
        """Search ``query`` (default: the box's text) and show the grid; a bad query shows its message."""
        import time

        if query is not None and query != self.query.value:
            self.query.value = query  # triggers the observer, which searches
            return self._hits
        try:
            searcher = self.searcher()
            start = time.perf_counter()
            self._hits = searcher.search(self.query.value, self.k.value)
            self.last_html = results_html(
                searcher, self.query.value, self._hits, self.with_captions.value, time.perf_counter() - start
            )
        except (QueryError, RunNameError) as exc:
            self._hits = []
            self.last_html = f'<p style="color:#a11"><b>{html.escape(str(exc))}</b></p>'
        self.results.value = self.last_html
        return self._hits

    _hits: list[Hit] = []
