"""The incremental photo index: content-keyed vectors, the size/time fast path, photos as they are
(EXIF orientation, draft decoding, unreadable files with reasons), thumbnails, interruption."""

import io
import json
import os
import time

import numpy as np
import pytest
from flickr_retrieval.backbones import load_image_backbone
from flickr_retrieval.errors import IndexWriteError, QueryError
from flickr_retrieval.search import Collection, collection, folder_scan, photo_index, watch
from PIL import Image

BACKBONE = "mobilenet_v2"


def _photo(path, colour, size=(1200, 900), orientation=None):
    rng = np.random.default_rng(abs(hash(colour)) % 2**32)
    pixels = (rng.random((size[1], size[0], 3)) * 80).astype(np.uint8)
    pixels[: size[1] // 3] += 150  # a bright top band: orientation matters
    image = Image.fromarray(pixels)
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="JPEG", quality=90, exif=exif)
    return path


def _watching(folder, settle_s: float):
    """Watch mode on ``folder`` as collection "lib" in a thread: (its reports, the stop event, the thread)."""
    import queue
    import threading

    reports, stop = queue.Queue(), threading.Event()
    watcher = threading.Thread(
        target=watch.watch_folder,
        args=(folder, "lib", [BACKBONE]),
        kwargs={"settle_s": settle_s, "stop": stop, "on_update": reports.put},
        daemon=True,
    )
    watcher.start()
    return reports, stop, watcher


@pytest.fixture
def library(tmp_path, isolated_cache):
    folder = tmp_path / "library"
    for n, colour in enumerate(["red", "green", "blue", "grey"]):
        _photo(folder / ("2024" if n % 2 else "2025") / f"{colour}.jpg", colour)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff" + b"\0" * 100)
    return folder


def test_a_second_run_reads_nothing_and_embeds_nothing(library):
    first = Collection.index(library, "lib", [BACKBONE])
    assert first.images == 4 and len(first.changes.added) == 4 and first.changes.embedded == 4
    assert [u["file"] for u in first.unreadable] == ["broken.jpg"]
    second = Collection.index(library, "lib", [BACKBONE])
    assert second.changes.unchanged == 4 and second.changes.embedded == 0 and not second.changes.added
    assert "0 added, 0 changed, 0 removed, 4 unchanged" in second.lines()[1]


def test_added_changed_removed_and_renamed_files(library):
    Collection.index(library, "lib", [BACKBONE])
    old = Collection.open("lib")
    before = dict(zip(old.ids, old.features(BACKBONE).copy()))
    _photo(library / "new.jpg", "pink")
    _photo(library / "2025" / "red.jpg", "changed red")
    (library / "2024" / "green.jpg").unlink()
    os.rename(library / "2024" / "grey.jpg", library / "grey-renamed.jpg")  # same bytes, new name: found by content
    report = Collection.index(library, "lib", [BACKBONE])
    assert report.changes.added == ["grey-renamed.jpg", "new.jpg"] and report.changes.changed == ["2025/red.jpg"]
    assert report.changes.removed == ["2024/green.jpg", "2024/grey.jpg"]
    assert report.changes.embedded == 2  # the new photo and the changed one; the renamed one was known
    mine = Collection.open("lib")
    assert mine.ids == ["2025/blue.jpg", "2025/red.jpg", "grey-renamed.jpg", "new.jpg"]
    np.testing.assert_array_equal(mine.features(BACKBONE)[0], before["2025/blue.jpg"])  # untouched
    np.testing.assert_array_equal(mine.features(BACKBONE)[2], before["2024/grey.jpg"])  # renamed: the same vector


