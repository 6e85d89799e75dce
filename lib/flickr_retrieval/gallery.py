"""What search looks through: a Flickr8k split, or a folder of your own photos indexed under a name.

    flickr-retrieval-index ~/Pictures/holidays --name holidays      # once: embeds every readable image
    flickr-retrieval-search "a dog on the beach" --collection holidays

Indexing runs every readable image of the folder (recursively) through the image backbone(s) of a
trained run and caches the features like the Flickr8k ones (key: backbone, weights, preprocessing,
inference path, the file names and the bytes of every file). Files that cannot be decoded as images
are listed by name with the reason, in the command's output and in the index; none is dropped
silently. The index itself is a small JSON manifest under the feature cache
(``<cache>/collections/<name>.json``): data, never code; a collection's name is a name, never a path.
The trained run's image branch is applied at search time, so any run with the same backbones can
search the collection.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import stat
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import cache, paths
from .backbones import BACKBONES, load_image_backbone
from .data import SPLITS, Flickr8k
from .errors import QueryError, UnreadableImageError, cli_errors
from .features import extract_image_features, image_cache_parts
from .images import load_image

FLICKR8K_COLLECTIONS = (*SPLITS, "all")
INDEX_FORMAT = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=-]{0,63}$")


@dataclass
class Gallery:
    """Images to search, with what search shows about them.

    Attributes
    ----------
    name : str
        a Flickr8k split (``train``, ``dev``, ``test``, ``all``) or an indexed collection's name.
    ids : list[str]
        image ids (Flickr8k) or paths relative to the indexed folder, in a fixed order.
    files : list[Path]
        the image file of each id (the only files the search page ever serves).
    captions : dict[str, list[str]]
        reference captions where they exist (Flickr8k); empty for your own photos.
    unreadable : list[dict]
        files of an indexed folder that are not readable images (``file``, ``reason``).
    """

    name: str
    ids: list[str]
    files: list[Path]
    captions: dict[str, list[str]] = field(default_factory=dict)
    unreadable: list[dict] = field(default_factory=list)
    _features: Callable[[str], np.ndarray] | None = field(default=None, repr=False)
    root: Path | None = None  # the folder every file must stay inside (checked again when the page serves one)

    @property
    def is_flickr8k(self) -> bool:
        return self.name in FLICKR8K_COLLECTIONS

    def __len__(self) -> int:
        return len(self.ids)

    def raw_features(self, backbone: str) -> np.ndarray:
        """(len(ids), dim) backbone features of an indexed folder (Flickr8k galleries go through
        :class:`~flickr_retrieval.inputs.FeatureSpace` instead)."""
        if self._features is None:
            raise ValueError(f"{self.name!r} is a Flickr8k split: use its FeatureSpace")
        return self._features(backbone)


def flickr8k_gallery(data: Flickr8k, split: str) -> Gallery:
    if split not in FLICKR8K_COLLECTIONS:
        raise QueryError(f"unknown Flickr8k split {split!r}; choose one of {list(FLICKR8K_COLLECTIONS)}")
    ids = data.split(split).image_ids
    return Gallery(split, ids, [data.image_path(i) for i in ids], {i: data.captions[i] for i in ids}, root=data.image_dir)


def check_collection_name(name: str) -> str:
    """``name`` when it is a plain name (letters, digits, ``._+=-``) that is not a Flickr8k split."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise QueryError(f"invalid collection name {name!r}: use letters, digits and . _ + = - only (a name, not a path), at most 64 characters")
    if name in FLICKR8K_COLLECTIONS:
        raise QueryError(f"{name!r} is a Flickr8k split; give your collection another name")
    return name


def collections_dir() -> Path:
    """Where collection manifests live (beside the feature cache). Only a path."""
    return paths.cache_dir() / "collections"


def indexed_collections() -> list[str]:
    folder = collections_dir()
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _features(backbone: str, folder: Path, names: list[str], show_progress: bool = False) -> tuple[np.ndarray, Path, bool]:
    """Cached features of ``folder/<name>`` for every name, through ``backbone`` (pretrained)."""
    if backbone not in BACKBONES:
        raise QueryError(f"unknown image backbone {backbone!r}; choose one of {list(BACKBONES)}")
    loaded = load_image_backbone(backbone)  # fails here, before any work, when weights are missing
    files = [folder / n for n in names]
    content = hashlib.sha256()
    for name, path in zip(names, files):
        content.update(name.encode("utf-8") + b"\0" + bytes.fromhex(_file_sha256(path)))
    parts = image_cache_parts(backbone, loaded.weights, {**loaded.spec.preprocessing.__dict__}, names, content.hexdigest())

    def compute():
        return {"vectors": extract_image_features(loaded, files, show_progress=show_progress)}

    arrays, path, hit = cache.cached(f"photos-{backbone}", parts, compute, expect={"vectors": (len(names), loaded.spec.dim)})
    return arrays["vectors"], path, hit


@dataclass
class IndexReport:
    """What :func:`index_folder` did."""

    name: str
    folder: Path
    images: int
    unreadable: list[dict]
    backbones: list[str]
    seconds: float
    manifest: Path

    def lines(self) -> list[str]:
        out = [f"indexed {self.images} image(s) of {self.folder} as {self.name!r} with {', '.join(self.backbones)} in {self.seconds:.1f} s -> {self.manifest}"]
        if self.unreadable:
            out.append(f"{len(self.unreadable)} file(s) not indexed (not readable images):")
            out += [f"  {u['file']}: {u['reason']}" for u in self.unreadable]
        return out


