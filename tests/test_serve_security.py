"""The search page under hostile files and requests."""

import os
import shutil

import numpy as np
import pytest
import torch
from flickr_retrieval.search import Collection, serve
from flickr_retrieval.search.searcher import Searcher
from flickr_retrieval.search.serve import SearchService, create_app


@pytest.fixture
def hostile(tiny_run, tmp_path):
    """An indexed folder with a PNG named evil.html (a script inside), then files swapped after indexing."""
    from PIL import Image

    data, config, space, feats, trained = tiny_run
    folder = tmp_path / "hostile"
    folder.mkdir()
    images = sorted((data.image_dir).glob("*.jpg"))
    for path in images[:3]:
        shutil.copy(path, folder / path.name)
    png = folder / "evil.html"
    Image.open(images[3]).save(png, format="PNG")
    with open(png, "ab") as handle:
        handle.write(b"<script>alert(document.domain)</script>")
    Collection.index(folder, "hostile", list(config.backbones))
    service = SearchService(data)
    service.add("tiny", "all", Searcher(trained, "all", data=data))
    service.add("tiny", "hostile", Searcher(trained, "hostile", data=data))
    app = create_app(service, run="tiny", collection="all")
    return app.test_client(), service.collection("hostile"), folder


def test_every_response_says_nosniff_and_a_strict_policy(hostile):
    client, *_ = hostile
    for url in ("/", "/api/search?q=a+dog&k=2", "/image/all/0", "/image/all/999", "/api/search?q="):
        response = client.get(url)
        assert response.headers["X-Content-Type-Options"] == "nosniff", url
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "script-src 'nonce-" in policy and "unsafe-inline" not in policy, url
    page = client.get("/")
    nonce = page.headers["Content-Security-Policy"].split("'nonce-")[1].split("'")[0]
    assert f'<script nonce="{nonce}">' in page.get_data(as_text=True)


def test_an_html_named_png_is_served_as_a_thumbnail_of_its_pixels_never_as_html(hostile):
    client, collection, _ = hostile
    position = collection.ids.index("evil.html")
    for url in (f"/image/hostile/{position}", f"/image/hostile/{position}?size=large"):
        response = client.get(url)
        assert (
            response.status_code == 200 and response.mimetype == "image/jpeg" and response.data[:3] == b"\xff\xd8\xff"
        )
        assert b"<script" not in response.data
    assert client.get(f"/image/hostile/{position}?size=../../x").status_code == 404


def test_a_file_swapped_for_a_link_or_a_non_image_after_indexing_is_not_served(hostile, tmp_path):
    client, collection, folder = hostile
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0")
    first, second, third = (collection.ids.index(n) for n in collection.ids if n != "evil.html")
    target = folder / collection.ids[first]
    target.unlink()
    target.symlink_to(secret)  # points outside the folder
    assert client.get(f"/image/hostile/{first}").status_code == 404
    (folder / collection.ids[second]).write_text("<html><script>alert(1)</script></html>")  # not an image any more
    assert client.get(f"/image/hostile/{second}").status_code == 404
    fifo = folder / collection.ids[third]
    fifo.unlink()
    os.mkfifo(fifo)  # would block a reader forever
    assert client.get(f"/image/hostile/{third}").status_code == 404


def test_only_loopback_hosts_are_answered_unless_the_server_binds_another(tiny_run):
    data, config, space, feats, trained = tiny_run
    service = SearchService(data)
    service.add("tiny", "all", Searcher(trained, "all", data=data))
    client = create_app(service, run="tiny", collection="all").test_client()
    assert client.get("/", headers={"Host": "evil.example:8217"}).status_code == 400
    assert client.get("/", headers={"Host": "127.0.0.1:8217"}).status_code == 200
    other = create_app(service, run="tiny", collection="all", host="192.0.2.7").test_client()
    assert other.get("/", headers={"Host": "192.0.2.7:8217"}).status_code == 200
    assert other.get("/", headers={"Host": "evil.example"}).status_code == 400


def test_the_debugger_is_never_on(tiny_run, monkeypatch):
    monkeypatch.setenv("FLASK_DEBUG", "1")
    assert create_app(SearchService(tiny_run[0])).debug is False


@pytest.mark.parametrize(
    "port, ok",
    [("8217", True), ("1", True), ("65535", True), ("0", False), ("99999", False), ("-1", False), ("http", False)],
)
def test_ports_are_validated(port, ok):
    import argparse

    if ok:
        assert serve.check_port(port) == int(port)
    else:
        with pytest.raises(argparse.ArgumentTypeError):
            serve.check_port(port)


def test_the_api_answers_json_for_every_error(tiny_run, tmp_path, monkeypatch):
    data, config, space, feats, trained = tiny_run
    service = SearchService(data)
    service.add("tiny", "all", Searcher(trained, "all", data=data))
    client = create_app(service, run="tiny", collection="all").test_client()

    def broken(*args, **kwargs):
        raise RuntimeError("damaged run\nwith a newline")

    monkeypatch.setattr(service, "searcher", broken)
    answer = client.get("/api/search", query_string={"q": "a dog", "run": "tiny"})
    assert answer.status_code == 500 and answer.is_json and "damaged run with a newline" in answer.get_json()["error"]
    assert client.get("/api/nothing").is_json  # a 404 of the API is JSON too