def test_a_collection_scans_without_embedding_updates_and_reads_features_only_from_the_store(library):
    """Collection: open() and scan() read, update() indexes, features() reads the store and refuses
    what it does not hold, embed_missing() is the one step that embeds for an opened collection."""
    Collection.index(library, "lib", [BACKBONE])
    mine = Collection.open("lib")
    _photo(library / "new.jpg", "pink")
    (library / "2024" / "green.jpg").unlink()
    store = photo_index.FeatureStore(load_image_backbone(BACKBONE))
    held = len(store)
    scan = mine.scan()
    # a file that failed to decode is read again each time (it may have been repaired)
    assert [r for r, _ in scan.to_read] == ["broken.jpg", "new.jpg"] and scan.removed == ["2024/green.jpg"]
    assert len(scan.kept) == 3 and scan.unreadable == []
    assert len(photo_index.FeatureStore(load_image_backbone(BACKBONE))) == held  # scanning embedded nothing
    report = mine.update()
    assert report.changes.added == ["new.jpg"] and report.changes.removed == ["2024/green.jpg"]
    again = Collection.open("lib")
    assert again.features(BACKBONE).shape == (4, 1280) and again.missing(BACKBONE) == []
    other = "efficientnet_lite0"
    assert again.missing(other) == [0, 1, 2, 3]
    with pytest.raises(QueryError, match="no efficientnet_lite0 features"):
        again.features(other)
    assert again.embed_missing(other) == 4 and again.features(other).shape == (4, 1280)
    assert Collection.open("lib").embed_missing(other) == 0  # kept in the store for the next reader
    assert Collection.forget("lib") and not Collection.forget("lib") and (library / "new.jpg").is_file()


def test_vectors_are_those_of_the_decoded_photo_in_one_process_or_two(library, tmp_path):
    files = sorted(p for p in library.rglob("*.jpg") if p.name != "broken.jpg")
    bb = load_image_backbone(BACKBONE)
    vectors = []
    for workers in (0, 1):
        store = photo_index.FeatureStore(bb, tmp_path / f"store{workers}")
        decoded = photo_index.embed_files(files, [bb], [store], workers=workers)
        vectors.append(store.get([d.sha256 for d in decoded]))
    np.testing.assert_allclose(vectors[0], vectors[1], rtol=1e-5, atol=1e-6)
    # and what a plain path gives for the same decoded image
    import torch
    from flickr_retrieval.backbones import inference_module

    image = photo_index.decode_photo(files[0].read_bytes())
    with torch.no_grad():
        direct = inference_module(bb)(
            bb.spec.preprocessing.transform()(image)[None].contiguous(memory_format=torch.channels_last)
        ).numpy()[0]
    np.testing.assert_allclose(vectors[0][0], direct, rtol=1e-4, atol=1e-5)


def test_photos_are_turned_upright_and_decoded_small(tmp_path):
    upright = photo_index.decode_photo(_photo(tmp_path / "a.jpg", "x", (1600, 1200)).read_bytes())
    assert (
        min(upright.size) >= photo_index.DECODE_SIZE and max(upright.size) <= 800
    )  # draft: 1/2 or 1/4, not the full 1600
    rotated = photo_index.decode_photo(_photo(tmp_path / "b.jpg", "x", (1600, 1200), orientation=6).read_bytes())
    assert rotated.size[0] < rotated.size[1]  # orientation 6: the camera was turned; the photo is upright (portrait)


def test_thumbnails_are_small_and_named_by_content(library):
    Collection.index(library, "lib", [BACKBONE])
    mine = Collection.open("lib")
    for image_id in mine.ids:
        thumb = photo_index.thumbnail_path(mine.sha256[image_id])
        with Image.open(thumb) as im:
            assert max(im.size) <= photo_index.THUMBNAIL_SIZE
    with pytest.raises(ValueError, match="not a SHA-256"):
        photo_index.thumbnail_path("../../etc/passwd")


