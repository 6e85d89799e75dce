"""An incremental index of a photo folder: each file embedded once, found again by its content.

Used by :meth:`flickr_retrieval.search.Collection.index` (``flickr-retrieval-index``). What it keeps:

* **a feature store per backbone** (``<cache>/photo-features/<backbone>-<key>/``): shards of
  ``(sha256 of the file's bytes, feature vector)``, each written whole (temporary file, then one
  rename). The key covers the weights, the preprocessing, the inference path and the decoding
  (:data:`DECODE_VERSION`), so a vector is only ever reused for the same computation. A file that
  was renamed, copied or moved is found by its content and not embedded again; an interrupted run
  keeps every shard it finished, and the next run resumes from there.
* **the collection's manifest** (in :mod:`collection`): every file's name, size, modification time and
  SHA-256. A file whose size and modification time are those of the manifest is not read again (the
  fast path git's index takes); any other file is read once, hashed, and decoded from the same bytes
  (so its vector is the vector of what was hashed).
* **thumbnails** (``<cache>/thumbnails/``, JPEG, at most :data:`THUMBNAIL_SIZE` pixels a side),
  made from the decoded photo at index time; the page never sends the original files.

Photos as they are: the EXIF orientation is applied before the CNN; JPEGs are decoded at reduced
size (Pillow's draft mode: the CNN wants at most 260 pixels, a phone photo has 4000); HEIC/HEIF
through ``pillow-heif`` when it is installed (else the file is listed as unreadable, with that
reason). Decoding runs in a worker process while the CNN runs in the main one (the same vectors as
one process: tested).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import resource
import stat
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps

from .. import cache, paths
from ..backbones import INFERENCE_PATH, ImageBackbone, inference_module
from ..helpers import atomic_write
from .photo_meta import enable_heif, exif_too_large, image_type

#: What decoding does before the preprocessing (part of the store key): the EXIF orientation, draft
#: decoding of JPEGs to at least :data:`DECODE_SIZE` pixels a side, RGB.
DECODE_VERSION = "exif-transpose+jpeg-draft-320+rgb v1"
DECODE_SIZE = 320
THUMBNAIL_SIZE = 320
#: The page's larger view: at most this many pixels a side, made on first view and cached.
LARGE_SIZE = 1024
#: Files larger than this are not read (a photo is 2-20 MB).
MAX_FILE_BYTES = 200 * 2**20
#: Images of more pixels than this are refused from their header, before any pixel is decoded (a
#: phone photo is 12-50 megapixels; a 316 KB PNG can claim 100 and take 1.6 GB to decode).
MAX_PIXELS = 64_000_000
#: The formats indexed and shown: those the page can serve (decided from the file's first bytes).
SHOWN_FORMATS = ("JPEG", "MPO", "PNG", "GIF", "WEBP", "HEIF")
#: Formats decoded as JPEG (draft mode): MPO is a JPEG with further frames after it, as many phones
#: and cameras write them; its first frame is the photo.
JPEG_FORMATS = ("JPEG", "MPO")
#: At most this many photos are decoded at once by one process (the page's views, the indexer's reader).
MAX_CONCURRENT_DECODES = 2
_decodes = threading.BoundedSemaphore(MAX_CONCURRENT_DECODES)


class PhotoRefused(ValueError):
    """A file that is an image this project does not decode: too many pixels, or a format the page
    cannot show."""


#: Vectors per shard of the feature store: what an interrupted run can lose at most, per backbone.
SHARD_SIZE = 256
#: Above this many shards, the store is merged into one (the next index run does it).
MAX_SHARDS = 64


def read_file(path: Path, limit: int = MAX_FILE_BYTES) -> tuple[bytes, int, int]:
    """The bytes of a regular file (links not followed), with the size and modification time it
    had while being read. OSError for a file that is not a regular file, too large, or that
    changed while being read."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as handle:
        before = os.fstat(handle.fileno())
        if not stat.S_ISREG(before.st_mode):
            raise OSError(f"{path.name}: not a regular file")
        if before.st_size > limit:
            raise OSError(f"larger than {limit // 2**20} MB")
        data = handle.read(
            before.st_size + 1
        )  # what it holds (+1: growth is seen), not the limit: a 200 MB buffer per read
        after = os.fstat(handle.fileno())
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) or len(data) != after.st_size:
        raise OSError("the file changed while it was being read: index again once it is written")
    return data, after.st_size, after.st_mtime_ns


