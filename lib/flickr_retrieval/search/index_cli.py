"""The indexing commands: ``flickr-retrieval-index FOLDER --name NAME`` (once, or ``--watch``) and
``flickr-retrieval-duplicates NAME`` (the groups of near-duplicate photos of a collection)."""

from __future__ import annotations

import argparse
import contextlib
import errno
import signal
import sys
import time

from ..backbones import BACKBONES
from ..errors import IndexWriteError, QueryError, cli_errors
from .collection import Collection, IndexReport


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Index a folder of your own images, to search it with a trained run.")
    parser.add_argument("folder", help="a folder of images (searched recursively)")
    parser.add_argument("--name", required=True, help="the collection's name (letters, digits, . _ + = -)")
    parser.add_argument(
        "--run",
        default=None,
        help="embed with this trained run's image backbone(s) (default: distilled if notebook 19 made it, "
        "field_best if 10 did, else best from 07, else quickstart: 07's recipe, trained by the first "
        "flickr-retrieval-index)",
    )
    parser.add_argument(
        "--backbones", nargs="+", choices=list(BACKBONES), help="embed with these backbones instead of --run's"
    )
    parser.add_argument(
        "--no-duplicates",
        action="store_true",
        help="do not group near-duplicate photos (grouping calibrates a threshold on Flickr8k once per backbone)",
    )
    parser.add_argument(
        "--watch",
        action="store_true",
        help="keep the index current: index again after every change of the folder, until Ctrl-C",
    )
    args = parser.parse_args(argv)
    if hasattr(signal, "SIGXFSZ"):  # past a file size limit (ulimit -f) a write fails with an error, not a kill
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    with cli_errors("flickr-retrieval-index"), _write_errors():
        if args.backbones:
            backbones = args.backbones
        else:
            from .. import quickstart
            from ..results import checkpoint_path, default_run, load_run

            run = args.run or default_run()
            if run == quickstart.NAME and not checkpoint_path(run).is_file():  # a fresh clone: no model yet
                quickstart.train(say=lambda line: print(line, flush=True))
            backbones = list(load_run(run).config.backbones)
        if args.watch:

            def said(report: IndexReport) -> None:
                print(time.strftime("%H:%M:%S"), "\n".join(report.lines()), flush=True)

            print(f"watching {args.folder} for {args.name!r} (Ctrl-C to stop)", flush=True)
            try:
                from .watch import watch_folder

                watch_folder(args.folder, args.name, backbones, on_update=said, duplicates=not args.no_duplicates)
            except KeyboardInterrupt:
                print("stopped; the index is as of the last update", file=sys.stderr)
            return 0
        report = Collection.index(
            args.folder, args.name, backbones, show_progress=True, duplicates=not args.no_duplicates
        )
        print("\n".join(report.lines()))
        print(f'search it: flickr-retrieval-search "a dog on the beach" --collection {report.name}')
    return 0


@contextlib.contextmanager
def _write_errors():
    """A write the system refuses for want of room (a file size limit, a full disk, a quota) becomes
    :class:`IndexWriteError`: one line, and the previous index kept (it is replaced only at the end)."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.EFBIG, errno.ENOSPC, errno.EDQUOT):
            raise
        raise IndexWriteError(
            f"could not write the index ({exc.strerror}: a file size limit such as ulimit -f, a full disk or a "
            "quota); the previous index is kept"
        ) from None


def duplicates_main(argv: list[str] | None = None) -> int:
    """``flickr-retrieval-duplicates NAME``: the groups of near-duplicate photos of a collection."""
    parser = argparse.ArgumentParser(description="List the groups of near-duplicate photos of an indexed collection.")
    parser.add_argument("name", help="a collection indexed with flickr-retrieval-index")
    args = parser.parse_args(argv)
    with cli_errors("flickr-retrieval-duplicates"):
        collection = Collection.open(args.name)
        if collection.duplicate_groups is None:
            raise QueryError(
                f"collection {args.name!r} was indexed without grouping near-duplicates: index it again "
                "(without --no-duplicates)"
            )
        print(collection.duplicates_said)
        for n, group in enumerate(collection.duplicate_groups, 1):
            print(f"group {n}: {len(group)} photos")
            for image_id in group:
                print(f"  {collection.files[collection.ids.index(image_id)]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
