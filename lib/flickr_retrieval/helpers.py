"""Small helpers that several modules need, each written once: row normalisation, the ROC AUC of
two groups of scores, file hashing, atomic file writes and progress bars. Imports nothing from the
package."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np
from tqdm import tqdm


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Each row of ``x`` divided by its L2 norm (a zero row stays zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """ROC AUC of a score that should be higher on ``positive`` than on ``negative`` (0.5: chance)."""
    from sklearn.metrics import roc_auc_score

    positive, negative = np.asarray(positive), np.asarray(negative)
    labels = np.r_[np.ones(len(positive)), np.zeros(len(negative))]
    return float(roc_auc_score(labels, np.r_[positive, negative]))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(
    path: str | Path, write: Callable[[IO[bytes]], object], suffix: str = ".tmp", mode: int = 0o644
) -> Path:
    """Write ``path`` whole or not at all: ``write(handle)`` fills a temporary file in the same
    folder, which then replaces ``path`` in one rename. On any error (a full disk, Ctrl-C) the
    temporary file is removed and ``path`` is as it was. ``mode``: the new file's permissions (a
    temporary file is private; what it becomes is meant to be read by others too)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def progress(iterable, desc: str, total: int | None = None, unit: str = "it"):
    """A progress bar that stays readable in notebooks and logs (few refreshes)."""
    # disable=None: no bar when the output is not a terminal (notebooks run by papermill, logs), where
    # a bar would only leave a stack of lines; callers print the time a step took once.
    return tqdm(iterable, desc=desc, total=total, unit=unit, mininterval=10.0, ncols=80, disable=None)
