"""What search looks through: a Flickr8k split, or a folder of your own photos indexed under a name.

    flickr-retrieval-index ~/Pictures/holidays --name holidays      # once: embeds every readable image
    flickr-retrieval-search "a dog on the beach" --collection holidays

Indexing is incremental (:mod:`flickr_retrieval.search.photo_index`): each file is read once, hashed, and
embedded only if no earlier run (of any collection) embedded the same bytes with the same backbone;
a file whose size and modification time did not change is not even read; removed files are dropped.
Run the same command again after adding photos: only the new ones are embedded; with ``--watch``
(:mod:`flickr_retrieval.search.watch`) the index follows the folder as files are added, changed,
moved or deleted; :mod:`flickr_retrieval.search.folder_scan` lists the folder. Photos are taken as
they are (EXIF orientation, JPEG draft decoding, HEIC through pillow-heif) and get a thumbnail.
Files that cannot be decoded as images are listed by name with the reason, in the command's output
and in the index; none is dropped silently. The index itself is a JSON manifest under the feature
cache (``<cache>/collections/<name>.json``: every file's name, size, time and SHA-256): data, never
code; a collection's name is a name, never a path. The trained run's image branch is applied at
search time, so any run with the same backbones can search the collection.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import paths
from ..backbones import BACKBONES, load_image_backbone
from ..data import SPLITS, Flickr8k
from ..errors import IndexWriteError, QueryError
from ..helpers import atomic_write
from .folder_scan import Scan, scan_folder
from .photo_index import IndexChanges

FLICKR8K_COLLECTIONS = (*SPLITS, "all")
INDEX_FORMAT = 2  # 2: one entry per file (name, size, modification time, SHA-256); features in photo_index's store
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=-]{0,63}$")


@dataclass
class Collection:
    """Images to search, with what search shows about them: a Flickr8k split, or a folder of your
    own photos indexed under a name.

        Collection.index("~/Pictures/holidays", "holidays", ["efficientnet_lite0"])  # embeds what is new
        holidays = Collection.open("holidays")      # reads the index only: no file is embedded or written
        holidays.scan()                             # what an update would read again (nothing embedded)
        holidays.update()                           # index its folder again, incrementally
        holidays.features("efficientnet_lite0")     # (len(ids), dim) backbone features, read from the store

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
    root: Path | None = None  # the folder every file must stay inside (checked again when the page serves one)
    sha256: dict[str, str] = field(default_factory=dict)  # an indexed file's content hash (names its thumbnail)
    meta: dict[str, dict] = field(default_factory=dict)  # an indexed file's capture time, camera, place (photo_meta)
    backbones: list[str] = field(default_factory=list)  # the backbones an indexed folder was embedded with
    duplicate_groups: list[list[str]] | None = None  # near-duplicate photos (duplicates.py); None: not grouped
    duplicates_said: str = ""
    _opened: dict = field(default_factory=dict, repr=False, compare=False)  # backbone -> (loaded, its store)

    @classmethod
    def flickr8k(cls, data: Flickr8k, split: str) -> Collection:
        """A Flickr8k split (or ``all``) with its captions; its features come from the feature cache
        through :class:`~flickr_retrieval.inputs.FeatureSpace`."""
        if split not in FLICKR8K_COLLECTIONS:
            raise QueryError(f"unknown Flickr8k split {split!r}; choose one of {list(FLICKR8K_COLLECTIONS)}")
        ids = data.split(split).image_ids
        return cls(
            split, ids, [data.image_path(i) for i in ids], {i: data.captions[i] for i in ids}, root=data.image_dir
        )

    @classmethod
    def open(cls, name: str) -> Collection:
        """The indexed collection ``name`` (see :meth:`index`), read from its manifest and checked
        against its folder. Reading only: nothing is embedded or written."""
        return _read_manifest(check_collection_name(name))

    @classmethod
    def index(
        cls,
        folder: str | Path,
        name: str,
        backbones: list[str],
        *,
        show_progress: bool = False,
        workers: int = 1,
        duplicates: bool = False,
        data=None,
    ) -> IndexReport:
        """Index every readable image under ``folder`` (recursively) with ``backbones`` as collection
        ``name``, incrementally (:meth:`scan` says what is read again): a file whose size and
        modification time are those of the previous index is not read again, a file whose content
        was embedded before (here or in any collection) is not embedded again, removed files are
        dropped (:mod:`photo_index`). Unreadable files are listed in the report and the manifest.
        The manifest is replaced only at the end: an interrupted or failed run leaves the previous
        index as it was, and keeps the vectors it finished for the next run. ``duplicates``: group
        near-duplicate photos (:mod:`duplicates`, a threshold calibrated on Flickr8k, ``data`` when
        given) and store the groups in the index."""
        name = check_collection_name(name)
        root = Path(folder).expanduser().resolve()
        if not root.is_dir():
            raise FileNotFoundError(f"no folder {folder}")
        if not backbones:
            raise QueryError("give at least one image backbone")
        loaded, stores = _open_stores(list(backbones))
        with _one_writer(name, stores):
            from .photo_index import remove_stale_temporaries

            # what a killed indexer left half-written: its manifest and its thumbnails
            remove_stale_temporaries(collections_dir())
            remove_stale_temporaries(paths.cache_dir() / "thumbnails", recursive=True)
            return cls._index(root, name, list(backbones), loaded, stores, show_progress, workers, duplicates, data)

    @classmethod
    def _index(cls, root, name, backbones, loaded, stores, show_progress, workers, duplicates, data) -> IndexReport:
        """:meth:`index`, its locks held."""
        from .photo_index import embed_files

        start = time.perf_counter()
        previous = _previous_entries(name, root)
        scan = scan_folder(root, previous, stores)
        entries, unreadable, to_read = dict(scan.kept), list(scan.unreadable), scan.to_read
        changes = IndexChanges(unchanged=len(entries))
        before = [len(s) for s in stores]
        update, close = _progress_printer(len(to_read), show_progress)
        try:
            decoded = embed_files([p for _, p in to_read], loaded, stores, workers=workers, on_progress=update)
        except KeyboardInterrupt:
            for s in stores:
                s.flush()
            kept = sum(len(s) - b for s, b in zip(stores, before))
            print(
                f"interrupted: {kept} new vector(s) kept; run the same command again to resume "
                f"(the previous index of {name!r} is unchanged)",
                file=sys.stderr,
            )
            raise
        except OSError as exc:
            raise IndexWriteError(
                f"could not write the index of {name!r} ({exc.strerror or exc}); the previous index is unchanged, and the "
                "images finished so far are kept: free some space and run the same command again"
            ) from None
        finally:
            close()
        for (relative, _), d in zip(to_read, decoded):
            if d.error:
                unreadable.append({"file": relative, "reason": d.error})
                continue
            entries[relative] = {"file": relative, "size": d.size, "mtime_ns": d.mtime_ns, "sha256": d.sha256}
            (changes.changed if relative in previous else changes.added).append(relative)
        if not root.is_dir():  # the folder vanished (unmounted, deleted) while it was read
            raise FileNotFoundError(
                f"the folder {root} disappeared while it was indexed: the previous index of {name!r} is kept"
            )
        _add_meta(entries, root)
        changes.removed = sorted(set(previous) - set(entries))
        changes.embedded = max((len(s) - b for s, b in zip(stores, before)), default=0)
        for s in stores:
            s.compact()
        if not entries:
            raise QueryError(f"no readable image under {root} ({len(unreadable)} other file(s))")
        files = [entries[k] for k in sorted(entries)]
        manifest = {
            "format": INDEX_FORMAT,
            "name": name,
            "folder": str(root),
            "backbones": list(backbones),
            "files": files,
            "unreadable": sorted(unreadable, key=lambda u: u["file"]),
        }
        if duplicates:
            from .duplicates import collection_groups

            vectors = stores[0].get([e["sha256"] for e in files])
            say = (lambda line: print(line, flush=True)) if show_progress else None
            found, said = collection_groups([e["file"] for e in files], vectors, backbones[0], data, say=say)
            manifest["duplicates"] = {"groups": found, "said": said}
        out = collections_dir() / f"{name}.json"
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(out, lambda handle: handle.write((json.dumps(manifest, indent=1) + "\n").encode("utf-8")))
        except OSError as exc:
            raise IndexWriteError(
                f"could not write the index of {name!r} at {out} ({exc.strerror or exc}); the previous index is unchanged"
            ) from None
        report = IndexReport(
            name, root, len(files), manifest["unreadable"], list(backbones), time.perf_counter() - start, out, changes
        )
        report.duplicates_said = manifest.get("duplicates", {}).get("said", "")
        return report

    def scan(self) -> Scan:
        """What :meth:`update` would do now, without reading a file's bytes or embedding anything:
        the files kept by the fast path (same size and modification time), those to read again, the
        new ones, the removed ones and those the walk refuses (a file that fails to decode is found
        when it is read)."""
        self._check_indexed("scan")
        return scan_folder(
            self.root, _previous_entries(self.name, self.root), [self._store(b)[1] for b in self.backbones]
        )

    def update(self, **kwargs) -> IndexReport:
        """Index this collection's folder again with its backbones (only what changed is read; a
        near-duplicate grouping is kept if the index had one). ``kwargs`` as for :meth:`index`."""
        self._check_indexed("update")
        kwargs.setdefault("duplicates", self.duplicate_groups is not None)
        return Collection.index(self.root, self.name, self.backbones, **kwargs)

    def missing(self, backbone: str) -> list[int]:
        """Positions of the files whose ``backbone`` vectors are not in the feature store (all of
        them for a backbone the index did not run, or after the store was cleared)."""
        self._check_indexed("read features")
        store = self._store(backbone)[1]
        return [n for n, i in enumerate(self.ids) if self.sha256[i] not in store]

    def embed_missing(self, backbone: str) -> int:
        """Embed the files :meth:`missing` lists with ``backbone`` into the feature store (the
        manifest is not touched). Returns how many were embedded."""
        from .photo_index import embed_files

        todo = self.missing(backbone)
        if todo:
            loaded, store = self._store(backbone)
            found = embed_files([self.files[n] for n in todo], [loaded], [store])
            if any(d.error or d.sha256 != self.sha256[self.ids[n]] for d, n in zip(found, todo)):
                raise QueryError(
                    f"collection {self.name!r}: files changed since they were indexed; index the folder again"
                )
        return len(todo)

    def features(self, backbone: str) -> np.ndarray:
        """(len(ids), dim) ``backbone`` features of an indexed folder, read from the feature store;
        QueryError when some are not there (:meth:`embed_missing` computes them). Flickr8k splits go
        through :class:`~flickr_retrieval.inputs.FeatureSpace` instead."""
        missing = self.missing(backbone)
        if missing:
            raise QueryError(
                f"collection {self.name!r}: {len(missing)} file(s) have no {backbone} features; "
                f"embed them (Collection.embed_missing) or index the folder again with --backbones {backbone}"
            )
        return self._store(backbone)[1].get([self.sha256[i] for i in self.ids])

    def _store(self, backbone: str):
        """The loaded ``backbone`` and its feature store, opened once per collection."""
        if backbone not in self._opened:
            (loaded,), (store,) = _open_stores([backbone])
            self._opened[backbone] = (loaded, store)
        return self._opened[backbone]

    @staticmethod
    def forget(name: str) -> bool:
        """Remove the index of collection ``name`` (its manifest; the cached features stay in the
        cache, the folder's files are never touched). True when there was one."""
        path = collections_dir() / f"{check_collection_name(name)}.json"
        if path.is_file():
            path.unlink()
            return True
        return False

    def _check_indexed(self, what: str) -> None:
        if self.is_flickr8k:
            raise QueryError(f"{self.name!r} is a Flickr8k split, not an indexed folder: cannot {what} it")

    def representatives(self, among: set[str] | None = None) -> dict[str, tuple[str, int]]:
        """For each photo of a near-duplicate group: the group's first photo and its number of copies;
        ``among``: only these photos count (those a filter passes: a copy taken elsewhere or on
        another day is not one of the answer's)."""
        out = {}
        for group in self.duplicate_groups or []:
            kept = [i for i in group if among is None or i in among]
            out.update({i: (kept[0], len(kept) - 1) for i in kept})
        return out

    def place_names(self) -> set[str]:
        """The lower-case names of the places of this collection's photos (cities, regions, countries)."""
        from .query_language import place_names

        return set().union(*(place_names(m.get("place")) for m in self.meta.values()))

    def matching(self, query) -> np.ndarray:
        """A boolean mask of the images that pass ``query``'s filters (:mod:`query_language`);
        QueryError saying why when none does or a filter cannot apply here."""
        from .photo_meta import within
        from .query_language import matches, place_key

        key = None if query.place is None else place_key(query.place, self.place_names())
        if query.place is not None and key is None:
            import difflib

            near = difflib.get_close_matches(query.place.lower(), sorted(self.place_names()), n=3)
            raise QueryError(
                f"no photo of {self.name!r} is in a place called {query.place!r}"
                + (
                    f"; did you mean {', '.join(near)}?"
                    if near
                    else " (its photos carry no GPS position, or none there)"
                )
            )
        if self.is_flickr8k and (query.period or query.camera):
            raise QueryError(f"{self.name!r} is a Flickr8k split: its images carry no date or camera to filter on")
        near = None if key is None else (lambda meta: within(meta.get("gps"), key))  # its suburbs too
        mask = np.array([matches(query, i, self.meta.get(i), near) for i in self.ids], dtype=bool)
        if not mask.any():
            filters = ", ".join(query.filter_labels())
            raise QueryError(f"no photo of {self.name!r} passes the filters ({filters})")
        return mask

    @property
    def is_flickr8k(self) -> bool:
        return self.name in FLICKR8K_COLLECTIONS

    def __len__(self) -> int:
        return len(self.ids)


