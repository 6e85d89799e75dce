"""The committed hold-out log, as CI checks it: every read declared, made after its declaration was
committed, once per pipeline (a read made again says why), its ranks those it logged, its numbers
those its ranks give, and its models' test records committed beside it."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from flickr_retrieval import holdout, metrics, paths

ROOT = paths.project_root()
LOG = ROOT / "results" / "holdout" / holdout.LOG_FILE


def committed_reads() -> list[dict]:
    if not LOG.is_file():
        return []
    return [json.loads(line) for line in LOG.read_text(encoding="utf-8").splitlines() if line.strip()]


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)


def test_the_holdout_list_follows_its_rule():
    from flickr_retrieval.data import load_flickr8k

    data = load_flickr8k()
    listed = holdout.committed_list(data)
    assert len(listed) == holdout.SIZE and set(listed) <= set(data.split_images["train"])
    assert not set(listed) & set(data.split_images["dev"]) and not set(listed) & set(data.split_images["test"])


@pytest.mark.parametrize("entry", committed_reads(), ids=lambda e: f"read{e['read']}-{e['pipeline']}")
def test_each_logged_read_is_declared_committed_after_its_declaration_and_reproducible(entry):
    declaration = holdout.load_declaration(entry["declaration"])
    assert entry["pipeline"] in declaration.pipelines
    # the declaration's commit is an ancestor of the commit the read ran on (declared before it)
    assert git("merge-base", "--is-ancestor", entry["declaration_commit"], entry["commit"]).returncode == 0
    ranks = holdout.logged_ranks(entry)  # the digest the log holds
    seeds = sorted(k for k in ranks if k != "members")
    assert seeds == sorted(entry["seeds"])
    for seed in seeds:
        summary = metrics.summarize_ranks(ranks[seed])
        for k in ("R@1", "R@5", "R@10", "medr"):
            assert summary[k] == pytest.approx(entry["t2i"][str(seed)][k])
    assert entry["mean"]["R@1"] == pytest.approx(np.mean([entry["t2i"][str(s)]["R@1"] for s in seeds]))
    # the same models' test records are committed (the run records of the declaration's notebook)
    for seed in seeds:
        assert (ROOT / "results" / "runs" / declaration.notebook / f"{entry['row']}-seed{seed}.npz").is_file()
    assert entry["pipeline"] not in declaration.read_elsewhere  # an earlier declaration's read is never made again


def test_no_pipeline_is_read_twice_without_a_reason():
    seen = {}
    for entry in committed_reads():
        key = (entry["declaration"], entry["pipeline"])
        if key in seen:
            assert entry["again"], f"{key} read again (read {entry['read']}) without a reason"
        seen[key] = entry["read"]
    assert [e["read"] for e in committed_reads()] == list(range(1, len(committed_reads()) + 1))