def test_an_interrupted_index_keeps_its_work_and_the_previous_index(library, monkeypatch):
    Collection.index(library, "lib", [BACKBONE])
    manifest = (collection.collections_dir() / "lib.json").read_text()
    for n in range(6):
        _photo(library / "more" / f"{n}.jpg", f"more {n}")
    monkeypatch.setattr(photo_index, "SHARD_SIZE", 2)
    real = photo_index.FeatureStore.add
    calls = []

    def add_then_stop(self, sha, vector):
        real(self, sha, vector)
        calls.append(sha)
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(photo_index.FeatureStore, "add", add_then_stop)
    with pytest.raises(KeyboardInterrupt):
        Collection.index(library, "lib", [BACKBONE])
    assert (collection.collections_dir() / "lib.json").read_text() == manifest  # the previous index, as it was
    monkeypatch.setattr(photo_index.FeatureStore, "add", real)
    resumed = Collection.index(library, "lib", [BACKBONE])
    assert (
        len(resumed.changes.added) == 6 and resumed.changes.embedded == 3
    )  # the three finished before the stop were kept


def test_a_full_disk_is_one_clear_error_and_the_previous_index_stays(library, monkeypatch):
    Collection.index(library, "lib", [BACKBONE])
    manifest = (collection.collections_dir() / "lib.json").read_text()
    _photo(library / "new.jpg", "pink")

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(photo_index.FeatureStore, "_write", full)
    with pytest.raises(IndexWriteError, match="No space left on device.*previous index is unchanged"):
        Collection.index(library, "lib", [BACKBONE])
    assert (collection.collections_dir() / "lib.json").read_text() == manifest


def test_one_writer_per_collection_and_a_vanished_folder_keeps_the_previous_index(library, monkeypatch):
    """A second indexer of a collection being indexed is refused (it lost vectors when two wrote at
    once); a folder that disappears during the run does not replace the good index by an empty one."""
    import shutil

    from filelock import FileLock

    Collection.index(library, "lib", [BACKBONE])
    manifest = (collection.collections_dir() / "lib.json").read_text()
    with FileLock(str(collection.collections_dir() / ".lib.lock")):  # another process indexing "lib"
        with pytest.raises(QueryError, match="being indexed by another process"):
            Collection.index(library, "lib", [BACKBONE])
    _photo(library / "new.jpg", "pink")
    real = photo_index.embed_files

    def then_vanish(*args, **kwargs):
        out = real(*args, **kwargs)
        shutil.rmtree(library)
        return out

    monkeypatch.setattr(photo_index, "embed_files", then_vanish)
    with pytest.raises(FileNotFoundError, match="disappeared while it was indexed"):
        Collection.index(library, "lib", [BACKBONE])
    assert (collection.collections_dir() / "lib.json").read_text() == manifest


def test_a_damaged_shard_is_never_trusted(library):
    Collection.index(library, "lib", [BACKBONE])
    store = photo_index.FeatureStore(load_image_backbone(BACKBONE))
    for shard in store.folder.glob("shard-*.npz"):
        shard.write_bytes(b"PK\x03\x04 damaged")
    assert len(photo_index.FeatureStore(load_image_backbone(BACKBONE))) == 0
    report = Collection.index(library, "lib", [BACKBONE])
    assert (
        report.changes.embedded == 4 and report.changes.unchanged == 0
    )  # embedded again, not read from the damaged store


def test_a_file_that_changes_while_being_read_is_listed(tmp_path, monkeypatch):
    path = _photo(tmp_path / "a.jpg", "x")
    real_fstat = os.fstat
    calls = []

    class Grown:  # the second look at the file (after reading) finds it longer: a writer is still at work
        def __init__(self, st, extra):
            self.st, self.extra = st, extra

        def __getattr__(self, name):
            return getattr(self.st, name) + (self.extra if name == "st_size" else 0)

    def fstat(fd):
        calls.append(fd)
        return Grown(real_fstat(fd), 0 if len(calls) == 1 else 100)

    monkeypatch.setattr(photo_index.os, "fstat", fstat)
    with pytest.raises(OSError, match="changed while it was being read"):
        photo_index.read_file(path)