def decode_photo(data: bytes, size: int = DECODE_SIZE) -> Image.Image:
    """A photo's bytes as an upright RGB image, decoded at reduced size where the format allows
    (JPEG: the smallest of 1/1, 1/2, 1/4, 1/8 that keeps both sides >= ``size``), with none of the
    file's metadata. :class:`PhotoRefused`, from the header alone, for more than :data:`MAX_PIXELS`
    pixels or a format outside :data:`SHOWN_FORMATS`. At most :data:`MAX_CONCURRENT_DECODES` decodes
    run at once in a process. The format is sniffed from the first bytes before any parser runs."""
    if image_type(data[:16]) is None:
        raise PhotoRefused("not a JPEG, PNG, GIF, WebP or HEIC file by its first bytes: not indexed")
    enable_heif()
    im = Image.open(io.BytesIO(data))  # no ``with``: closing it would drop the pixels this returns
    try:
        if im.format not in SHOWN_FORMATS:
            raise PhotoRefused(f"{im.format} images are not indexed (the page shows {', '.join(SHOWN_FORMATS)})")
        if im.width * im.height > MAX_PIXELS:
            raise PhotoRefused(
                f"{im.width} x {im.height} pixels, more than the {MAX_PIXELS // 1_000_000} megapixels this project decodes"
            )
        with _decodes:
            if im.format in JPEG_FORMATS:
                im.draft("RGB", (size, size))
            im.load()
            # one copy of the pixels at a time: turned only when its orientation says so, converted only
            # when it is not RGB already (a 64-megapixel PNG: 0.2 GB, where a copy for each step took 0.7)
            if not exif_too_large(im) and im.getexif().get(ExifTags.Base.Orientation, 1) in range(2, 9):
                im = ImageOps.exif_transpose(im)
            upright = im if im.mode == "RGB" else im.convert("RGB")
    except BaseException:
        im.close()
        raise
    upright.info = {}  # nothing of the file's own metadata (comments, text chunks) goes into a view
    return upright


def thumbnail_path(sha256: str, folder: Path | None = None, size: int = THUMBNAIL_SIZE) -> Path:
    """Where the view of at most ``size`` pixels of the file whose bytes hash to ``sha256`` lives
    (a name built here, never taken from a request)."""
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ValueError(f"not a SHA-256: {sha256!r}")
    folder = folder or paths.cache_dir() / "thumbnails"
    if size != THUMBNAIL_SIZE:
        folder = folder / str(int(size))
    return folder / sha256[:2] / f"{sha256}.jpg"


def save_thumbnail(image: Image.Image, target: Path, size: int = THUMBNAIL_SIZE, *, in_place: bool = False) -> None:
    """A JPEG of at most ``size`` pixels a side, written whole or not at all. ``in_place``: ``image``
    itself is made small (no copy of a large photo; the caller has no further use for it)."""
    if target.is_file():
        return
    small = image if in_place else image.copy()
    small.thumbnail((size, size))
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, lambda handle: small.save(handle, format="JPEG", quality=85))


def view_bytes(data: bytes, size: int = THUMBNAIL_SIZE, folder: Path | None = None) -> bytes:
    """A JPEG of at most ``size`` pixels a side of the image whose bytes are ``data`` (what the
    search page sends instead of the file): made once, then read from the thumbnail cache.
    Raises what decoding raises for bytes that are not a readable image."""
    target = thumbnail_path(hashlib.sha256(data).hexdigest(), folder, size)
    if not target.is_file():
        try:
            save_thumbnail(decode_photo(data, size), target, size, in_place=True)
        except OSError:  # a cache that cannot be written: make it in memory
            buffer = io.BytesIO()
            small = decode_photo(data, size)
            small.thumbnail((size, size))
            small.save(buffer, format="JPEG", quality=85)
            return buffer.getvalue()
    return target.read_bytes()


