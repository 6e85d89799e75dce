"""A local search page: type a sentence, see the images a trained run ranks first.

    flickr-retrieval-serve                       # run "best" over all 8091 images, http://127.0.0.1:8217
    flickr-retrieval-serve --run best --collection test --port 9000

Built on Flask. The run and the image embeddings are loaded once (at start for the defaults, on first
use for any other run or collection chosen on the page); each query then embeds one sentence and
takes one matrix-vector product. Routes:

``/``                               the page (search box, k, collection, run; result grid; click an image
                                    for a larger view and its reference captions)
``/api/search?q=&k=&collection=&run=``  JSON: the hits (rank, id, score, image URL, captions) and the
                                    server time in ms, or ``{"error": ...}`` with status 400
``/image/<collection>/<n>``         the n-th image of a loaded collection. Images are served by position
                                    in the collection's own list, so no request can name another file.

The server binds to 127.0.0.1 unless ``--host`` says otherwise: it is meant for one person's machine.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

from flask import Flask, abort, jsonify, render_template, request, send_file

from . import paths
from .errors import QueryError, RunNameError, cli_errors
from .gallery import FLICKR8K_COLLECTIONS, check_collection_name
from .search import Searcher, collections, trained_runs

DEFAULT_PORT = 8217
MAX_K = 100


class SearchService:
    """Searchers by (run, collection), each loaded once and shared by all requests."""

    def __init__(self, data=None):
        self.data = data
        self._searchers: dict[tuple[str, str], Searcher] = {}
        self._lock = threading.Lock()  # loading and torch inference, one request at a time

    def searcher(self, run: str, collection: str) -> Searcher:
        paths.check_run_name(run)
        if collection not in FLICKR8K_COLLECTIONS:
            check_collection_name(collection)  # before any loading: names are names
        key = (run, collection)
        with self._lock:
            if key not in self._searchers:
                self._searchers[key] = Searcher(run, collection, data=self.data)
            return self._searchers[key]

    def loaded_gallery(self, collection: str):
        """The gallery of a collection some loaded searcher uses, or None."""
        for (_, name), searcher in list(self._searchers.items()):
            if name == collection:
                return searcher.gallery
        return None

    def search(self, query: str, k: int, run: str, collection: str) -> dict:
        searcher = self.searcher(run, collection)
        start = time.perf_counter()
        with self._lock:
            hits = searcher.search(query, k)
        ms = 1000 * (time.perf_counter() - start)
        return {
            "query": query, "run": run, "collection": collection, "images": len(searcher.image_ids), "ms": round(ms, 2),
            "hits": [
                {"rank": h.rank, "id": h.image_id, "score": round(h.score, 5), "image": f"/image/{collection}/{searcher.position(h.image_id)}",
                 "captions": searcher.captions(h.image_id)}
                for h in hits
            ],
        }


def parse_k(value: str | None, default: int = 8) -> int:
    if value is None or value == "":
        return default
    try:
        k = int(value)
    except ValueError:
        raise QueryError(f"k must be a whole number from 1 to {MAX_K}, got {value!r}") from None
    if not 1 <= k <= MAX_K:
        raise QueryError(f"k must be from 1 to {MAX_K}, got {k}")
    return k


def create_app(service: SearchService | None = None, run: str = "best", collection: str = "all") -> Flask:
    """The Flask app; ``run`` and ``collection`` are the page's defaults."""
    service = service or SearchService()
    app = Flask(__name__)
    app.config["JSON_SORT_KEYS"] = False

    @app.get("/")
    def page():
        runs = trained_runs()
        return render_template("search.html", runs=runs or [run], collections=collections(), run=run, collection=collection, max_k=MAX_K)

    @app.get("/api/search")
    def api_search():
        try:
            query = request.args.get("q", "")
            k = parse_k(request.args.get("k"))
            result = service.search(query, k, request.args.get("run") or run, request.args.get("collection") or collection)
        except (QueryError, RunNameError) as exc:
            return jsonify(error=str(exc)), 400
        return jsonify(result)

    @app.get("/image/<collection_name>/<int:position>")
    def image(collection_name: str, position: int):
        gallery = service.loaded_gallery(collection_name)
        if gallery is None or not 0 <= position < len(gallery.files):
            abort(404)
        return send_file(gallery.files[position], max_age=3600)

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A local web page to search images with a sentence.")
    parser.add_argument("--run", default="best", help="the trained run the page starts with (default: best)")
    parser.add_argument("--collection", default="all", help="a Flickr8k split, all (default), or a folder indexed with flickr-retrieval-index")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    args = parser.parse_args(argv)
    with cli_errors("flickr-retrieval-serve"):
        service = SearchService()
        start = time.perf_counter()
        searcher = service.searcher(args.run, args.collection)  # loaded once, before the first request
        print(f"loaded run {args.run!r} and {len(searcher.image_ids)} images of {args.collection!r} in {time.perf_counter() - start:.1f} s")
        app = create_app(service, args.run, args.collection)
        print(f"open http://{args.host}:{args.port}/  (Ctrl+C to stop)")
        app.run(host=args.host, port=args.port, threaded=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