def test_a_heic_file_without_its_plugin_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(photo_index, "enable_heif", lambda: False)
    path = tmp_path / "phone.heic"
    path.write_bytes(b"\0\0\0\x18ftypheic" + b"\0" * 200)
    bb = load_image_backbone(BACKBONE)
    (d,) = photo_index.embed_files([path], [bb], [photo_index.FeatureStore(bb, tmp_path / "s")], workers=0)
    assert d.error.startswith("not a readable image") and not d.sha256 == ""
    heic = b"\0\0\0\x18ftypheic" + b"\0" * 8
    assert "pip install pillow-heif" in photo_index.unreadable_reason(
        OSError("cannot identify image file"), heic, heif_available=False
    )
    assert "pillow-heif" not in photo_index.unreadable_reason(OSError("broken"), heic, heif_available=True)
    assert "pillow-heif" not in photo_index.unreadable_reason(
        OSError("cannot identify image file"), b"\xff\xd8\xff" + b"\0" * 20, False
    )


def test_the_old_manifest_format_asks_for_a_new_index(library):
    Collection.index(library, "lib", [BACKBONE])
    path = collection.collections_dir() / "lib.json"
    manifest = json.loads(path.read_text())
    manifest["format"] = 1
    path.write_text(json.dumps(manifest))
    with pytest.raises(collection.QueryError, match="index the folder again"):
        Collection.open("lib")


def test_a_heic_phone_photo_is_indexed(tmp_path):
    pillow_heif = pytest.importorskip(
        "pillow_heif", reason="pillow-heif is in requirements.txt; without it HEIC files are listed as unreadable"
    )
    pillow_heif.register_heif_opener()
    path = tmp_path / "IMG_0001.HEIC"
    Image.new("RGB", (800, 600), "teal").save(path, format="HEIF")
    bb = load_image_backbone(BACKBONE)
    (d,) = photo_index.embed_files([path], [bb], [photo_index.FeatureStore(bb, tmp_path / "s")], workers=0)
    assert not d.error and len(d.sha256) == 64


def test_the_bench_library_is_phone_sized_with_rotations(tiny_root, tmp_path):
    from conftest import TINY
    from flickr_retrieval.benches import photos as photo_bench
    from flickr_retrieval.data import load_flickr8k

    data = load_flickr8k(tiny_root, expected=TINY)
    files = photo_bench.make_library(data, tmp_path / "lib", 2, np.random.default_rng(0))
    with Image.open(files[0]) as im:
        assert im.getexif().get(0x0112) == 6 and im.size == photo_bench.PHONE_SIZE[::-1]  # stored sideways
    upright = photo_index.decode_photo(files[0].read_bytes())
    assert upright.size[0] > upright.size[1]  # turned back to landscape
    from flickr_retrieval.search.photo_meta import read_meta

    dated = read_meta(files[1])  # a capture time, a phone, and a city's position
    assert dated["taken"] == "2024-02-02T12:01:00" and dated["camera"] == "Google Pixel 7"
    assert dated["gps"] == [round(v, 6) for v in photo_bench.CITIES["New York City"]]


def test_a_stale_half_written_shard_is_removed_and_a_fresh_one_kept(library):
    """A shard's temporary file left by a killed process goes at the next load; one being written
    now by another process (younger than STALE_TEMPORARY_S) stays."""
    backbone = load_image_backbone(BACKBONE)
    store = photo_index.FeatureStore(backbone)
    store.folder.mkdir(parents=True, exist_ok=True)
    stale, fresh = store.folder / ".shard-1-a.npz.x1.tmp", store.folder / ".shard-2-b.npz.x2.tmp"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    old = time.time() - photo_index.STALE_TEMPORARY_S - 5
    os.utime(stale, (old, old))
    photo_index.FeatureStore(backbone)
    assert not stale.exists() and fresh.exists()


