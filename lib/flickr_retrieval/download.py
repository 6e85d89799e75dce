"""Download Flickr8k's original archives, unpack them into ``data/flickr8k/`` and validate the result.

    flickr-retrieval-download [--dest data/flickr8k] [--keep-archives]

Needs internet. The archives (about 1.1 GB of images and 2 MB of text) are the ones most tutorials
use; Flickr8k's licence asks that you cite Hodosh, Young & Hockenmaier (2013). After unpacking,
the folder holds ``Flicker8k_Dataset/`` (sic) and ``Flickr8k_text/`` and passes the same validation
as on every load (counts, splits, every image present and readable).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from . import paths
from .data import FLICKR8K, TOKEN_FILE, DatasetError, ExpectedCounts, load_flickr8k

ARCHIVES = {
    "images": "https://github.com/jbrownlee/Datasets/releases/download/Flickr8k/Flickr8k_Dataset.zip",
    "text": "https://github.com/jbrownlee/Datasets/releases/download/Flickr8k/Flickr8k_text.zip",
}
IMAGE_FOLDER, TEXT_FOLDER = "Flicker8k_Dataset", "Flickr8k_text"


def fetch(url: str, target: Path) -> Path:
    """Download ``url`` to ``target`` (via a temporary name, so a broken download leaves nothing)."""
    partial = target.with_suffix(target.suffix + ".part")
    try:
        with urllib.request.urlopen(url) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=target.name, mininterval=5.0) as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    bar.update(len(block))
        partial.replace(target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise DatasetError(f"could not download {url} ({type(exc).__name__}: {exc}); this step needs internet") from exc
    return target


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
    """Unpack both archives into ``dest/Flicker8k_Dataset`` and ``dest/Flickr8k_text``, whatever
    folder nesting the archives use."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        tmp = Path(tmp)
        safe_extract(images_zip, tmp / "images")
        safe_extract(text_zip, tmp / "text")
        image_src = _folder_with(tmp / "images", lambda f: any(f.glob("*.jpg")))
        text_src = _folder_with(tmp / "text", lambda f: (f / TOKEN_FILE).is_file())
        for src, name in ((image_src, IMAGE_FOLDER), (text_src, TEXT_FOLDER)):
            if (dest / name).exists():
                shutil.rmtree(dest / name)
            shutil.move(str(src), str(dest / name))


def download(dest: Path | None = None, urls: dict[str, str] | None = None, keep_archives: bool = False, expected: ExpectedCounts | None = FLICKR8K):
    """Download, unpack and validate; returns the loaded :class:`~flickr_retrieval.data.Flickr8k`."""
    dest = Path(dest) if dest else paths.project_root() / "data" / "flickr8k"
    urls = urls or ARCHIVES
    dest.mkdir(parents=True, exist_ok=True)
    archives = {kind: dest / Path(url).name for kind, url in urls.items()}
    for kind, url in urls.items():
        if not archives[kind].is_file():
            fetch(url, archives[kind])
    unpack(archives["images"], archives["text"], dest)
    if not keep_archives:
        for archive in archives.values():
            archive.unlink()
    data = load_flickr8k(dest, expected=expected)
    data.verify_images()
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Download and validate Flickr8k (needs internet).")
    parser.add_argument("--dest", default=None, help="target folder (default: data/flickr8k)")
    parser.add_argument("--keep-archives", action="store_true", help="keep the downloaded .zip files")
    args = parser.parse_args(argv)
    data = download(Path(args.dest) if args.dest else None, keep_archives=args.keep_archives)
    print(f"Flickr8k ready at {data.root}: {data.summary()}")


if __name__ == "__main__":
    main()
