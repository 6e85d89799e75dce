"""Download Flickr8k's original archives, unpack them into ``data/flickr8k/`` and validate the result.

    flickr-retrieval-download [--dest data/flickr8k] [--keep-archives]

Needs internet. The archives (about 1.1 GB of images and 2 MB of text) are the ones most tutorials
use; Flickr8k's licence asks that you cite Hodosh, Young & Hockenmaier (2013). After unpacking,
the folder holds ``Flicker8k_Dataset/`` (sic) and ``Flickr8k_text/`` and passes the same validation
as on every load (counts, splits, every image present and readable).
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
import urllib.request
import warnings
import zipfile
from pathlib import Path

from tqdm import tqdm

from . import paths
from .data import FLICKR8K, TOKEN_FILE, DatasetError, ExpectedCounts, load_flickr8k
from .errors import cli_errors

ARCHIVES = {
    "images": "https://github.com/jbrownlee/Datasets/releases/download/Flickr8k/Flickr8k_Dataset.zip",
    "text": "https://github.com/jbrownlee/Datasets/releases/download/Flickr8k/Flickr8k_text.zip",
}
IMAGE_FOLDER, TEXT_FOLDER = "Flicker8k_Dataset", "Flickr8k_text"


#: Seconds a whole archive may take, whatever the per-read timeout: a server that trickles a byte
#: every few seconds never trips a read timeout, and would otherwise hold the download for days.
DEADLINE = 3 * 3600.0


def check_timeout(value) -> float:
    """A timeout in seconds: a finite number above 0 and at most one hour (``ValueError`` otherwise;
    argparse shows its message)."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"--timeout must be a number of seconds, got {value!r}") from None
    if not (math.isfinite(seconds) and 0 < seconds <= 3600):
        raise ValueError(f"--timeout must be more than 0 and at most 3600 seconds, got {value!r}")
    return seconds


def remove_leftovers(dest: Path, older_than: float = 24 * 3600.0) -> list[Path]:
    """Remove staging folders (``.staging-*``) that a killed download left in ``dest`` more than
    ``older_than`` seconds ago (a running download's own folder is newer). Returns what was removed."""
    removed = []
    now = time.time()
    for folder in Path(dest).glob(".staging-*"):
        try:
            if folder.is_dir() and not folder.is_symlink() and now - folder.stat().st_mtime > older_than:
                shutil.rmtree(folder)
                removed.append(folder)
        except OSError:
            continue
    return removed


def fetch(url: str, target: Path, timeout: float = 60.0, deadline: float = DEADLINE) -> Path:
    """Download ``url`` to ``target`` (via a temporary name, so a broken download leaves nothing).

    ``timeout`` bounds the connection and every read: a server that accepts and never answers is an
    error after ``timeout`` seconds, not a silent wait; ``deadline`` bounds the whole download (a
    server that trickles bytes).
    """
    timeout = check_timeout(timeout)
    partial = target.with_suffix(target.suffix + ".part")
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=target.name, mininterval=5.0) as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    bar.update(len(block))
                    if time.monotonic() - started > deadline:
                        raise TimeoutError(f"the whole download took more than {deadline:g} s")
        partial.replace(target)
    except (OSError, ValueError) as exc:  # URLError, timeouts and refused connections are OSErrors
        partial.unlink(missing_ok=True)
        raise DatasetError(
            f"could not download {url} ({type(exc).__name__}: {exc}); this step needs internet "
            f"(each connection and read waits at most {timeout:g} s)"
        ) from exc
    return target


def complete_zip(path: Path) -> bool:
    """True when ``path`` is a zip archive whose every member reads back with its checksum."""
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.testzip() is None
    except (zipfile.BadZipFile, OSError, EOFError):
        return False


def safe_extract(archive: Path, dest: Path) -> None:
    """Unzip, refusing members that would land outside ``dest``; macOS metadata is skipped."""
    dest = dest.resolve()
    with zipfile.ZipFile(archive) as zf:
        for member in zf.infolist():
            if member.filename.startswith("__MACOSX/") or Path(member.filename).name.startswith("._"):
                continue
            target = (dest / member.filename).resolve()
            if dest not in target.parents and target != dest:
                raise DatasetError(f"{archive}: member {member.filename!r} would unpack outside {dest}")
            zf.extract(member, dest)