def nested_chain(root, folder: str, depth: int, leaf: str) -> None:
    """``depth`` folders named ``folder`` one inside the other under ``root``, a file ``leaf`` at the
    bottom, each made relative to its parent (no single path call goes past PATH_MAX, and nothing
    recurses: pathlib's mkdir(parents=True) does)."""
    here = os.open(root, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir(folder, dir_fd=here)
            nxt = os.open(folder, os.O_RDONLY, dir_fd=here)
            os.close(here)
            here = nxt
        with open(os.open(leaf, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=here), "wb") as handle:
            handle.write(b"x")
    finally:
        os.close(here)


def test_a_path_longer_than_the_system_allows_is_listed_not_fatal(tmp_path):
    """An entry the system refuses (ENAMETOOLONG past PATH_MAX) is listed with its reason; the rest
    of the folder is walked."""
    root = tmp_path / "deep"
    root.mkdir()
    (root / "ok.jpg").write_bytes(b"x")
    nested_chain(root, "d" * 200, 40, "far.jpg")
    entries = folder_scan.walk_folder(root)
    names = {name: reason for name, _, reason in entries}
    assert names["ok.jpg"] is None
    refused = [reason for reason in names.values() if reason and "cannot be read" in reason]
    assert refused, names.keys()


def test_a_folder_tree_deeper_than_pythons_recursion_limit_is_walked(tmp_path):
    """1100 nested folders (os.walk recursed once per level in Python 3.11: RecursionError)."""
    root = tmp_path / "deep"
    root.mkdir()
    nested_chain(root, "a", 1100, "bottom.jpg")
    (root / "top.jpg").write_bytes(b"x")
    try:
        names = {name: reason for name, _, reason in folder_scan.walk_folder(root)}
        assert names["top.jpg"] is None and names["/".join(["a"] * 1100) + "/bottom.jpg"] is None
    finally:  # removed here, bottom up: shutil.rmtree (pytest's clean-up of old temporary folders) recurses too
        deepest = root.joinpath(*["a"] * 1100)
        (deepest / "bottom.jpg").unlink()
        for level in range(1100, 0, -1):
            os.rmdir(root.joinpath(*["a"] * level))


def test_watch_mode_follows_added_moved_and_deleted_photos(library):
    """flickr-retrieval-index --watch: each settled burst of changes is indexed again; a move costs
    no embedding; stopping leaves the index of the last update."""

    reports, stop, watcher = _watching(library, 0.3)

    def next_with(changed):  # a burst may be seen in two updates on a busy machine: wait for the one that holds it
        deadline = time.monotonic() + 120
        while True:
            report = reports.get(timeout=max(deadline - time.monotonic(), 0.1))
            if changed(report.changes):
                return report

    try:
        first = next_with(lambda c: len(c.added) == 4)
        assert first.images == 4
        _photo(library / "new" / "white.jpg", "white")
        added = next_with(lambda c: "new/white.jpg" in c.added)
        assert added.changes.embedded == 1
        (library / "new" / "white.jpg").rename(library / "moved.jpg")
        moved = next_with(lambda c: "moved.jpg" in c.added)
        assert moved.changes.removed == ["new/white.jpg"] and moved.changes.embedded == 0  # found by its bytes
        (library / "moved.jpg").unlink()
        deleted = next_with(lambda c: c.removed == ["moved.jpg"])
        assert deleted.images == 4
    finally:
        stop.set()
        watcher.join(timeout=30)
    assert not watcher.is_alive() and Collection.open("lib").ids == sorted(first_ids(library))


def first_ids(folder):
    return [p.relative_to(folder).as_posix() for p in folder.rglob("*.jpg") if p.name != "broken.jpg"]


def test_a_camera_mpo_is_indexed_as_the_jpeg_it_is(tmp_path):
    """Many phones and cameras write MPO (a JPEG with more frames after it): its first frame is the
    photo, decoded like any JPEG."""
    first = Image.new("RGB", (64, 48), (200, 30, 30))
    path = tmp_path / "camera.jpg"
    first.save(path, "MPO", save_all=True, append_images=[Image.new("RGB", (64, 48), (0, 0, 200))])
    with Image.open(path) as im:
        assert im.format == "MPO"
    view = photo_index.decode_photo(path.read_bytes())
    assert view.size == (64, 48) and view.getpixel((10, 10))[0] > 150


def test_a_heic_photos_date_place_and_camera_are_read(tmp_path):
    """In a fresh interpreter (nothing registered Pillow's HEIF opener before), the metadata reader
    reads a HEIC photo's EXIF: its date, camera and place, not the file's time."""
    import json
    import subprocess
    import sys

    from flickr_retrieval.search.photo_meta import DATETIME_ORIGINAL, EXIF_IFD, GPS_IFD, MAKE, MODEL

    pytest.importorskip("pillow_heif")
    photo_index.enable_heif()  # to write the test file
    exif = Image.Exif()
    exif[MAKE], exif[MODEL] = "Apple", "iPhone 14"
    exif.get_ifd(EXIF_IFD)[DATETIME_ORIGINAL] = "2022:07:14 10:30:00"
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 7.0)})
    path = tmp_path / "phone.heic"
    Image.new("RGB", (64, 48), (10, 120, 10)).save(path, format="HEIF", exif=exif.tobytes())
    code = "import json, sys; from flickr_retrieval.search.photo_meta import read_meta; print(json.dumps(read_meta(sys.argv[1])))"
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True).stdout
    meta = json.loads(out)
    assert meta["taken"] == "2022-07-14T10:30:00" and meta["taken_from"] == "exif"
    assert meta["camera"] == "Apple iPhone 14" and meta["gps"] == pytest.approx([48.856667, 2.351944], abs=1e-5)


