"""Flickr8k: find it, parse it, validate it, and cut it into the standard splits.

Flickr8k (Hodosh, Young & Hockenmaier, JAIR 2013) has 8091 images with 5 captions each and standard
splits of 6000 / 1000 / 1000 images. Two layouts are accepted:

* the prepared copy (``Images/``, ``Flickr8k.token.txt`` and the three split files side by side);
* the original public archives unpacked (``Flicker8k_Dataset/`` for the images, sic, and
  ``Flickr8k_text/`` for the captions and splits), as :mod:`flickr_retrieval.download` leaves them.

Validation happens on load. Any problem is an error that names the file (and line) and says how to get
a good copy; nothing is dropped or kept silently. The one documented exception is :data:`KNOWN_ERRATA`.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from . import paths
from .errors import DatasetError
from .helpers import sha256_file

TOKEN_FILE = "Flickr8k.token.txt"
SPLIT_FILES = {
    "train": "Flickr_8k.trainImages.txt",
    "dev": "Flickr_8k.devImages.txt",
    "test": "Flickr_8k.testImages.txt",
}
SPLITS = tuple(SPLIT_FILES)
CAPTIONS_PER_IMAGE = 5

#: Captions of the original ``Flickr8k.token.txt`` that name an image that does not exist. The five
#: lines ``2258277193_586949ec62.jpg.1#0-4`` repeat the captions of ``2258277193_586949ec62.jpg``; they
#: are why the token file names 8092 images (the figure the report gives) for 8091 image files.
KNOWN_ERRATA = {
    "2258277193_586949ec62.jpg.1": "duplicate of 2258277193_586949ec62.jpg; no such image file",
}

HOW_TO_GET = (
    "Get Flickr8k with `flickr-retrieval-download` (needs internet; unpacks into data/flickr8k/), "
    "or point the FLICKR8K_DIR environment variable at a folder holding it (see docs/reproducibility.md)."
)

_TOKEN_LINE = re.compile(r"^(?P<image>[^#\t]+)#(?P<n>\d+)\t(?P<text>.*)$")


@dataclass(frozen=True)
class ExpectedCounts:
    """The sizes a complete copy must have."""

    images: int = 8091
    splits: tuple[tuple[str, int], ...] = (("train", 6000), ("dev", 1000), ("test", 1000))


#: The sizes of the standard Flickr8k.
FLICKR8K = ExpectedCounts()


@dataclass(frozen=True)
class Split:
    """One split, with its captions in a fixed order (image by image, captions 0..4).

    Attributes
    ----------
    name : str
    image_ids : list[str]
        ``<image>.jpg`` names, in the order of the split file.
    caption_ids : list[str]
        ``<image>.jpg#<n>``, length Q = 5 x len(image_ids).
    captions : list[str]
        raw caption texts, aligned with ``caption_ids``.
    caption_image : np.ndarray
        int64 array of shape (Q,): for each caption, the index of its image in ``image_ids``.
        This explicit map is what every metric takes (no "5 captions per image" assumed there).
    """

    name: str
    image_ids: list[str]
    caption_ids: list[str]
    captions: list[str]
    caption_image: np.ndarray = field(repr=False)

    def __len__(self) -> int:
        return len(self.image_ids)


@dataclass
class Flickr8k:
    """A validated Flickr8k copy. Build it with :func:`load_flickr8k`."""

    root: Path
    image_dir: Path
    text_dir: Path
    captions: dict[str, list[str]]  # image id -> its captions, in caption-number order
    split_images: dict[str, list[str]]
    errata: dict[str, str] = field(default_factory=dict)

    @property
    def image_ids(self) -> list[str]:
        """All images with captions, in token-file order."""
        return list(self.captions)

    @property
    def layout(self) -> str:
        return "prepared" if self.image_dir.name == "Images" else "original archives"

    def image_path(self, image_id: str) -> Path:
        return self.image_dir / image_id

    def split(self, name: str) -> Split:
        """``train``, ``dev``, ``test``, or ``all`` (every image, token-file order)."""
        if name == "all":
            images = self.image_ids
        elif name in self.split_images:
            images = self.split_images[name]
        else:
            raise KeyError(f"unknown split {name!r}; choose one of {[*SPLITS, 'all']}")
        caption_ids, texts, owner = [], [], []
        for i, image in enumerate(images):
            for n, text in enumerate(self.captions[image]):
                caption_ids.append(f"{image}#{n}")
                texts.append(text)
                owner.append(i)
        return Split(name, list(images), caption_ids, texts, np.asarray(owner, dtype=np.int64))

    def verify_images(self, image_ids: list[str] | None = None) -> None:
        """Decode every image fully with PIL (a header check passes a file cut in half); raise one
        error listing all unreadable files."""
        bad = []
        for image in image_ids if image_ids is not None else self.image_ids:
            path = self.image_path(image)
            try:
                with Image.open(path) as im:
                    im.load()
            except Exception as exc:  # PIL raises many types for broken files
                bad.append(f"{path}: {type(exc).__name__}: {exc}")
        if bad:
            raise DatasetError(f"{len(bad)} unreadable image(s):\n  " + "\n  ".join(bad[:20]) + "\n" + HOW_TO_GET)

    def content_fingerprint(self, image_ids: list[str] | None = None) -> str:
        """SHA-256 over the names and bytes of ``image_ids`` (default: all), in order.

        Part of every image-feature cache key, so that features computed from one copy of Flickr8k
        are never reused for another copy whose files have the same names but other content.
        Reading 8091 small JPEGs takes about a second; the result is remembered per file state.
        """
        ids = list(image_ids) if image_ids is not None else self.image_ids
        digest = hashlib.sha256()
        for image in ids:
            digest.update(image.encode("utf-8") + b"\0")
            digest.update(_file_digest(self.image_path(image)))
        return digest.hexdigest()

    def caption_lengths(self, split: str) -> np.ndarray:
        """Words per caption (white-space tokens, final pipeline) of a split, in caption order."""
        from .text import clean_caption

        return np.array([len(clean_caption(c).split()) for c in self.split(split).captions])

    def summary(self) -> dict[str, int]:
        """Counts, for display."""
        out = {"images": len(self.captions), "captions": sum(len(c) for c in self.captions.values())}
        out.update({f"{name} images": len(ids) for name, ids in self.split_images.items()})
        return out


_DIGESTS: dict[tuple[str, int, int], bytes] = {}


def _file_digest(path: Path) -> bytes:
    """SHA-256 of a file's bytes, remembered per (path, size, modification time)."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise DatasetError(f"cannot read image {path}: {exc}. {HOW_TO_GET}") from exc
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = bytes.fromhex(sha256_file(path))
    return _DIGESTS[key]


