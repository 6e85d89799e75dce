"""After nbval has re-executed the notebooks: the exports they wrote against the committed ones.

Run after ``notebooks/`` in the same pytest call (``./run_tests.sh`` does). Training is seeded and
deterministic on a given machine; across CPUs float rounding can move a trained model a little, hence
the stated tolerances.
"""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from flickr_retrieval.experiments import EXPORT_RANK_TOLERANCE, EXPORT_RECALL_TOLERANCE

ROOT = Path(__file__).resolve().parents[1]
# Measured in 07 ("How much does float rounding move a run?"): retraining the reference on features
# changed in their last float32 bit moved its test R@1 by up to 2.2 points (one copy kept epoch 7
# instead of 12) and its median rank by 1; the tolerances leave room above that.
RECALL_TOLERANCE = EXPORT_RECALL_TOLERANCE  # percentage points, strict and lenient R@K
RANK_TOLERANCE = EXPORT_RANK_TOLERANCE  # median rank


def committed_runs() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "results/*/metrics.json"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    return sorted(Path(line).parent.name for line in out.splitlines())


def committed(run: str) -> dict:
    text = subprocess.run(["git", "show", f"HEAD:results/{run}/metrics.json"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return json.loads(text)


RUNS = committed_runs()


def test_there_are_committed_runs_to_check():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: no committed results to compare with")
    assert RUNS, "no results/*/metrics.json committed"


@pytest.mark.parametrize("run", RUNS)
def test_exported_metrics_match_the_committed_ones(run):
    fresh_path = ROOT / "results" / run / "metrics.json"
    fresh, old = json.loads(fresh_path.read_text()), committed(run)
    assert fresh["timings_s"] != old["timings_s"], f"{fresh_path} was not rewritten by this run (did its notebook run?)"
    if fresh.get("row") != old.get("row"):
        # the run chosen on dev may differ only among the rows the committed choice found tied on dev
        tied = old.get("selection", {}).get("within_tolerance", [old.get("row")])
        assert fresh.get("row") in tied, f"{run}: dev chose {fresh.get('row')!r}, the committed choice was {old.get('row')!r} among {tied}"
        return
    assert fresh["config"] == old["config"]
    for direction in ("t2i", "i2t"):
        for k in ("R@1", "R@5", "R@10"):
            assert fresh["test"]["strict"][direction][k] == pytest.approx(old["test"]["strict"][direction][k], abs=RECALL_TOLERANCE), (direction, k)
        assert fresh["test"]["strict"][direction]["medr"] == pytest.approx(old["test"]["strict"][direction]["medr"], abs=RANK_TOLERANCE)
    for k in ("R@1", "R@5", "R@10"):
        assert fresh["test"]["lenient"][k] == pytest.approx(old["test"]["lenient"][k], abs=RECALL_TOLERANCE)
        assert fresh["test"]["chance_lenient"][k] == pytest.approx(old["test"]["chance_lenient"][k], abs=0.5)


@pytest.mark.parametrize("run", RUNS)
def test_similarity_export_is_well_formed(run):
    path = ROOT / "results" / run / "test_similarity.npz"
    assert path.is_file(), f"{path} missing: its notebook should have written it"
    with np.load(path) as npz:
        sim, captions, images = npz["similarity"], npz["caption_ids"], npz["image_ids"]
    assert sim.dtype == np.float32 and sim.shape == (5000, 1000) == (len(captions), len(images))
    assert str(captions[0]).split("#")[0] in set(images.tolist()) and str(images[0]).endswith(".jpg")
    assert np.isfinite(sim).all()


def test_the_improvements_table_matches_the_committed_one():
    """Every row of 07's table (exported with the best run), within the stated tolerances."""
    if "best" not in RUNS:
        pytest.skip("no committed results/best")
    old = committed("best").get("improvements_table")
    fresh = json.loads((ROOT / "results" / "best" / "metrics.json").read_text()).get("improvements_table")
    assert old and fresh, "results/best/metrics.json has no improvements_table"
    assert list(fresh) == list(old), "the rows of 07's table changed"
    same_choice = json.loads((ROOT / "results" / "best" / "metrics.json").read_text()).get("row") == committed("best").get("row")
    for row, values in old.items():
        if row.startswith("E1") and not same_choice:
            continue  # the ensemble of the chosen run's seeds follows the dev choice, which may differ among tied rows
        for key, value in values.items():
            if key in ("R@1", "R@5", "R@10") or key.startswith("lenient"):
                assert fresh[row][key] == pytest.approx(value, abs=RECALL_TOLERANCE), (row, key)
            elif key == "medr":
                assert fresh[row][key] == pytest.approx(value, abs=RANK_TOLERANCE), (row, key)