# --------------------------------------------------------------------------- the feature store


def store_key(backbone: ImageBackbone) -> dict:
    """Everything that makes a photo's vector: the backbone, its weights, its preprocessing, the
    inference path and the decoding."""
    return {
        "model": backbone.name,
        "weights": backbone.weights,
        "preprocessing": dict(backbone.spec.preprocessing.__dict__),
        "inference": INFERENCE_PATH,
        "decode": DECODE_VERSION,
        "dim": backbone.spec.dim,
    }


#: A shard's temporary file older than this was left by a killed process (a shard takes well under a
#: second to write).
STALE_TEMPORARY_S = 600


def remove_stale_temporaries(folder: Path, pattern: str = ".*.tmp", recursive: bool = False) -> int:
    """Remove the half-written files (``helpers.atomic_write``'s ``.<name>.<random>.tmp``) that a
    killed process left under ``folder``: older than :data:`STALE_TEMPORARY_S`, so that a writer at
    work keeps its own; links and anything but regular files are left alone. Returns how many."""
    now, removed = time.time(), 0
    for tmp in folder.rglob(pattern) if recursive else folder.glob(pattern):
        try:
            info = tmp.lstat()
            if stat.S_ISREG(info.st_mode) and now - info.st_mtime > STALE_TEMPORARY_S:
                tmp.unlink()
                removed += 1
        except OSError:  # gone already, or not ours to remove
            continue
    return removed


class FeatureStore:
    """Vectors of one backbone, found by the SHA-256 of the file they were computed from."""

    def __init__(self, backbone: ImageBackbone, root: Path | None = None):
        key = store_key(backbone)
        self.dim = backbone.spec.dim
        self.folder = (root or paths.cache_dir() / "photo-features") / f"{backbone.name}-{cache.cache_key(key)[:16]}"
        self._rows: dict[str, np.ndarray] = {}
        self._pending: list[tuple[str, np.ndarray]] = []
        self._load()

    def _load(self) -> None:
        if not self.folder.is_dir():
            return
        self._remove_stale_temporaries()
        for shard in sorted(self.folder.glob("shard-*.npz")):
            try:
                with np.load(shard, allow_pickle=False) as z:
                    shas, vectors = z["sha256"], z["vectors"]
                if (
                    vectors.ndim != 2
                    or vectors.shape != (len(shas), self.dim)
                    or vectors.dtype != np.float32
                    or shas.dtype.kind != "S"
                ):
                    raise ValueError(f"shapes {shas.shape} {vectors.shape}")
            except Exception:  # a damaged shard is ignored (its images are embedded again), never trusted
                continue
            for sha, vector in zip(shas, vectors):
                self._rows[sha.decode("ascii")] = vector

    def _remove_stale_temporaries(self) -> None:
        """Remove the half-written shards (``.shard-*.tmp``) a killed process left: older than
        :data:`STALE_TEMPORARY_S`, so that another process writing a shard now keeps its own."""
        remove_stale_temporaries(self.folder, ".shard-*.tmp")

    def __contains__(self, sha256: str) -> bool:
        return sha256 in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, shas: list[str]) -> np.ndarray:
        """(len(shas), dim) vectors, in order (KeyError for one the store does not hold)."""
        return np.stack([self._rows[s] for s in shas]) if shas else np.zeros((0, self.dim), np.float32)

    def add(self, sha256: str, vector: np.ndarray) -> None:
        """Keep a vector; written to disk by :meth:`flush` (every :data:`SHARD_SIZE` vectors)."""
        vector = np.asarray(vector, dtype=np.float32)
        if vector.shape != (self.dim,) or not np.isfinite(vector).all():
            raise ValueError(f"a vector of shape {vector.shape} (or not finite) for a {self.dim}-d store")
        self._rows[sha256] = vector
        self._pending.append((sha256, vector))
        if len(self._pending) >= SHARD_SIZE:
            self.flush()

    def flush(self) -> None:
        """Write the pending vectors as one shard (whole, or not at all: a full disk raises OSError
        and leaves the earlier shards as they were)."""
        if not self._pending:
            return
        shas = np.array([s.encode("ascii") for s, _ in self._pending], dtype="S64")
        vectors = np.stack([v for _, v in self._pending])
        self._write(f"shard-{time.time_ns()}-{uuid.uuid4().hex[:8]}.npz", shas, vectors)
        self._pending = []

    def _write(self, name: str, shas: np.ndarray, vectors: np.ndarray) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / name
        return atomic_write(target, lambda handle: np.savez(handle, sha256=shas, vectors=vectors))

    def compact(self) -> None:
        """Merge the shards into one when there are more than :data:`MAX_SHARDS` (the merged shard
        is written before the old ones are removed)."""
        self.flush()
        shards = sorted(self.folder.glob("shard-*.npz")) if self.folder.is_dir() else []
        if len(shards) <= MAX_SHARDS:
            return
        shas = sorted(self._rows)
        merged = self._write(
            f"shard-{time.time_ns()}-merged.npz",
            np.array([s.encode("ascii") for s in shas], dtype="S64"),
            self.get(shas),
        )
        for shard in shards:
            if shard != merged:
                shard.unlink(missing_ok=True)