def find_layout(root: Path) -> tuple[Path, Path] | None:
    """Return ``(image_dir, text_dir)`` when ``root`` holds either layout, else None."""
    prepared = (root / "Images", root)
    original = (root / "Flicker8k_Dataset", root / "Flickr8k_text")
    for image_dir, text_dir in (prepared, original):
        if image_dir.is_dir() and (text_dir / TOKEN_FILE).is_file():
            return image_dir, text_dir
    return None


def locate_flickr8k(root: str | Path | None = None) -> Path:
    """The Flickr8k folder: ``root`` if given, else the first of :func:`paths.flickr8k_candidates`."""
    candidates = [Path(root).expanduser().resolve()] if root is not None else paths.flickr8k_candidates()
    for candidate in candidates:
        if find_layout(candidate) is not None:
            return candidate
    looked = "\n  ".join(str(c) for c in candidates)
    raise DatasetError(
        "Flickr8k not found. Looked for `Images/` + `Flickr8k.token.txt` (prepared copy) or "
        f"`Flicker8k_Dataset/` + `Flickr8k_text/{TOKEN_FILE}` (original archives) in:\n  {looked}\n{HOW_TO_GET}"
    )


def read_text_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file (a leading byte-order mark is dropped), or a
    :class:`DatasetError` naming the file and line of the first byte that is not UTF-8."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc}. {HOW_TO_GET}") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DatasetError(
            f"{path}:{line}: byte {raw[exc.start : exc.start + 1]!r} is not UTF-8 text: "
            f"re-save the file as UTF-8, or get a clean copy. {HOW_TO_GET}"
        ) from None
    return [line.rstrip("\r") for line in text.split("\n")]


