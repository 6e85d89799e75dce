import warnings

import numpy as np
import pytest
from conftest import TINY, make_tiny_flickr8k
from flickr_retrieval import data
from flickr_retrieval.errors import UnreadableImageError
from flickr_retrieval.images import ImagePreprocessing, load_image


def test_loads_the_prepared_layout(tiny_root):
    ds = data.load_flickr8k(tiny_root, expected=TINY)
    assert ds.layout == "prepared"
    assert ds.summary() == {"images": 8, "captions": 40, "train images": 4, "dev images": 2, "test images": 2}
    test = ds.split("test")
    assert test.image_ids == ["1006_orange.jpg", "1007_purple.jpg"]
    assert test.caption_ids[:2] == ["1006_orange.jpg#0", "1006_orange.jpg#1"]
    assert test.caption_image.tolist() == [0] * 5 + [1] * 5
    assert test.captions[5] == "A purple picture number 0 ."
    assert len(ds.split("all").caption_ids) == 40


def test_loads_the_original_archive_layout(tmp_path):
    root = make_tiny_flickr8k(tmp_path / "orig", layout="original")
    ds = data.load_flickr8k(root, expected=TINY)
    assert ds.layout == "original archives"
    assert ds.image_path("1000_red.jpg").is_file()


def test_standard_counts_are_enforced(tiny_root):
    with pytest.raises(data.DatasetError, match="captions for 8 images, expected 8091"):
        data.load_flickr8k(tiny_root)


def test_missing_folder_says_how_to_get_it(tmp_path):
    with pytest.raises(data.DatasetError, match="flickr-retrieval-download"):
        data.load_flickr8k(tmp_path / "nowhere", expected=TINY)


def test_malformed_caption_line_is_reported_with_file_and_line(tiny_root):
    token = tiny_root / "Flickr8k.token.txt"
    lines = token.read_text().splitlines()
    lines[6] = "1001_green.jpg#1 no tab here"
    token.write_text("\n".join(lines) + "\n")
    with pytest.raises(data.DatasetError, match=r"Flickr8k.token.txt:7: expected"):
        data.load_flickr8k(tiny_root, expected=TINY)


def test_image_with_four_captions_is_an_error(tiny_root):
    token = tiny_root / "Flickr8k.token.txt"
    lines = [line for line in token.read_text().splitlines() if not line.startswith("1002_blue.jpg#4")]
    token.write_text("\n".join(lines) + "\n")
    with pytest.raises(data.DatasetError, match=r"1002_blue.jpg has captions \[0, 1, 2, 3\]"):
        data.load_flickr8k(tiny_root, expected=None)


def test_known_erratum_is_skipped_loudly(tiny_root):
    token = tiny_root / "Flickr8k.token.txt"
    token.write_text(token.read_text() + "".join(f"2258277193_586949ec62.jpg.1#{n}\tA dog .\n" for n in range(5)))
    with pytest.warns(UserWarning, match="2258277193_586949ec62.jpg.1"):
        ds = data.load_flickr8k(tiny_root, expected=TINY)
    assert "2258277193_586949ec62.jpg.1" in ds.errata and len(ds.image_ids) == 8


def test_overlapping_splits_are_an_error(tiny_root):
    (tiny_root / "Flickr_8k.testImages.txt").write_text("1000_red.jpg\n1007_purple.jpg\n")
    with pytest.raises(data.DatasetError, match="splits train and test share 1 image"):
        data.load_flickr8k(tiny_root, expected=None)


def test_missing_image_file_is_named(tiny_root):
    (tiny_root / "Images" / "1003_yellow.jpg").unlink()
    with pytest.raises(data.DatasetError, match="missing, e.g. \\['1003_yellow.jpg'\\]"):
        data.load_flickr8k(tiny_root, expected=TINY)


def test_unreadable_image_is_reported_never_dropped(tiny_root):
    bad = tiny_root / "Images" / "1004_black.jpg"
    bad.write_bytes(b"not a jpeg")
    ds = data.load_flickr8k(tiny_root, expected=TINY)  # presence is checked on load, decoding on use
    with pytest.raises(data.DatasetError, match="1004_black.jpg"):
        ds.verify_images()
    with pytest.raises(UnreadableImageError, match="1004_black.jpg"):
        load_image(bad)


def test_preprocessing_resizes_and_normalises(tiny_root):
    image = load_image(tiny_root / "Images" / "1000_red.jpg")
    x = ImagePreprocessing().transform()(image)
    assert tuple(x.shape) == (3, 224, 224)
    # red channel is high, so after ImageNet normalisation it is well above the blue channel
    assert x[0].mean() > x[2].mean() + 1.0
    flipped = ImagePreprocessing(hflip=True).transform()(image)
    assert np.allclose(flipped.numpy(), x.flip(-1).numpy(), atol=1e-6)


def test_env_variable_points_at_the_data(tiny_root, monkeypatch):
    monkeypatch.setenv("FLICKR8K_DIR", str(tiny_root))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert data.load_flickr8k(expected=TINY).root == tiny_root.resolve()
