"""Rewrite the README's generated tables from the committed results (flickr_retrieval.standing).

python scripts/readme_tables.py          # rewrite README.md in place
python scripts/readme_tables.py --check  # exit 1 when the README and the results disagree
"""

from __future__ import annotations

import argparse
import sys

from flickr_retrieval import paths, standing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a table differs")
    args = parser.parse_args(argv)
    readme = paths.project_root() / "README.md"
    text = readme.read_text(encoding="utf-8")
    if args.check:
        stale = standing.check(text)
        print("README tables up to date" if not stale else f"README tables out of date: {', '.join(stale)}")
        return 1 if stale else 0
    readme.write_text(standing.render(text), encoding="utf-8")
    print(f"rewrote the generated tables of {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
