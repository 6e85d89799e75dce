"""A small on-disk cache for arrays, keyed by everything that changes them.

Each entry is one ``.npz`` file named ``<kind>-<hash>.npz`` with a readable ``.json`` beside it that
lists the key's parts. Writes go to a temporary file that is renamed into place, so an interrupted
run never leaves a half-written entry that a later run would trust.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import paths
from .helpers import atomic_write


def sha256_lines(lines: list[str]) -> str:
    """Hex SHA-256 of an ordered list of strings (order matters)."""
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def cache_key(parts: dict) -> str:
    """A short stable hash of a JSON-serialisable dict."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:24]


def entry_path(kind: str, parts: dict, folder: Path | None = None) -> Path:
    return (folder or paths.cache_dir()) / f"{kind}-{cache_key(parts)}.npz"


#: Temporary files older than this, beside a cache entry being written, were left by a killed run.
STALE_SECONDS = 24 * 3600.0


def remove_stale_temporaries(folder: Path, older_than: float = STALE_SECONDS) -> list[Path]:
    """Remove ``*.tmp.npz`` files that a killed writer left in ``folder`` more than ``older_than``
    seconds ago (a running writer's own file is newer). Returns what was removed."""
    removed = []
    now = time.time()
    for tmp in Path(folder).glob("*.tmp.npz"):
        try:
            if tmp.is_file() and not tmp.is_symlink() and now - tmp.stat().st_mtime > older_than:
                tmp.unlink()
                removed.append(tmp)
        except OSError:
            continue
    return removed


def save_arrays(path: Path, arrays: dict[str, np.ndarray], parts: dict | None = None) -> None:
    """Write ``arrays`` to ``path`` atomically (temporary file, then rename); stale temporaries of
    killed runs in the same folder are removed first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    atomic_write(path, lambda handle: np.savez(handle, **arrays), suffix=".tmp.npz")
    if parts is not None:
        path.with_suffix(".json").write_text(json.dumps(parts, indent=2, sort_keys=True, default=str) + "\n")


def load_arrays(path: Path, expect: dict[str, tuple[int, ...]] | None = None) -> dict[str, np.ndarray] | None:
    """The arrays stored at ``path``, or None when the entry is absent, unreadable, or not what
    ``expect`` says (array name -> shape): a missing array or a wrong shape is never trusted."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except Exception as exc:  # a damaged file: say so, then recompute
        warnings.warn(
            f"ignoring unreadable cache entry {path} ({type(exc).__name__}: {exc}); recomputing", stacklevel=2
        )
        return None
    for name, shape in (expect or {}).items():
        if name not in arrays:
            warnings.warn(
                f"ignoring cache entry {path}: it has no array {name!r} (it has {sorted(arrays)}); recomputing",
                stacklevel=2,
            )
            return None
        if tuple(arrays[name].shape) != tuple(shape):
            warnings.warn(
                f"ignoring cache entry {path}: {name!r} has shape {arrays[name].shape}, expected {tuple(shape)}; recomputing",
                stacklevel=2,
            )
            return None
        if arrays[name].dtype.kind == "f" and not np.isfinite(arrays[name]).all():
            warnings.warn(
                f"ignoring cache entry {path}: {name!r} holds NaN or infinite values; recomputing", stacklevel=2
            )
            return None
    return arrays


def cached(
    kind: str,
    parts: dict,
    compute: Callable[[], dict[str, np.ndarray]],
    folder: Path | None = None,
    expect: dict[str, tuple[int, ...]] | None = None,
) -> tuple[dict[str, np.ndarray], Path, bool]:
    """Return ``(arrays, path, hit)``: the stored arrays for ``parts``, computing and storing them once.

    ``expect`` (array name -> shape) is checked on what is read and on what ``compute`` returns.
    """
    path = entry_path(kind, parts, folder)
    arrays = load_arrays(path, expect)
    if arrays is not None:
        return arrays, path, True
    arrays = compute()
    for name, shape in (expect or {}).items():
        if name not in arrays or tuple(arrays[name].shape) != tuple(shape):
            raise ValueError(f"computed {kind} arrays do not have the expected {name!r} of shape {tuple(shape)}")
    save_arrays(path, arrays, parts)
    return arrays, path, False