def _folder_with(root: Path, predicate) -> Path:
    for folder in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
        if predicate(folder):
            return folder
    raise DatasetError(f"unexpected archive content under {root}")


def unpack(images_zip: Path, text_zip: Path, dest: Path) -> None:
    """Unpack both archives into ``dest/Flicker8k_Dataset`` and ``dest/Flickr8k_text`` (a fresh
    folder), whatever folder nesting the archives use."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        tmp = Path(tmp)
        safe_extract(images_zip, tmp / "images")
        safe_extract(text_zip, tmp / "text")
        image_src = _folder_with(tmp / "images", lambda f: any(f.glob("*.jpg")))
        text_src = _folder_with(tmp / "text", lambda f: (f / TOKEN_FILE).is_file())
        for src, name in ((image_src, IMAGE_FOLDER), (text_src, TEXT_FOLDER)):
            if (dest / name).exists():
                raise DatasetError(f"{dest / name} already exists: unpack into an empty folder")
            shutil.move(str(src), str(dest / name))


def download(
    dest: Path | None = None,
    urls: dict[str, str] | None = None,
    keep_archives: bool = False,
    expected: ExpectedCounts | None = FLICKR8K,
    timeout: float = 60.0,
):
    """Download, unpack and validate; returns the loaded :class:`~flickr_retrieval.data.Flickr8k`.

    Everything happens in a staging folder inside ``dest``; the new copy replaces what ``dest`` held
    only after it validated (counts, splits, every image decodes). On any failure ``dest`` is left as
    it was, archives included. An archive already in ``dest`` is reused only when it is a complete
    zip; a damaged one is ignored (and replaced, once the new copy validated, if ``keep_archives``).
    """
    dest = Path(dest) if dest else paths.project_root() / "data" / "flickr8k"
    urls = urls or ARCHIVES
    if set(urls) != {"images", "text"}:
        raise ValueError(f"urls must name 'images' and 'text', got {sorted(urls)}")
    dest.mkdir(parents=True, exist_ok=True)
    timeout = check_timeout(timeout)
    for folder in remove_leftovers(dest):
        print(f"removed {folder.name}, left by a download that was killed", file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".staging-") as staging:
        staging = Path(staging)
        archives, fetched = {}, {}
        for kind, url in urls.items():
            name = Path(urllib.request.url2pathname(url.rsplit("/", 1)[-1])).name or f"{kind}.zip"
            kept = dest / name
            if kept.is_file() and complete_zip(kept):
                archives[kind] = kept
                continue
            if kept.is_file():
                warnings.warn(
                    f"ignoring {kept}: not a complete zip archive (an interrupted download?); downloading it again",
                    stacklevel=2,
                )
            archives[kind] = fetched[kind] = fetch(url, staging / name, timeout)
            if not complete_zip(archives[kind]):
                raise DatasetError(f"{url} did not give a complete zip archive; {dest} is unchanged")
        new = staging / "new"
        unpack(archives["images"], archives["text"], new)
        data = load_flickr8k(new, expected=expected)
        data.verify_images()
        # validated: only now replace what dest held
        for folder in (IMAGE_FOLDER, TEXT_FOLDER):
            if (dest / folder).exists():
                (dest / folder).rename(staging / f"previous-{folder}")
            (new / folder).rename(dest / folder)
        for kind, archive in archives.items():
            if keep_archives and kind in fetched:
                archive.replace(dest / archive.name)
            elif not keep_archives and archive.parent == dest:
                archive.unlink()
    return load_flickr8k(dest, expected=expected)


def _timeout_arg(value: str) -> float:
    try:
        return check_timeout(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Download and validate Flickr8k (needs internet).")
    parser.add_argument("--dest", default=None, help="target folder (default: data/flickr8k)")
    parser.add_argument("--keep-archives", action="store_true", help="keep the downloaded .zip files")
    parser.add_argument(
        "--timeout", type=_timeout_arg, default=60.0, help="seconds to wait for a connection or a read (default 60)"
    )
    args = parser.parse_args(argv)
    with cli_errors("flickr-retrieval-download"):
        data = download(Path(args.dest) if args.dest else None, keep_archives=args.keep_archives, timeout=args.timeout)
        print(f"Flickr8k ready at {data.root}: {data.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