def test_a_file_that_does_not_start_like_a_shown_image_is_refused_before_any_parser(tmp_path, monkeypatch):
    """A TIFF (or anything else) named .jpg is refused from its first bytes: Pillow never parses it
    (a 100 MB TIFF of 12.5 million strips cost 4.8 GB to refuse when it did)."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "TIFF")

    def no_parser(*args, **kwargs):
        raise AssertionError("a parser ran on a file the sniffing refuses")

    monkeypatch.setattr(photo_index.Image, "open", no_parser)
    for data in (buffer.getvalue(), b"%PDF-1.4 ...", b"<html>", b""):
        with pytest.raises(photo_index.PhotoRefused, match="first bytes"):
            photo_index.decode_photo(data)
    assert photo_index.image_type(b"\xff\xd8\xff\xe1") == "image/jpeg"


def test_a_cache_inside_the_watched_folder_is_neither_indexed_nor_a_change(library, monkeypatch):
    """The probe's --watch with the cache in the photo folder re-indexed 29 times in 40 s with no
    change, adding its own thumbnails as photos."""

    monkeypatch.setenv("RCP217_CACHE", str(library / ".cache"))
    first = Collection.index(library, "lib", [BACKBONE])
    assert first.images == 4
    assert {"file": ".cache", "reason": "this tool's own cache: not indexed"} in first.unreadable
    assert (library / ".cache" / "collections").is_dir()
    again = Collection.index(library, "lib", [BACKBONE])
    assert again.images == 4 and not again.changes.added  # nothing of the cache became a photo
    reports, stop, watcher = _watching(library, 0.2)
    try:
        reports.get(timeout=120)  # the first index (it writes into the cache)
        time.sleep(3.0)
        assert reports.empty()  # its own writes settled without an update
        _photo(library / "new.jpg", "white")
        assert "new.jpg" in reports.get(timeout=120).changes.added  # a real change still is one
    finally:
        stop.set()
        watcher.join(timeout=60)


def test_what_a_killed_indexer_left_half_written_is_removed_at_the_next_start(library, isolated_cache):
    Collection.index(library, "lib", [BACKBONE])
    thumbs = isolated_cache / "thumbnails" / "ab"
    thumbs.mkdir(parents=True, exist_ok=True)
    old = [isolated_cache / "collections" / ".lib.json.x1.tmp", thumbs / ".ab12.jpg.x2.tmp"]
    fresh = isolated_cache / "collections" / ".lib.json.x3.tmp"  # a writer at work now: kept
    for path in (*old, fresh):
        path.write_bytes(b"half")
    for path in old:
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    Collection.index(library, "lib", [BACKBONE])
    assert not any(p.exists() for p in old) and fresh.exists()


def test_the_metadata_reader_sniffs_before_any_parser_runs(tmp_path, monkeypatch):
    """The metadata reader read EXIF with Pillow from any file the index kept a name of: now a file
    that does not start like a shown image is dated by its file time, and no parser opens it."""
    from flickr_retrieval.search import photo_meta

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "TIFF")
    path = tmp_path / "not-a.jpg"
    path.write_bytes(buffer.getvalue())

    def no_parser(*args, **kwargs):
        raise AssertionError("a parser ran on a file the sniffing refuses")

    monkeypatch.setattr(photo_meta.Image, "open", no_parser)
    meta = photo_meta.read_meta(path)
    assert meta["taken_from"] == "file" and meta["camera"] is None and meta["gps"] is None


def test_a_reading_worker_is_bounded_in_memory_and_the_index_goes_on(tmp_path):
    """Decoding runs in a worker process, where one file may take at most ``worker_memory`` (64 MB
    here) more than the worker holds: a 64-megapixel PNG (192 MB of pixels, 0.2 MB on disk) is refused
    as needing more memory, and the photo beside it is indexed. Run in a fresh process, as the index
    command is (a process that has freed much memory can decode in what it still holds). (Found on
    the way: each read asked for a buffer of the 200 MB file limit, whatever the file's size.)"""
    import json
    import subprocess
    import sys

    big = tmp_path / "big.png"
    small = tmp_path / "small.jpg"
    script = f"""
import json
from PIL import Image
from flickr_retrieval.backbones import load_image_backbone
from flickr_retrieval.search import photo_index
from pathlib import Path
photo_index.WORKER_STALL_S = 60  # a worker that hangs fails the test in a minute
Image.new("RGB", (64, 48), "red").save({str(small)!r})
bb = load_image_backbone({BACKBONE!r})
store = photo_index.FeatureStore(bb, Path({str(tmp_path / "store")!r}))
files = [{str(big)!r}, {str(small)!r}]
bounded = photo_index.embed_files([Path(f) for f in files], [bb], [store], workers=1, worker_memory=64 * 2**20)
unbounded = photo_index.embed_files([Path(files[0])], [bb], [store], workers=1, worker_memory=None)
print(json.dumps([[d.error, d.sha256 in store] for d in bounded + unbounded]))
"""
    subprocess.run(
        [sys.executable, "-c", f"from PIL import Image; Image.new('RGB', (8000, 8000), 'white').save({str(big)!r})"],
        check=True,
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (big_bounded, small_bounded, big_unbounded) = json.loads(done.stdout.strip().splitlines()[-1])
    assert "more memory" in big_bounded[0], big_bounded
    assert small_bounded == ["", True]
    assert big_unbounded == ["", True]  # the same file, without the bound


def test_the_library_bench_plants_what_its_ground_truth_says(tiny_root, tmp_path):
    """flickr-retrieval-bench-library's photos carry the date, camera and position its ground truth
    lists (HEIC included), and a PNG without EXIF is dated by its file time."""
    from flickr_retrieval.benches import library
    from flickr_retrieval.data import load_flickr8k
    from flickr_retrieval.search import photo_meta

    data = load_flickr8k(tiny_root, expected=None)
    n = len(data.split("test").image_ids)
    truth = library.make_library(data, tmp_path, n)
    assert len(truth) == n and all((tmp_path / rel).is_file() for rel in truth)
    for rel, planted in truth.items():
        meta = photo_meta.read_meta(tmp_path / rel)
        assert meta["taken_from"] == ("exif" if planted["exif"] else "file"), rel
        if planted["exif"]:
            assert meta["taken"] == planted["taken"] and meta["camera"] and planted["camera"] in meta["camera"].lower()
            assert (meta["gps"] is not None) == (planted["place"] is not None)
    assert library.plant(5)["format"] == "HEIF" and library.plant(29)["format"] == "PNG"
    assert library.plant(29)["year"] is None and library.plant(9)["place"] is None
