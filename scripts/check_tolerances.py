"""Would another draw of every training pass the regression checks? A check of the tolerances on
real runs, without training: for every row of 07 trained with several seeds, each other seed's run
stands in for the first seed's re-run (what a new CPU or RCP217_SEED_OFFSET produces), and its test
numbers are compared with the committed first seed's within :func:`regression.tolerance`, as
``tests_exports`` compares a single run, and as the table compares a row's mean when one of its
seeds is replaced.

    .venv/bin/python scripts/check_tolerances.py        # reads results/runs/07_improvements and results/best
"""

import json
import sys
from itertools import combinations

import numpy as np
from flickr_retrieval import metrics, paths, regression
from flickr_retrieval.records import RunRecord

ROOT = paths.project_root()


def main() -> int:
    best = json.loads((ROOT / "results" / "best" / "metrics.json").read_text())
    sd = {**regression.DEFAULT_SEED_SD, **best.get("seed_spread", {})}
    folder = ROOT / "results" / "runs" / "07_improvements"
    rows: dict[str, dict[int, RunRecord]] = {}
    for path in sorted(folder.glob("*-seed*.npz")):
        row, seed = path.stem.rsplit("-seed", 1)
        with np.load(path, allow_pickle=False) as npz:
            n_captions, n_images = len(npz["ranks_t2i"]), len(npz["ranks_i2t"])
        rows.setdefault(row, {})[int(seed)] = RunRecord.load(path, n_captions, n_images)
    single = table = 0
    failures = []
    for row, runs in rows.items():
        if len(runs) < 2:
            continue
        values = {s: metrics.summarize_ranks(r.ranks["t2i"]) for s, r in runs.items()}
        for a, b in combinations(sorted(values), 2):  # b stands in for a re-run of a
            for k in ("R@1", "R@5", "R@10"):
                single += 1
                problem = regression.check(
                    f"row {row}, seed {b} for seed {a}, {k}",
                    values[b][k],
                    values[a][k],
                    regression.tolerance(values[a][k], sd[k]),
                )
                failures += [problem] if problem else []
            single += 1
            problem = regression.check(
                f"row {row}, seed {b} for seed {a}, medr",
                values[b]["medr"],
                values[a]["medr"],
                regression.rank_tolerance(values[a]["medr"], sd["medr"]),
            )
            failures += [problem] if problem else []
        seeds = sorted(values)
        for k in ("R@1", "R@5", "R@10"):
            mean = np.mean([values[s][k] for s in seeds])
            row_sd = max(sd[k], float(np.std([values[s][k] for s in seeds], ddof=1)))
            for s in seeds:  # seed s replaced by the most distant other seed
                other = max((t for t in seeds if t != s), key=lambda t: abs(values[t][k] - values[s][k]))
                moved = mean + (values[other][k] - values[s][k]) / len(seeds)
                table += 1
                problem = regression.check(
                    f"row {row} mean with seed {s} redrawn as seed {other}, {k}",
                    moved,
                    mean,
                    regression.tolerance(mean, row_sd, len(seeds)),
                )
                failures += [problem] if problem else []
    print(
        f"single runs: {single} comparisons; table means: {table} comparisons; outside the tolerance: {len(failures)}"
    )
    for line in failures:
        print("  " + line)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