def test_non_finite_scores_are_an_error_not_invalid_json(tiny_run):
    import dataclasses

    data, config, space, feats, trained = tiny_run
    nan = dataclasses.replace(trained)
    with torch.no_grad():
        for p in nan.model.parameters():
            p.fill_(float("nan"))
    service = SearchService(data)
    service.add("tiny", "all", Searcher(nan, "all", data=data))
    answer = (
        create_app(service, run="tiny", collection="all")
        .test_client()
        .get("/api/search", query_string={"q": "a dog", "run": "tiny"})
    )
    assert answer.status_code == 500 and "not numbers" in answer.get_json()["error"]


@pytest.mark.parametrize(
    "query",
    [
        "\u200b\u200b",
        "\x00",
        "a" * 60_000,
        "!!! ???",
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    ],
)
def test_queries_that_mean_nothing_are_refused(tiny_run, query):
    from flickr_retrieval.errors import QueryError

    data, config, space, feats, trained = tiny_run
    with pytest.raises(QueryError, match="no word|too long"):
        Searcher(trained, "all", data=data).search(query, k=2)


def test_images_are_typed_from_their_bytes():
    assert serve.image_type(b"\xff\xd8\xff\xe0") == "image/jpeg"
    assert serve.image_type(b"\x89PNG\r\n\x1a\n....") == "image/png"
    assert serve.image_type(b"GIF89a") == "image/gif"
    assert serve.image_type(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert serve.image_type(b"<html>") is None and serve.image_type(b"") is None
    assert np.all([serve.image_type(b) is None for b in (b"RIFF\x00\x00\x00\x00WAVE", b"%PDF-1.4")])


def test_links_and_special_files_are_listed_with_a_reason_never_read(tiny_run, tmp_path):
    data, config, space, feats, trained = tiny_run
    folder = tmp_path / "links"
    (folder / "sub").mkdir(parents=True)
    images = sorted(data.image_dir.glob("*.jpg"))
    shutil.copy(images[0], folder / "a.jpg")
    shutil.copy(images[1], folder / "sub" / "b.jpg")
    outside = tmp_path / "outside.jpg"
    shutil.copy(images[2], outside)
    (folder / "out.jpg").symlink_to(outside)
    (folder / "inside.jpg").symlink_to(folder / "a.jpg")
    (folder / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    (folder / "zero.jpg").symlink_to("/dev/zero")
    (folder / "loop").symlink_to(folder)
    (folder / "linked-dir").symlink_to(tmp_path)
    os.mkfifo(folder / "pipe.jpg")
    report = Collection.index(folder, "links", list(config.backbones))
    reasons = {u["file"]: u["reason"] for u in report.unreadable}
    assert report.images == 2 and set(Collection.open("links").ids) == {"a.jpg", "sub/b.jpg"}
    assert "outside" in reasons["out.jpg"] and "dangling" in reasons["gone.jpg"] and "outside" in reasons["zero.jpg"]
    assert (
        "where it lies" in reasons["inside.jpg"]
        and "not followed" in reasons["loop"]
        and "not followed" in reasons["linked-dir"]
    )
    assert "not a regular file" in reasons["pipe.jpg"]
    assert len(report.lines()) == 3 + len(reasons)  # summary, changes, "not indexed", one line each


def test_a_collection_can_be_forgotten_without_touching_its_files(tiny_run, tmp_path):
    from flickr_retrieval.search.searcher import collections

    data, config, *_ = tiny_run
    folder = tmp_path / "demo"
    folder.mkdir()
    shutil.copy(sorted(data.image_dir.glob("*.jpg"))[0], folder / "a.jpg")
    Collection.index(folder, "demo", list(config.backbones))
    assert "demo" in collections()
    assert Collection.forget("demo") and "demo" not in collections() and (folder / "a.jpg").is_file()
    assert not Collection.forget("demo")


def test_loaded_searchers_are_bounded_least_recently_used_first(tiny_run, monkeypatch):
    data = tiny_run[0]
    service = SearchService(data, max_loaded=2)
    made = []

    class Fake:
        def __init__(self, trained, collection, data=None, encoder=None, tokenizer_lock=None):
            made.append((trained.config.name, collection))
            self.encoder = encoder

    loaded_encoders = []
    monkeypatch.setattr(serve, "Searcher", Fake)
    monkeypatch.setattr(serve, "load_run", lambda run: type("T", (), {"config": tiny_run[1].replace(name=run)})())
    monkeypatch.setattr(
        serve, "load_text_encoder", lambda name: loaded_encoders.append(name) or type("E", (), {"name": name})()
    )
    for run in ("a", "b", "a", "c"):
        service.searcher(run, "all")
    assert list(service._searchers) == [("a", "all"), ("c", "all")]  # b was the least recently used
    assert made == [("a", "all"), ("b", "all"), ("c", "all")]
    assert loaded_encoders == ["minilm"]  # one sentence encoder for every searcher that reads its features
    with pytest.raises(ValueError):
        SearchService(data, max_loaded=0)


def test_concurrent_queries_are_answered_at_once_and_give_the_sequential_answers(tiny_run):
    """Searches are not serialised (case 6): 16 threads at once, each query answered as it is
    alone; the shared tokenizer never raises ("Already borrowed")."""
    import threading

    data, config, space, feats, trained = tiny_run
    searcher = Searcher(trained, "all", data=data)
    queries = [f"a {c} picture number {n}" for c in ("red", "green", "blue", "black") for n in range(4)]
    alone = {q: [h.image_id for h in searcher.search(q, k=3)] for q in queries}
    together, errors, start = {}, [], threading.Barrier(len(queries))

    def ask(q):
        start.wait()
        try:
            together[q] = [h.image_id for h in searcher.search(q, k=3)]
        except Exception as exc:  # noqa: BLE001 - collected, then asserted empty
            errors.append(repr(exc))

    threads = [threading.Thread(target=ask, args=(q,)) for q in queries]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and together == alone


def test_a_slow_load_blocks_only_its_own_run_never_the_searches_of_loaded_ones(tiny_run, monkeypatch):
    """The probe: a checkpoint whose checks took 40 minutes held the one loading lock, and every search
    of an already loaded run timed out behind it."""
    import threading
    import time

    data = tiny_run[0]
    service = SearchService(data)
    release = threading.Event()

    class Fake:
        def __init__(self, trained, collection, data=None, encoder=None, tokenizer_lock=None):
            self.encoder = encoder

    def slow_load(run):
        if run == "slow":
            release.wait(30)
        return type("T", (), {"config": tiny_run[1].replace(name=run)})()

    monkeypatch.setattr(serve, "Searcher", Fake)
    monkeypatch.setattr(serve, "load_run", slow_load)
    monkeypatch.setattr(serve, "load_text_encoder", lambda name: type("E", (), {"name": name})())
    ready = service.searcher("ready", "all")
    loading = threading.Thread(target=service.searcher, args=("slow", "all"))
    loading.start()
    time.sleep(0.2)  # the slow load is under way
    started = time.perf_counter()
    assert service.searcher("ready", "all") is ready and service.searcher("other", "all") is not None
    assert time.perf_counter() - started < 1.0
    release.set()
    loading.join(10)
    assert ("slow", "all") in service._searchers


def test_a_collection_indexed_again_is_read_again_by_the_page_with_its_run_kept(tiny_run, tmp_path, monkeypatch):
    """The probe: the open page never showed what watch mode indexed until the server restarted.
    The next request after an index is written again sees the new photos; the run is not loaded again."""
    data, config, space, feats, trained = tiny_run
    images = sorted(data.image_dir.glob("*.jpg"))
    folder = tmp_path / "growing"
    folder.mkdir()
    for path in images[:2]:
        shutil.copy(path, folder / path.name)
    Collection.index(folder, "growing", list(config.backbones))
    loads = []
    monkeypatch.setattr(serve, "load_run", lambda run: loads.append(run) or trained)
    service = SearchService(data)
    client = create_app(service, run="tiny", collection="growing").test_client()
    first = client.get("/api/search?q=a+red+picture&k=8&run=tiny&collection=growing").get_json()
    assert first["images"] == 2 and service.searcher("tiny", "growing") is service.searcher("tiny", "growing")
    shutil.copy(images[2], folder / images[2].name)
    Collection.index(folder, "growing", list(config.backbones))
    second = client.get("/api/search?q=a+red+picture&k=8&run=tiny&collection=growing").get_json()
    assert second["images"] == 3 and len(second["hits"]) == 3
    assert client.get(second["hits"][0]["image"]).status_code == 200
    assert loads == ["tiny"]  # the run was loaded once; only the collection was read again


def test_an_image_on_screen_is_served_however_many_runs_were_used_since(tiny_run, tmp_path, monkeypatch):
    """The probe: images of results on screen returned 404 once four other (run, collection) pairs had
    been used, because the image route looked for the collection among the loaded searchers."""
    data, config, space, feats, trained = tiny_run
    folder = tmp_path / "shown"
    folder.mkdir()
    shutil.copy(sorted(data.image_dir.glob("*.jpg"))[0], folder / "a.jpg")
    Collection.index(folder, "shown", list(config.backbones))
    monkeypatch.setattr(serve, "load_run", lambda run: trained)
    service = SearchService(data, max_loaded=1)
    client = create_app(service, run="tiny", collection="all").test_client()
    hit = client.get("/api/search?q=a+dog&k=1&run=tiny&collection=shown").get_json()["hits"][0]
    for other in ("dev", "test", "train", "all"):
        service.searcher("tiny", other)  # the searcher of "shown" is released
    assert ("tiny", "shown") not in service._searchers
    assert client.get(hit["image"]).status_code == 200
    assert client.get("/image/no-such-collection/0").status_code == 404
    assert client.get("/image/shown/1").status_code == 404
