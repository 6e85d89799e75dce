import zipfile

import pytest
from conftest import TINY, make_tiny_flickr8k
from flickr_retrieval import download
from flickr_retrieval.data import DatasetError


def _archives(tmp_path):
    """Zip a tiny copy the way the public archives are laid out (text files at the zip's root,
    images in Flicker8k_Dataset/, macOS metadata beside them)."""
    src = make_tiny_flickr8k(tmp_path / "src", layout="original")
    images_zip, text_zip = tmp_path / "Flickr8k_Dataset.zip", tmp_path / "Flickr8k_text.zip"
    with zipfile.ZipFile(images_zip, "w") as zf:
        for f in sorted((src / "Flicker8k_Dataset").iterdir()):
            zf.write(f, f"Flicker8k_Dataset/{f.name}")
        zf.writestr("__MACOSX/Flicker8k_Dataset/._1000_red.jpg", b"junk")
    with zipfile.ZipFile(text_zip, "w") as zf:
        for f in sorted((src / "Flickr8k_text").iterdir()):
            zf.write(f, f.name)
    return {"images": images_zip.as_uri(), "text": text_zip.as_uri()}


def test_download_unpacks_and_validates(tmp_path):
    urls = _archives(tmp_path)
    ds = download.download(tmp_path / "data" / "flickr8k", urls=urls, expected=TINY)
    assert ds.layout == "original archives" and ds.summary()["images"] == 8
    assert not list((tmp_path / "data" / "flickr8k").glob("*.zip"))  # archives removed
    assert not (tmp_path / "data" / "flickr8k" / "Flicker8k_Dataset" / "._1000_red.jpg").exists()


def test_download_failure_is_clear_and_leaves_no_partial_file(tmp_path):
    dest = tmp_path / "d"
    with pytest.raises(DatasetError, match="needs internet"):
        download.download(dest, urls={"images": (tmp_path / "missing.zip").as_uri(), "text": "file:///nope.zip"})
    assert not list(dest.glob("*.part"))


def test_zip_slip_is_refused(tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../outside.txt", b"x")
    with pytest.raises(DatasetError, match="outside"):
        download.safe_extract(evil, tmp_path / "out")


def test_a_validation_failure_after_download_is_reported(tmp_path):
    urls = _archives(tmp_path)
    with pytest.raises(DatasetError, match="expected 8091"):
        download.download(tmp_path / "full", urls=urls)  # standard counts on a tiny archive


@pytest.mark.parametrize("bad", ["-1", "0", "nan", "inf", "3601", "soon"])
def test_timeouts_are_validated(bad):
    with pytest.raises(ValueError, match="--timeout"):
        download.check_timeout(bad)
    assert download.check_timeout("60") == 60.0


def test_staging_folders_left_by_a_killed_download_are_removed(tmp_path):
    import os
    import time

    dest = tmp_path / "flickr8k"
    old, fresh = dest / ".staging-old", dest / ".staging-running"
    for folder in (old, fresh):
        (folder / "new").mkdir(parents=True)
    stale = time.time() - 3 * 24 * 3600
    os.utime(old, (stale, stale))
    assert download.remove_leftovers(dest) == [old]
    assert not old.exists() and fresh.exists()  # a download still running keeps its folder


def test_a_trickling_server_hits_the_overall_deadline(tmp_path):
    urls = _archives(tmp_path)
    with pytest.raises(DatasetError, match="more than"):
        download.fetch(urls["images"], tmp_path / "x.zip", timeout=5, deadline=-1.0)
    assert not (tmp_path / "x.zip").exists() and not (tmp_path / "x.zip.part").exists()


def test_stale_cache_temporaries_are_removed_when_the_next_entry_is_written(tmp_path):
    import os
    import time

    import numpy as np
    from flickr_retrieval import cache

    stale, fresh = tmp_path / "a.123.tmp.npz", tmp_path / "b.456.tmp.npz"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    old = time.time() - 3 * 24 * 3600
    os.utime(stale, (old, old))
    cache.save_arrays(tmp_path / "entry.npz", {"v": np.zeros(2)})
    assert not stale.exists() and fresh.exists() and (tmp_path / "entry.npz").is_file()