def check_collection_name(name: str) -> str:
    """``name`` when it is a plain name (letters, digits, ``._+=-``) that is not a Flickr8k split."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise QueryError(
            f"invalid collection name {name!r}: use letters, digits and . _ + = - only (a name, not a path), at most 64 characters"
        )
    if name in FLICKR8K_COLLECTIONS:
        raise QueryError(f"{name!r} is a Flickr8k split; give your collection another name")
    return name


def index_stamp(name: str) -> tuple[int, int, int] | None:
    """What changes when collection ``name``'s index is written again (its manifest is replaced
    whole: inode, size, modification time), so that a long-lived reader (the page) sees a new index
    without a restart; None for a Flickr8k split (fixed) or a name not indexed."""
    if name in FLICKR8K_COLLECTIONS:
        return None
    try:
        info = (collections_dir() / f"{check_collection_name(name)}.json").stat()
    except OSError:
        return None
    return info.st_ino, info.st_size, info.st_mtime_ns


def collections_dir() -> Path:
    """Where collection manifests live (beside the feature cache). Only a path."""
    return paths.cache_dir() / "collections"


def indexed_collections() -> list[str]:
    folder = collections_dir()
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


#: How long an indexer waits for a feature store that another indexer (of another collection) writes.
STORE_WAIT_S = 600


@contextlib.contextmanager
def _one_writer(name: str, stores: list):
    """One writer per collection and per feature store (``filelock``: a lock file beside each, freed
    by the system when a process dies). A second indexer of the same collection is refused at once; an
    indexer of another collection sharing a store waits for it (at most :data:`STORE_WAIT_S`)."""
    from filelock import FileLock, Timeout

    folder = collections_dir()
    folder.mkdir(parents=True, exist_ok=True)
    mine = FileLock(str(folder / f".{name}.lock"))
    try:
        mine.acquire(timeout=0)
    except Timeout:
        raise QueryError(
            f"collection {name!r} is being indexed by another process (watch mode, or another "
            "flickr-retrieval-index): wait for it to finish"
        ) from None
    try:
        with contextlib.ExitStack() as held:
            for store in stores:
                store.folder.mkdir(parents=True, exist_ok=True)
                lock = FileLock(str(store.folder / ".writer.lock"))
                try:
                    held.enter_context(lock.acquire(timeout=STORE_WAIT_S))
                except Timeout:
                    raise QueryError(
                        f"the feature store {store.folder} stayed locked by another indexer for {STORE_WAIT_S} s"
                    ) from None
            yield
    finally:
        mine.release()


def _open_stores(backbones: list[str]) -> tuple[list, list]:
    """The loaded backbones (pretrained) and their feature stores; fails before any work when
    weights are missing."""
    from .photo_index import FeatureStore

    for b in backbones:
        if b not in BACKBONES:
            raise QueryError(f"unknown image backbone {b!r}; choose one of {list(BACKBONES)}")
    loaded = [load_image_backbone(b) for b in backbones]
    return loaded, [FeatureStore(b) for b in loaded]


@dataclass
class IndexReport:
    """What :meth:`Collection.index` did."""

    name: str
    folder: Path
    images: int
    unreadable: list[dict]
    backbones: list[str]
    seconds: float
    manifest: Path
    changes: IndexChanges = field(default_factory=IndexChanges)
    duplicates_said: str = ""

    def lines(self) -> list[str]:
        out = [
            f"indexed {self.images} image(s) of {self.folder} as {self.name!r} with {', '.join(self.backbones)} "
            f"in {self.seconds:.1f} s -> {self.manifest}",
            self.changes.summary(),
            *([self.duplicates_said] if self.duplicates_said else []),
        ]
        if self.unreadable:
            out.append(f"{len(self.unreadable)} file(s) not indexed (not readable images):")
            out += [f"  {u['file']}: {u['reason']}" for u in self.unreadable]
        return out


def _previous_entries(name: str, root: Path) -> dict[str, dict]:
    """The file entries of the collection's previous index of the same folder (empty if none, or
    if it is unreadable: everything is then read again, nothing is trusted)."""
    path = collections_dir() / f"{name}.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if manifest.get("format") != INDEX_FORMAT or manifest.get("folder") != str(root):
            return {}
        keys = ("file", "size", "mtime_ns", "sha256", "meta")
        return {str(e["file"]): {k: e[k] for k in keys if k in e} for e in manifest["files"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _progress_printer(total: int, show: bool):
    """A progress bar with rate and ETA on a terminal; plain lines (every 10%) otherwise."""
    if not show or total == 0:
        return None, lambda: None
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=total, unit="image", desc="indexing", file=sys.stderr)

        def update(done, _total):
            bar.update(done - bar.n)

        return update, bar.close
    started, marks = time.perf_counter(), set()

    def update(done, total_):
        mark = 10 * done // total_
        if mark not in marks:
            marks.add(mark)
            rate = done / max(time.perf_counter() - started, 1e-9)
            print(
                f"indexing: {done}/{total_} files ({rate:.1f}/s, about {(total_ - done) / max(rate, 1e-9):.0f} s left)",
                file=sys.stderr,
                flush=True,
            )

    return update, lambda: None


def _add_meta(entries: dict[str, dict], root: Path) -> None:
    """Give every entry without one its metadata (:mod:`photo_meta`: capture time, camera, GPS
    position and its place), read from the file's header: once per file, like its vector."""
    from .photo_meta import places, read_meta

    fresh = [e for e in entries.values() if not isinstance(e.get("meta"), dict)]
    for e in fresh:
        try:
            e["meta"] = read_meta(root / e["file"])
        except OSError:  # gone since it was read: the next run drops it
            e["meta"] = {"taken": None, "taken_from": None, "camera": None, "gps": None}
    located = [e for e in fresh if e["meta"].get("gps")]
    for e, place in zip(located, places([tuple(e["meta"]["gps"]) for e in located])):
        e["meta"]["place"] = place


