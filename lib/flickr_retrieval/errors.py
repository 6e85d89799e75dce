"""Errors the package raises on purpose, each with a message that says what to do."""

from __future__ import annotations

import contextlib
import sys


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights cannot be had here. Never answered by running on random weights."""


class UnreadableImageError(RuntimeError):
    """An image file that PIL cannot decode. The message names the file."""


class CheckpointError(RuntimeError):
    """A checkpoint file that is damaged, from another version, or not what its run describes."""


class RunNameError(ValueError):
    """A run name that is not a plain name, or names no trained run."""


class IndexWriteError(RuntimeError):
    """An index that could not be written (a full disk, a read-only cache); the previous one is kept."""


class DatasetError(RuntimeError):
    """Flickr8k is missing, incomplete or malformed. The message says where and how to fix it."""


class QueryError(ValueError):
    """A query or a search parameter that cannot be answered; the message says why."""


class ServeError(RuntimeError):
    """The search page cannot start (its port cannot be bound); the message says what to do."""


@contextlib.contextmanager
def cli_errors(prog: str):
    """For command-line entry points: the package's own errors (and missing or unwritable files)
    become one line on stderr and exit status 2, instead of a traceback."""
    try:
        yield
    except (
        DatasetError,
        WeightsUnavailableError,
        UnreadableImageError,
        CheckpointError,
        RunNameError,
        QueryError,
        IndexWriteError,
        ServeError,
        FileNotFoundError,
        PermissionError,
    ) as exc:
        message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        print(f"{prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
