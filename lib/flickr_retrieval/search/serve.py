"""A local search page: type a sentence, see the images a trained run ranks first.

    flickr-retrieval-serve                       # the default run (field_best, else best) over all 8091 images, http://127.0.0.1:8217
    flickr-retrieval-serve --run best --collection test --port 9000

Built on Flask, served by waitress (:mod:`http_server`: idle and slow connections cost no thread;
connections, per-client connections, request heads and bodies bounded). The run and the image
embeddings are loaded once (at start for the defaults, on first use for any other run or collection
chosen on the page; an indexed collection again when its index changes, so that new photos appear
without a restart); each query then embeds one sentence and takes one matrix-vector product. Routes:

``/``                               the page (search box, k, collection, run; result grid; click an image
                                    for a larger view and its reference captions)
``/api/search?q=&k=&collection=&run=``  JSON: the hits (rank, id, score, image URL, captions) and the
                                    server time in ms, or ``{"error": ...}`` with status 400
``/api/similar?id=&k=&collection=&run=``  JSON: "more like this", the images whose embeddings are
                                    closest to image ``id``'s (the image branch's output, cosine)
``/api/describe?id=&k=&collection=&run=`` JSON: image-to-text, the collection's captions the run scores
                                    highest for image ``id`` (Flickr8k collections)
``/image/<collection>/<n>[?size=large]``  the n-th image of a loaded collection, as a JPEG thumbnail (at
                                    most 320 pixels a side; ``size=large``: 1024), made once and cached:
                                    the original file is never sent. Images are named by position in the
                                    collection's own list, so no request can name another file; the file
                                    is checked again when it is read (a regular file inside the
                                    collection's folder, at most 50 MB, starting like an image: JPEG,
                                    PNG, GIF, WebP, HEIC; anything else is a 404).

Every response carries ``X-Content-Type-Options: nosniff`` and a Content-Security-Policy that allows
only this server's own scripts (with a per-page nonce), images and requests. The server binds to
127.0.0.1 unless ``--host`` says otherwise (with a warning), answers only requests whose ``Host`` is
a loopback name or that host (no DNS rebinding), and never runs Flask's debugger (``FLASK_DEBUG``
is ignored). Every error of ``/api/...`` is JSON.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import secrets
import socket
import stat
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path

from flask import Flask, Response, abort, g, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from .. import paths
from ..data import load_flickr8k
from ..errors import QueryError, RunNameError, cli_errors
from ..text_encoders import load_text_encoder
from .collection import FLICKR8K_COLLECTIONS, Collection, check_collection_name, index_stamp
from .http_server import check_free, make_server, stop  # noqa: F401  (serve.make_server, serve.stop: the page's server)
from .photo_index import LARGE_SIZE, THUMBNAIL_SIZE, image_type, view_bytes
from .searcher import Searcher, check_k, collections, default_run, load_run, trained_runs

DEFAULT_PORT = 8217
MAX_K = 100
MAX_IMAGE_BYTES = 50 * 2**20
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]


def read_image(path: Path, root: Path | None) -> tuple[bytes, str] | None:
    """The bytes and type of the image at ``path``, checked now (not when it was indexed): it must
    resolve inside ``root``, be a regular file of at most :data:`MAX_IMAGE_BYTES`, and start like an
    image. None otherwise (a file swapped for a link to elsewhere, a FIFO, a device, an HTML file)."""
    try:
        real = os.path.realpath(path)
        if root is not None and os.path.commonpath([real, os.path.realpath(root)]) != os.path.realpath(root):
            return None
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        fd = os.open(real, flags)
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_IMAGE_BYTES:
                return None
            data = handle.read(info.st_size + 1)  # what it holds, never a buffer of the limit's size
    except (OSError, ValueError):
        return None
    mime = image_type(data[:16])
    return (data, mime) if mime and len(data) <= MAX_IMAGE_BYTES else None


def check_port(value: str) -> int:
    """argparse type: a TCP port from 1 to 65535."""
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a port is a whole number from 1 to 65535, got {value!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is a whole number from 1 to 65535, got {port}")
    return port


class SearchService:
    """Searchers by (run, collection), loaded on first use and shared by all requests; at most
    ``max_loaded`` of them are kept (the least recently used is released), so that requests naming
    many runs and collections cannot grow the server's memory without bound (each holds a model and
    its image embeddings: 100-200 MB). Searchers of the same sentence encoder share one loaded copy
    of it. Loading is serialised; searches are not (several requests are answered at once; only each
    encoder's tokenizer is used one request at a time).

    An indexed collection whose index was written again since (``flickr-retrieval-index``, watch mode)
    is read again at its next request, the run kept: the open page shows new photos without a restart.
    The image route opens collections on its own (:meth:`collection`, file lists only, at most
    ``max_collections``), so an image on screen stays served however many runs the page has used."""

    def __init__(self, data=None, max_loaded: int = 4, max_collections: int = 16):
        if max_loaded < 1 or max_collections < 1:
            raise ValueError(f"max_loaded and max_collections must be at least 1, got {max_loaded}, {max_collections}")
        self.data, self.max_loaded, self.max_collections = data, max_loaded, max_collections
        self._searchers: OrderedDict[tuple[str, str], Searcher] = OrderedDict()
        self._stamps: dict[tuple[str, str], tuple | None] = {}  # the index each searcher was loaded from
        self._collections: OrderedDict[str, tuple] = OrderedDict()  # name -> (Collection, its stamp), for images
        self._encoders: dict[str, tuple] = {}  # text encoder name -> (loaded encoder, its tokenizer lock)
        self._lock = threading.Lock()  # the bookkeeping of what is loaded (held for moments, never while loading)
        self._loading: dict[tuple[str, str], threading.Lock] = {}  # one loader per (run, collection)

    def add(self, run: str, collection: str, searcher: Searcher) -> None:
        """Keep an already loaded searcher under (run, collection) (a server that loads its default
        before the first request; tests)."""
        with self._lock:
            self._keep((run, collection), searcher, index_stamp(collection))

    def _keep(self, key: tuple[str, str], searcher: Searcher, stamp) -> None:
        """Under the lock: keep ``searcher``, release the least recently used beyond ``max_loaded``
        and the encoders no kept searcher uses."""
        self._searchers[key], self._stamps[key] = searcher, stamp
        self._searchers.move_to_end(key)
        while len(self._searchers) > self.max_loaded:
            self._stamps.pop(self._searchers.popitem(last=False)[0], None)
        used = {s.encoder.name for s in self._searchers.values()}
        self._encoders = {n: e for n, e in self._encoders.items() if n in used}

    def searcher(self, run: str, collection: str) -> Searcher:
        paths.check_run_name(run)
        if collection not in FLICKR8K_COLLECTIONS:
            check_collection_name(collection)  # before any loading: names are names
        key = (run, collection)
        stamp = index_stamp(collection)
        with self._lock:
            kept = self._searchers.get(key)
            if kept is not None and self._stamps.get(key) == stamp:  # the common case: a moment under the lock
                self._searchers.move_to_end(key)
                return kept
            loader = self._loading.setdefault(key, threading.Lock())
        with loader:  # loading (seconds; a damaged file: however long its checks take) blocks only this pair
            with self._lock:
                kept = self._searchers.get(key)
                if kept is not None and self._stamps.get(key) == stamp:  # another request loaded it meanwhile
                    return kept
            trained = kept.trained if kept is not None else load_run(run)  # a new index: the run is kept
            name = trained.config.text_encoder
            with self._lock:
                shared = self._encoders.get(name)
            if shared is None:
                shared = (load_text_encoder(name), threading.Lock())
            searcher = Searcher(trained, collection, data=self.data, encoder=shared[0], tokenizer_lock=shared[1])
            with self._lock:
                self._encoders.setdefault(name, shared)
                self._keep(key, searcher, stamp)
                self._loading.pop(key, None)
                return searcher

    def collection(self, name: str) -> Collection:
        """The collection ``name`` as the image route reads it: opened here from its index (never
        through a searcher, so it does not depend on which runs are loaded), read again when its index
        was written again, the last :attr:`max_collections` kept. :class:`QueryError` for a name
        that is not a collection."""
        if name not in FLICKR8K_COLLECTIONS:
            check_collection_name(name)
        stamp = index_stamp(name)
        with self._lock:
            kept = self._collections.get(name)
            if kept is not None and kept[1] == stamp:
                self._collections.move_to_end(name)
                return kept[0]
        if name in FLICKR8K_COLLECTIONS:
            if self.data is None:
                self.data = load_flickr8k()
            opened = Collection.flickr8k(self.data, name)
        else:
            opened = Collection.open(name)
        with self._lock:
            self._collections[name] = (opened, stamp)
            self._collections.move_to_end(name)
            while len(self._collections) > self.max_collections:
                self._collections.popitem(last=False)
        return opened

    def folders(self) -> list[Path]:
        """The folders an error message may name: the loaded collections', the cache, the project, home."""
        with self._lock:
            roots = [s.collection.root for s in self._searchers.values() if s.collection.root is not None]
        return [*roots, paths.cache_dir(), paths.project_root(), Path.home()]

    def search(self, query: str, k: int, run: str, collection: str) -> dict:
        return self._answer("search", query, k, run, collection)

    def similar(self, image_id: str, k: int, run: str, collection: str) -> dict:
        return self._answer("similar", image_id, k, run, collection)

    def describe(self, image_id: str, k: int, run: str, collection: str) -> dict:
        searcher = self.searcher(run, collection)
        start = time.perf_counter()
        own = not searcher.collection.is_flickr8k
        with self._lock:  # the first call embeds every caption it ranks: once, not once per waiting request
            captions = searcher.captions_for(image_id, k) if own else searcher.describe(image_id, k)
        return {
            "id": image_id,
            "run": run,
            "collection": collection,
            "from": "Flickr8k's training captions" if own else "the collection's captions",
            "ms": round(1000 * (time.perf_counter() - start), 2),
            "captions": [
                {"rank": n + 1, "caption": c, "score": round(score, 5)} for n, (c, score) in enumerate(captions)
            ],
        }

    def _answer(self, how: str, query: str, k: int, run: str, collection: str) -> dict:
        searcher = self.searcher(run, collection)
        available = len(searcher.image_ids) - (how == "similar")  # "more like this" leaves the image out
        asked, k = k, max(1, min(k, available))
        start = time.perf_counter()
        answer = searcher.ask(query, k) if how == "search" else None
        hits = answer.hits if answer is not None else searcher.similar(query, k)
        ms = 1000 * (time.perf_counter() - start)
        if answer is not None and len(hits) < k:
            asked, k = k, len(hits)
        return {
            **({k_: v for k_, v in answer.as_json().items() if k_ != "hits"} if answer is not None else {}),
            "query": query,
            "run": run,
            "collection": collection,
            "images": len(searcher.image_ids),
            "ms": round(ms, 2),
            **({"note": f"k {asked} asked, {k} shown: no more images to show"} if k < asked else {}),
            "hits": [
                {
                    "rank": h.rank,
                    "id": h.image_id,
                    "score": None
                    if answer is not None and answer.listed
                    else round(h.score, 5),  # None: listed, unscored
                    "about": searcher.about(h.image_id),
                    "image": f"/image/{collection}/{searcher.position(h.image_id)}",
                    "captions": searcher.captions(h.image_id),
                    "copies": h.copies,
                }
                for h in hits
            ],
        }


def cross_site(req) -> bool:
    """A request another site made: a browser says so in ``Sec-Fetch-Site`` (``cross-site`` or
    ``same-site``), or names another origin in ``Origin``. Requests without either (curl, scripts) and
    the page's own (``same-origin``, ``none``) pass."""
    site = req.headers.get("Sec-Fetch-Site")
    if site in ("cross-site", "same-site"):
        return True
    origin = req.headers.get("Origin")
    return bool(origin) and origin not in (f"http://{req.host}", f"https://{req.host}")


_ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:[^\s/'\"]+/)+([^\s/'\"]+)")


def without_paths(message: str, known: list[str | Path] = ()) -> str:
    """An error message for an HTTP client, the server's folders kept its own: each of the ``known``
    folders (photo folders, the cache, the project, the home folder; names with spaces included)
    dropped from the paths under it, or replaced by its own name, longest first; then any other
    absolute path replaced by its last part."""
    for folder in sorted({str(f).rstrip("/") for f in known if str(f).startswith("/")}, key=len, reverse=True):
        if len(folder) > 1:
            message = message.replace(folder + "/", "").replace(folder, Path(folder).name)
    return _ABSOLUTE_PATH.sub(lambda m: m.group(1), message)


def parse_k(value: str | None, default: int = 8) -> int:
    """The page's k: the default when absent, else :func:`search.check_k` up to :data:`MAX_K`."""
    return default if value is None or value == "" else check_k(value, MAX_K)


def host_name(header: str) -> str:
    """The host of a ``Host`` header without its port, lower-case, an IPv6 literal without its
    brackets (``[::1]:8217`` -> ``::1``)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else ""
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def trusted_hosts(host: str, extra: tuple[str, ...] = ()) -> frozenset[str]:
    """The names a request's ``Host`` may give: loopback, the bound address, ``extra``; for a
    wildcard address (``0.0.0.0``, ``::``) also this machine's host name and the addresses it
    resolves to, never any name at all (a site reached through DNS rebinding names itself)."""
    names = {host_name(h) for h in LOOPBACK_HOSTS} | {host_name(f"[{host}]" if ":" in host else host)}
    names |= {host_name(h) for h in extra}
    if host in ("0.0.0.0", "::"):
        for name in {socket.gethostname(), socket.getfqdn()}:
            names.add(name.lower())
            try:
                names |= {info[4][0].lower() for info in socket.getaddrinfo(name, None)}
            except OSError:
                pass
    return frozenset(n for n in names if n and n not in ("0.0.0.0", "::"))


def create_app(
    service: SearchService | None = None,
    run: str = "best",
    collection: str = "all",
    host: str = "127.0.0.1",
    extra_hosts: tuple[str, ...] = (),
) -> Flask:
    """The Flask app; ``run`` and ``collection`` are the page's defaults; requests must name one of
    :func:`trusted_hosts` (loopback, ``host``, ``extra_hosts``; for a wildcard ``host``, this
    machine's own names and addresses)."""
    service = service or SearchService()
    app = Flask(__name__)
    app.config["JSON_SORT_KEYS"] = False
    app.debug = False  # never the debugger, whatever FLASK_DEBUG says
    trusted = trusted_hosts(host, extra_hosts)

    @app.before_request
    def check_host():
        g.nonce = secrets.token_urlsafe(16)
        if host_name(request.headers.get("Host", "")) not in trusted:
            abort(400, "this server answers requests for its own names and addresses only (--trusted-host adds one)")
        if request.path.startswith(("/api/", "/image/")) and cross_site(request):
            abort(403, "requests from another site are refused: open the page itself")

    @app.after_request
    def security_headers(response: Response) -> Response:
        nonce = getattr(g, "nonce", "")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; img-src 'self'; connect-src 'self'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        )
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Cross-Origin-Resource-Policy"] = "same-origin"  # no <img> of another site can load ours
        return response

    @app.errorhandler(Exception)
    def errors(exc: Exception):
        """JSON for every error of /api/..., never Flask's HTML page (the page reads the message)."""
        code = exc.code if isinstance(exc, HTTPException) else 500
        message = (
            exc.description
            if isinstance(exc, HTTPException)
            else f"the server could not answer: {type(exc).__name__}: {exc}"
        )
        if request.path.startswith("/api/"):
            return jsonify(error=without_paths(str(message), service.folders()).replace("\n", " ")), code
        return exc if isinstance(exc, HTTPException) else Response("internal error", 500, mimetype="text/plain")

    @app.get("/")
    def page():
        runs = trained_runs()
        return render_template(
            "search.html",
            runs=runs or [run],
            collections=collections(),
            run=run,
            collection=collection,
            max_k=MAX_K,
            nonce=g.nonce,
        )

    def answer(how: str, key: str):
        try:
            query = request.args.get(key, "")
            k = parse_k(request.args.get("k"))
            result = getattr(service, how)(
                query, k, request.args.get("run") or run, request.args.get("collection") or collection
            )
        except (QueryError, RunNameError) as exc:
            return jsonify(error=without_paths(str(exc))), 400
        scores = [h["score"] for h in result.get("hits", result.get("captions", [])) if h["score"] is not None]
        if not all(math.isfinite(x) for x in scores):
            return jsonify(
                error=f"run {result['run']!r} gives scores that are not numbers (damaged weights?): train or export it again"
            ), 500
        return jsonify(result)

    @app.get("/api/search")
    def api_search():
        return answer("search", "q")

    @app.get("/api/similar")
    def api_similar():
        return answer("similar", "id")

    @app.get("/api/describe")
    def api_describe():
        return answer("describe", "id")

    @app.get("/image/<collection_name>/<int:position>")
    def image(collection_name: str, position: int):
        try:
            opened = service.collection(collection_name)
        except QueryError:
            abort(404)
        if not 0 <= position < len(opened.files):
            abort(404)
        size = {"thumb": THUMBNAIL_SIZE, "large": LARGE_SIZE}.get(request.args.get("size", "thumb"))
        found = read_image(Path(opened.files[position]), opened.root)
        if found is None or size is None:
            abort(404)
        try:
            body = view_bytes(found[0], size)  # a JPEG made from the pixels: never the file's own bytes
        except Exception:  # noqa: BLE001 - whatever the decoder raised, the answer is "no such image"
            abort(404)
        response = Response(body, mimetype="image/jpeg")
        response.headers["Cache-Control"] = "private, max-age=3600"
        return response

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A local web page to search images with a sentence.")
    parser.add_argument(
        "--run",
        default=None,
        help="the trained run the page starts with (default: distilled if notebook 19 made it, field_best if 10 did, else best from 07, "
        "else quickstart: 07's recipe, trained by the first flickr-retrieval-index)",
    )
    parser.add_argument(
        "--collection",
        default="all",
        help="a Flickr8k split, all (default), or a folder indexed with flickr-retrieval-index",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument(
        "--port", type=check_port, default=DEFAULT_PORT, help=f"port, 1 to 65535 (default {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--trusted-host",
        action="append",
        default=[],
        help="another name requests may give in their Host header (a reverse proxy's); repeatable",
    )
    args = parser.parse_args(argv)
    with cli_errors("flickr-retrieval-serve"):
        check_free(args.host, args.port)  # before the run loads: a port in use is said at once
        args.run = args.run or default_run()
        if args.host not in LOOPBACK_HOSTS:
            print(
                f"warning: --host {args.host} makes the page reachable from other machines: anyone who can reach this address can "
                "search the indexed collections and see their images (read-only). Use 127.0.0.1 unless that is what you want.",
                file=sys.stderr,
            )
        service = SearchService()
        start = time.perf_counter()
        searcher = service.searcher(args.run, args.collection)  # loaded once, before the first request
        print(
            f"loaded run {args.run!r} and {len(searcher.image_ids)} images of {args.collection!r} in {time.perf_counter() - start:.1f} s"
        )
        app = create_app(service, args.run, args.collection, host=args.host, extra_hosts=tuple(args.trusted_host))
        server = make_server(app, args.host, args.port)
        print(f"open http://{args.host}:{args.port}/  (Ctrl+C to stop)")
        try:
            server.run()  # returns on Ctrl+C
        finally:
            server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