def walk_folder(root: Path) -> list[tuple[str, Path, str | None]]:
    """Every entry under ``root`` (recursively, links not followed), sorted: ``(relative name, path,
    None)`` for a regular file to read, or a reason why it is not read. Nothing is skipped in silence:
    links (to a file or a folder, inside or outside, dangling, looping) and special files (FIFOs,
    devices, sockets) are listed with their reason, and never opened."""
    out = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        base = Path(folder)
        for d in list(dirs):
            if (base / d).is_symlink():
                out.append(((base / d).relative_to(root).as_posix(), base / d, "a link to a folder: not followed (index its target folder itself)"))
        dirs[:] = sorted(d for d in dirs if not (base / d).is_symlink())
        for f in files:
            path = base / f
            relative = path.relative_to(root).as_posix()
            try:
                info = os.lstat(path)
            except OSError as exc:
                out.append((relative, path, f"cannot be read ({exc.strerror})"))
                continue
            if stat.S_ISLNK(info.st_mode):
                target = os.path.realpath(path)
                if not os.path.exists(target):
                    reason = "a dangling link (its target does not exist)"
                elif os.path.commonpath([target, str(root)]) != str(root):
                    reason = "a link to a file outside the folder: not indexed"
                else:
                    reason = "a link to a file of the folder: indexed where it lies"
                out.append((relative, path, reason))
            elif not stat.S_ISREG(info.st_mode):
                out.append((relative, path, "not a regular file (a FIFO, device or socket): never opened"))
            else:
                out.append((relative, path, None))
    return sorted(out)


def index_folder(folder: str | Path, name: str, backbones: list[str], *, show_progress: bool = False) -> IndexReport:
    """Embed every readable image under ``folder`` (recursively) with ``backbones``; record the
    collection as ``name``. Unreadable files are listed in the report and the manifest."""
    start = time.perf_counter()
    name = check_collection_name(name)
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"no folder {folder}")
    if not backbones:
        raise QueryError("give at least one image backbone")
    readable, unreadable = [], []
    for relative, path, reason in walk_folder(root):
        if reason is not None:
            unreadable.append({"file": relative, "reason": reason})
            continue
        try:
            load_image(path)
            readable.append(relative)
        except UnreadableImageError as exc:
            unreadable.append({"file": relative, "reason": str(exc).split(": ", 1)[-1]})
    if not readable:
        raise QueryError(f"no readable image under {root} ({len(unreadable)} other file(s))")
    for backbone in backbones:
        _features(backbone, root, readable, show_progress)
    manifest = {"format": INDEX_FORMAT, "name": name, "folder": str(root), "backbones": list(backbones), "files": readable, "unreadable": unreadable}
    out = collections_dir() / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    tmp.replace(out)
    return IndexReport(name, root, len(readable), unreadable, list(backbones), time.perf_counter() - start, out)


def forget_collection(name: str) -> bool:
    """Remove the index of collection ``name`` (its manifest; the cached features stay in the cache,
    the folder's files are never touched). True when there was one."""
    path = collections_dir() / f"{check_collection_name(name)}.json"
    if path.is_file():
        path.unlink()
        return True
    return False


def load_collection(name: str) -> Gallery:
    """The indexed collection ``name`` (see :func:`index_folder`), checked against its folder."""
    name = check_collection_name(name)
    path = collections_dir() / f"{name}.json"
    if not path.is_file():
        raise QueryError(f"unknown collection {name!r}: index a folder first (flickr-retrieval-index DIR --name {name}); "
                         f"indexed here: {indexed_collections() or 'none'}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        root, files = Path(manifest["folder"]), [str(f) for f in manifest["files"]]
        unreadable = [{"file": str(u["file"]), "reason": str(u["reason"])} for u in manifest.get("unreadable", [])]
        if manifest.get("format") != INDEX_FORMAT:
            raise ValueError(f"format {manifest.get('format')!r}")
    except (ValueError, KeyError, TypeError) as exc:
        raise QueryError(f"collection {name!r}: {path} is not a collection index ({exc}); index the folder again") from None
    resolved = []
    for f in files:
        p = (root / f).resolve()
        if Path(f).is_absolute() or not p.is_relative_to(root) or not p.is_file():  # an edited manifest never reaches outside its folder
            raise QueryError(f"collection {name!r}: {f} is missing or outside {root}; index the folder again")
        resolved.append(p)
    computed: dict[str, np.ndarray] = {}

    def features(backbone: str) -> np.ndarray:
        if backbone not in computed:
            computed[backbone] = _features(backbone, root, files)[0]
        return computed[backbone]

    return Gallery(name, files, resolved, {}, unreadable, features, root=root)


def load_gallery(name: str, data: Flickr8k | None = None) -> Gallery:
    """A Flickr8k split (``train``, ``dev``, ``test``, ``all``) or an indexed collection."""
    if name in FLICKR8K_COLLECTIONS:
        from .data import load_flickr8k

        return flickr8k_gallery(data or load_flickr8k(), name)
    return load_collection(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Index a folder of your own images, to search it with a trained run.")
    parser.add_argument("folder", help="a folder of images (searched recursively)")
    parser.add_argument("--name", required=True, help="the collection's name (letters, digits, . _ + = -)")
    parser.add_argument("--run", default="best", help="embed with this trained run's image backbone(s) (default: best)")
    parser.add_argument("--backbones", nargs="+", choices=list(BACKBONES), help="embed with these backbones instead of --run's")
    args = parser.parse_args(argv)
    with cli_errors("flickr-retrieval-index"):
        if args.backbones:
            backbones = args.backbones
        else:
            from .search import load_run

            backbones = list(load_run(args.run).config.backbones)
        report = index_folder(args.folder, args.name, backbones, show_progress=True)
        print("\n".join(report.lines()))
        print(f'search it: flickr-retrieval-search "a dog on the beach" --collection {report.name}')
    return 0


if __name__ == "__main__":
    sys.exit(main())