def _read_manifest(name: str) -> Collection:
    """:meth:`Collection.open`: the manifest read as data (every field checked), every file checked
    to lie inside the indexed folder."""
    path = collections_dir() / f"{name}.json"
    if not path.is_file():
        raise QueryError(
            f"unknown collection {name!r}: index a folder first (flickr-retrieval-index DIR --name {name}); "
            f"indexed here: {indexed_collections() or 'none'}"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if manifest.get("format") != INDEX_FORMAT:
            raise ValueError(f"format {manifest.get('format')!r}, this version reads {INDEX_FORMAT}")
        root = Path(manifest["folder"])
        files = [str(e["file"]) for e in manifest["files"]]
        shas = [str(e["sha256"]) for e in manifest["files"]]
        meta = {str(e["file"]): e["meta"] for e in manifest["files"] if isinstance(e.get("meta"), dict)}
        backbones = [str(b) for b in manifest.get("backbones", [])]
        dups = manifest.get("duplicates")
        groups = None if dups is None else [[str(i) for i in g] for g in dups["groups"]]
        if groups is not None and not {i for g in groups for i in g} <= set(files):
            raise ValueError("a duplicate group names a file the index does not hold")
        unreadable = [{"file": str(u["file"]), "reason": str(u["reason"])} for u in manifest.get("unreadable", [])]
    except (ValueError, KeyError, TypeError) as exc:
        raise QueryError(
            f"collection {name!r}: {path} is not a collection index ({exc}); index the folder again"
        ) from None
    resolved = []
    for f in files:
        p = (root / f).resolve()
        if (
            Path(f).is_absolute() or not p.is_relative_to(root) or not p.is_file()
        ):  # an edited manifest never reaches outside its folder
            raise QueryError(f"collection {name!r}: {f} is missing or outside {root}; index the folder again")
        resolved.append(p)
    return Collection(
        name,
        files,
        resolved,
        {},
        unreadable,
        root=root,
        sha256=dict(zip(files, shas)),
        meta=meta,
        backbones=backbones,
        duplicate_groups=groups,
        duplicates_said="" if dups is None else str(dups.get("said", "")),
    )