def parse_token_file(path: Path) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Parse ``<image>#<n>\\t<caption>`` lines.

    Returns the captions by image (ordered by n) and the errata met (image -> reason). Raises
    :class:`DatasetError` listing every malformed line as ``file:line``.
    """
    by_image: dict[str, dict[int, str]] = {}
    problems, errata = [], {}
    for lineno, line in enumerate(read_text_lines(path), start=1):
        if not line.strip():
            continue
        match = _TOKEN_LINE.match(line)
        if match is None:
            problems.append(f"{path}:{lineno}: expected '<image>#<n><TAB><caption>', got {line[:80]!r}")
            continue
        image, n, text = match["image"], int(match["n"]), match["text"].strip()
        if image in KNOWN_ERRATA:
            errata[image] = KNOWN_ERRATA[image]
            continue
        if not text:
            problems.append(f"{path}:{lineno}: empty caption for {image}#{n}")
        elif n >= CAPTIONS_PER_IMAGE:
            problems.append(f"{path}:{lineno}: caption number {n} out of range 0-{CAPTIONS_PER_IMAGE - 1}")
        elif n in by_image.setdefault(image, {}):
            problems.append(f"{path}:{lineno}: duplicate caption id {image}#{n}")
        else:
            by_image[image][n] = text
    for image, caps in by_image.items():
        if sorted(caps) != list(range(CAPTIONS_PER_IMAGE)):
            problems.append(f"{path}: {image} has captions {sorted(caps)}, expected 0-{CAPTIONS_PER_IMAGE - 1}")
    if problems:
        raise DatasetError(f"{len(problems)} problem(s) in the caption file:\n  " + "\n  ".join(problems[:20]))
    return {image: [caps[n] for n in sorted(caps)] for image, caps in by_image.items()}, errata


def parse_split_file(path: Path) -> list[str]:
    """One image name per line; blank lines ignored, duplicates are an error."""
    if not path.is_file():
        raise DatasetError(f"missing split file {path}.\n{HOW_TO_GET}")
    images = [line.strip() for line in read_text_lines(path) if line.strip()]
    seen, dupes = set(), []
    for image in images:
        (dupes.append(image) if image in seen else seen.add(image))
    if dupes:
        raise DatasetError(f"{path}: images listed twice: {dupes[:10]}")
    return images


def load_flickr8k(root: str | Path | None = None, *, expected: ExpectedCounts | None = FLICKR8K) -> Flickr8k:
    """Find, parse and validate Flickr8k.

    Parameters
    ----------
    root : path, optional
        the Flickr8k folder; by default ``FLICKR8K_DIR``, ``data/flickr8k/``, ``../shared/flickr8k/``.
    expected : ExpectedCounts or None
        sizes to enforce (the standard ones by default); None checks structure only (for tests).
    """
    folder = locate_flickr8k(root)
    image_dir, text_dir = find_layout(folder)
    captions, errata = parse_token_file(text_dir / TOKEN_FILE)
    for image, reason in errata.items():
        warnings.warn(f"{text_dir / TOKEN_FILE}: skipped the captions of {image} ({reason})", stacklevel=2)
    splits = {name: parse_split_file(text_dir / filename) for name, filename in SPLIT_FILES.items()}
    data = Flickr8k(folder, image_dir, text_dir, captions, splits, errata)
    _validate(data, expected)
    return data


def _validate(data: Flickr8k, expected: ExpectedCounts | None) -> None:
    problems = []
    if expected is not None:
        if len(data.captions) != expected.images:
            problems.append(
                f"{data.text_dir / TOKEN_FILE}: captions for {len(data.captions)} images, expected {expected.images}"
            )
        for name, size in expected.splits:
            if len(data.split_images[name]) != size:
                problems.append(
                    f"{data.text_dir / SPLIT_FILES[name]}: {len(data.split_images[name])} images, expected {size}"
                )
    names = list(data.split_images)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = set(data.split_images[a]) & set(data.split_images[b])
            if shared:
                problems.append(f"splits {a} and {b} share {len(shared)} image(s), e.g. {sorted(shared)[:3]}")
    for name, images in data.split_images.items():
        uncaptioned = [im for im in images if im not in data.captions]
        if uncaptioned:
            problems.append(
                f"{data.text_dir / SPLIT_FILES[name]}: {len(uncaptioned)} image(s) without captions, e.g. {uncaptioned[:3]}"
            )
    on_disk = {p.name for p in data.image_dir.iterdir()}
    missing = [im for im in data.captions if im not in on_disk]
    if missing:
        problems.append(f"{data.image_dir}: {len(missing)} captioned image(s) missing, e.g. {missing[:3]}")
    if problems:
        raise DatasetError("Flickr8k failed validation:\n  " + "\n  ".join(problems) + "\n" + HOW_TO_GET)
