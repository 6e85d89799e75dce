"""A photo folder as the indexer sees it: every entry under it, and what changed since the last index.

:func:`walk_folder` lists each entry with the reason it is not read, if any (links, special files,
what the system refuses, the tool's own cache), walking a tree of any depth without recursion;
:func:`scan_folder` decides from the file system and the previous index alone which files must be
read again. Reads no file's bytes.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .. import paths


def _walk(root, onerror):
    """``os.walk(root, followlinks=False, onerror=onerror)``, top-down, without recursion: a folder
    tree 1100 levels deep (Python 3.11's os.walk recurses per level) is walked like any other."""
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as entries:
                dirs, files = [], []
                for entry in entries:
                    try:
                        is_dir = entry.is_dir(follow_symlinks=False) or (entry.is_symlink() and entry.is_dir())
                    except OSError:
                        is_dir = False
                    (dirs if is_dir else files).append(entry.name)
        except OSError as exc:
            onerror(exc)
            continue
        yield folder, dirs, files
        stack.extend(os.path.join(folder, d) for d in reversed(dirs) if not os.path.islink(os.path.join(folder, d)))


def own_folders() -> list[Path]:
    """The folders this tool writes (the feature cache, which holds the collections' manifests,
    thumbnails and vectors): never indexed as photos, never a change to watch."""
    return [paths.cache_dir().expanduser().resolve()]


def _inside(path: str | Path, folders: list[Path]) -> bool:
    path = Path(os.path.abspath(path))
    return any(path == f or f in path.parents for f in folders)


def walk_folder(root: Path) -> list[tuple[str, Path, str | None]]:
    """Every entry under ``root`` (recursively, links not followed), sorted: ``(relative name, path,
    None)`` for a regular file to read, or a reason why it is not read. Nothing is skipped in silence:
    links (to a file or a folder, inside or outside, dangling, looping) and special files (FIFOs,
    devices, sockets) are listed with their reason, and never opened; an entry the system refuses (a
    path longer than the system allows, a folder that cannot be listed) is listed with the system's
    reason, and the walk goes on. The tool's own cache (:func:`own_folders`), when it lies inside
    ``root``, is listed once and not entered: its thumbnails are not photos."""
    out = []
    own = own_folders()

    def refused(exc: OSError) -> None:
        where = Path(exc.filename) if exc.filename else root
        out.append((_relative(where, root), where, f"cannot be read ({exc.strerror or exc})"))

    for folder, dirs, files in _walk(root, refused):
        base = Path(folder)
        kept = []
        for d in sorted(dirs):
            if _inside(base / d, own):
                out.append((_relative(base / d, root), base / d, "this tool's own cache: not indexed"))
                continue
            try:
                linked = (base / d).is_symlink()
            except OSError as exc:
                out.append((_relative(base / d, root), base / d, f"cannot be read ({exc.strerror})"))
                continue
            if linked:
                out.append(
                    (
                        _relative(base / d, root),
                        base / d,
                        "a link to a folder: not followed (index its target folder itself)",
                    )
                )
            else:
                kept.append(d)
        dirs[:] = kept
        for f in files:
            path = base / f
            relative = _relative(path, root)
            try:
                info = os.lstat(path)
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
            except OSError as exc:
                out.append((relative, path, f"cannot be read ({exc.strerror})"))
    return sorted(out)


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


@dataclass
class Scan:
    """What indexing a folder would read, decided from the file system and the previous index alone."""

    kept: dict[str, dict]  # relative name -> its previous entry (same size and modification time: not read)
    to_read: list[tuple[str, Path]]  # new, changed or undecodable files: read (hashed, embedded if new)
    unreadable: list[dict]  # ``file``, ``reason``: refused by the walk (links, special files, system errors)
    removed: list[str]  # in the previous index, no longer in the folder

    def summary(self) -> str:
        return (
            f"{len(self.kept)} unchanged, {len(self.to_read)} to read (new or changed), {len(self.removed)} removed, "
            f"{len(self.unreadable)} not readable"
        )


def scan_folder(root: Path, previous: dict[str, dict], stores: list) -> Scan:
    """Walk ``root`` (:func:`walk_folder`) against the ``previous`` index's entries: a file whose size
    and modification time are those of its entry, and whose vectors every store holds, is kept as it
    was (the fast path); any other regular file is to be read. Reads no file's bytes."""
    kept, to_read, unreadable, seen = {}, [], [], set()
    for relative, path, reason in walk_folder(root):
        seen.add(relative)
        if reason is not None:
            unreadable.append({"file": relative, "reason": reason})
            continue
        old = previous.get(relative)
        try:
            info = os.stat(path, follow_symlinks=False)
        except OSError as exc:
            unreadable.append({"file": relative, "reason": f"cannot be read ({exc.strerror})"})
            continue
        if (
            old
            and (old["size"], old["mtime_ns"]) == (info.st_size, info.st_mtime_ns)
            and all(old["sha256"] in s for s in stores)
        ):
            kept[relative] = old
        else:
            to_read.append((relative, path))
    return Scan(kept, to_read, unreadable, sorted(set(previous) - seen))
