"""Watch mode: a collection's folder indexed again after every settled burst of changes."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import QueryError
from .collection import Collection, IndexReport
from .folder_scan import _inside, own_folders


class _Changed:
    """A watchdog handler that only remembers when the folder last changed (outside ``ignore``: the
    tool's own writes, which indexing makes, are not changes of the folder)."""

    def __init__(self, ignore: list[Path] | None = None):
        self.last: float | None = None
        self.lock = threading.Lock()
        self.ignore = list(ignore or [])

    def dispatch(self, event) -> None:
        if event.event_type in ("opened", "closed_no_write"):  # reading a file changes nothing
            return
        touched = [p for p in (event.src_path, getattr(event, "dest_path", "")) if p]
        if touched and all(_inside(os.fsdecode(p), self.ignore) for p in touched):
            return
        with self.lock:
            self.last = time.monotonic()

    def settled(self, settle_s: float) -> bool:
        """True (once) when the folder changed and has been quiet for ``settle_s``."""
        with self.lock:
            if self.last is not None and time.monotonic() - self.last >= settle_s:
                self.last = None
                return True
        return False


def watch_folder(
    folder: str | Path,
    name: str,
    backbones: list[str],
    *,
    settle_s: float = 2.0,
    stop: threading.Event | None = None,
    on_update: Callable[[IndexReport], None] | None = None,
    poll: bool = False,
    duplicates: bool = False,
) -> IndexReport:
    """Index ``folder`` as collection ``name``, then index it again after every change until
    ``stop`` is set (or Ctrl-C). ``on_update`` receives each run's report (the first included).
    Returns the last report.

    The folder is watched with ``watchdog`` (inotify on Linux, FSEvents on macOS; ``poll=True``
    polls). After a burst of changes settles (``settle_s`` without a new event), the incremental
    index runs again, with its guarantees: a file moved or copied is found by the hash of its bytes
    and costs no embedding, a removed file is dropped, an interrupted update keeps the previous index
    and the vectors it finished. A search that loads the collection afterwards sees the new index."""
    from watchdog.observers import Observer
    from watchdog.observers.polling import PollingObserver

    stop = stop or threading.Event()
    changed = _Changed(own_folders())
    observer = PollingObserver(timeout=0.5) if poll else Observer()
    observer.schedule(changed, str(Path(folder).expanduser().resolve()), recursive=True)
    observer.start()  # before the first index: a change made while it runs is caught too
    try:
        report = Collection.index(folder, name, backbones, duplicates=duplicates)
        if on_update:
            on_update(report)
        while not stop.wait(0.1):
            if changed.settled(settle_s):
                try:
                    report = Collection.index(folder, name, backbones, duplicates=duplicates)
                except QueryError as exc:
                    if "being indexed by another process" not in str(exc):
                        raise
                    with changed.lock:  # another indexer holds the collection: try again once it settles
                        changed.last = time.monotonic()
                    continue
                if on_update:
                    on_update(report)
        return report
    finally:
        observer.stop()
        observer.join()