# --------------------------------------------------------------------------- reading and embedding


@dataclass
class Decoded:
    """What the worker made of one file: its content hash, size and time, and either the network
    inputs (one tensor per backbone) or the reason it could not."""

    position: int
    sha256: str = ""
    size: int = 0
    mtime_ns: int = 0
    inputs: list[torch.Tensor] | None = None
    error: str = ""


#: The memory decoding one file may take in a reading worker (its private writable memory beyond
#: what the worker held before, ``RLIMIT_DATA``): the largest photo indexed (64 megapixels) takes
#: about 0.2 GB; a file whose decoding asks for more is refused ("needs more memory"), the index goes on.
WORKER_MEMORY_BYTES = 2 * 2**30


def _data_size() -> int | None:
    """This process's private writable memory in bytes (Linux's "data" of /proc/self/statm: what
    ``RLIMIT_DATA`` counts), or None where it cannot be read."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[5]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


@contextlib.contextmanager
def memory_bound(extra: int | None):
    """While the block runs, this process may hold at most ``extra`` more bytes of private memory
    than it holds now (``RLIMIT_DATA``'s soft limit, set back after: Linux; elsewhere, or with None,
    no bound). An allocation past it raises MemoryError in the block. Memory the process freed but
    still holds is reused within the bound without counting: the bound is on what it holds in all."""
    held = None if extra is None else _data_size()
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if held is None or (hard != resource.RLIM_INFINITY and held + extra >= hard):
        yield
        return
    resource.setrlimit(resource.RLIMIT_DATA, (held + extra, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


class PhotoReader(torch.utils.data.Dataset):
    """Reads, hashes and decodes files (in a DataLoader worker): one :class:`Decoded` each. Files
    whose hash is in ``known`` are not decoded (their vectors exist); a thumbnail is written for
    every decoded photo that has none."""

    def __init__(
        self,
        files: list[Path],
        transforms: list,
        known: set[str],
        thumbnails: Path | None,
        memory: int | None = WORKER_MEMORY_BYTES,
    ):
        self.files, self.transforms, self.known, self.thumbnails = files, transforms, known, thumbnails
        self.memory = memory  # what decoding may take, in a worker process (the main process is not bounded)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Decoded:
        try:
            data, size, mtime_ns = read_file(self.files[i])
        except OSError as exc:
            return Decoded(i, error=f"cannot be read ({exc.strerror or exc})")
        out = Decoded(i, hashlib.sha256(data).hexdigest(), size, mtime_ns)
        thumbnail = thumbnail_path(out.sha256, self.thumbnails)
        if out.sha256 in self.known and thumbnail.is_file():
            return out
        try:
            in_worker = torch.utils.data.get_worker_info() is not None
            with memory_bound(self.memory if in_worker else None):
                image = decode_photo(data)
                inputs = [t(image) for t in self.transforms] if out.sha256 not in self.known else None
        except PhotoRefused as exc:
            out.error = f"not indexed: {exc}"
            return out
        except MemoryError:
            out.error = "not indexed: decoding it needs more memory than a reading worker may take"
            return out
        except Exception as exc:  # PIL raises many types for broken or unsupported files
            out.error = unreadable_reason(exc, data, enable_heif())
            return out
        try:
            save_thumbnail(image, thumbnail)
        except OSError:
            pass  # no thumbnail (a full disk): the page makes it on first view
        out.inputs = inputs
        return out


def unreadable_reason(exc: Exception, data: bytes, heif_available: bool) -> str:
    """Why a file's bytes are not a readable image, in words (a HEIC photo without its plugin says
    what to install)."""
    reason = str(exc).split(" '<_io.BytesIO")[0]
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftyphevc") and not heif_available:
        return "not a readable image: a HEIC/HEIF photo, and pillow-heif is not installed (pip install pillow-heif)"
    return f"not a readable image ({type(exc).__name__}: {reason})"


#: Seconds without a batch from the reading workers after which indexing stops with an error (a
#: batch of four 64-megapixel photos decodes in well under a minute on a 2-core machine).
WORKER_STALL_S = 300


def _single_thread(_worker_id: int) -> None:
    torch.set_num_threads(1)  # the worker decodes; the main process's threads run the CNN


def embed_files(
    files: list[Path],
    backbones: list[ImageBackbone],
    stores: list[FeatureStore],
    *,
    workers: int = 1,
    batch_size: int = 4,
    thumbnails: Path | None = None,
    on_progress=None,
    worker_memory: int | None = WORKER_MEMORY_BYTES,
) -> list[Decoded]:
    """Read, hash and (where needed) embed ``files``: every vector a store lacks is computed and
    added to it (flushed shard by shard). Returns one :class:`Decoded` per file, in order (their
    ``inputs`` dropped). ``on_progress(done, total)`` is called as files complete. Files are read and
    decoded by ``workers`` processes (0: this one), where decoding a file may take at most
    ``worker_memory`` bytes (None: unbounded; the main process is never bounded)."""
    known = set.intersection(*[set(s._rows) for s in stores]) if stores else set()
    if resource.getrlimit(resource.RLIMIT_FSIZE)[0] != resource.RLIM_INFINITY:
        workers = 0  # workers hand their tensors over in shared-memory files, which a file size limit breaks
    reader = PhotoReader(files, [b.spec.preprocessing.transform() for b in backbones], known, thumbnails, worker_memory)
    loader = torch.utils.data.DataLoader(
        reader,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=list,
        worker_init_fn=_single_thread if workers else None,
        prefetch_factor=4 if workers else None,
        timeout=WORKER_STALL_S if workers else 0,  # a worker that can no longer deliver: an error, never a hang
    )
    modules = [inference_module(b) for b in backbones]
    results: list[Decoded] = []
    with torch.inference_mode():
        for batch in loader:
            todo = [d for d in batch if d.inputs is not None and not all(d.sha256 in s for s in stores)]
            if todo:
                for n, (module, store) in enumerate(zip(modules, stores)):
                    x = torch.stack([d.inputs[n] for d in todo]).contiguous(memory_format=torch.channels_last)
                    for d, vector in zip(todo, module(x).float().numpy()):
                        store.add(d.sha256, vector)
            for d in batch:
                d.inputs = None
                results.append(d)
            if on_progress:
                on_progress(len(results), len(files))
    for store in stores:
        store.flush()
    return results


@dataclass
class IndexChanges:
    """What an index run found, against the collection's previous manifest."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    embedded: int = 0  # vectors computed (per backbone) in this run

    def summary(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.changed)} changed, {len(self.removed)} removed, {self.unchanged} unchanged; "
            f"{self.embedded} embedded in this run"
        )
