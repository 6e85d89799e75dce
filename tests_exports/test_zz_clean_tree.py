"""Last of the test run: it wrote nothing into the working tree (exports went to RCP217_RESULTS)."""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_test_run_left_git_status_as_it_found_it():
    before_file = os.environ.get("RCP217_GIT_STATUS_BEFORE")
    if not before_file or not Path(before_file).is_file() or not (ROOT / ".git").exists():
        pytest.skip("not run through ./run_tests.sh in a git checkout")
    now = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert now == Path(before_file).read_text(), f"the test run changed the working tree:\n{now}"
