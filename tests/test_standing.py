"""The README's tables are made from the committed results, and the README says what they say."""

from __future__ import annotations

import pytest
from flickr_retrieval import paths, standing


def test_the_readme_tables_are_those_the_committed_results_give():
    readme = (paths.project_root() / "README.md").read_text(encoding="utf-8")
    assert standing.check(readme) == [], "run: python scripts/readme_tables.py"


def test_a_changed_number_in_a_generated_table_is_caught():
    readme = (paths.project_root() / "README.md").read_text(encoding="utf-8")
    table = standing.test_table()
    row = next(line for line in table.splitlines() if "| 10, TB |" in line)
    tampered = readme.replace(row, row.replace("| 6 |", "| 5 |", 1))
    assert tampered != readme and standing.check(tampered) == ["test"]
    with pytest.raises(ValueError, match="no generated table"):
        standing.check("a README without markers")


def test_costs_count_each_backbone_and_view_once():
    from flickr_retrieval.config import RunConfig

    tb = RunConfig(image_backbone="efficientnet_lite0+mobilenet_v2", loss="infonce", negatives="in_batch")
    six = tb.replace(image_views="crops", test_view="mean")
    assert standing.cnn_passes([tb]) == 2 and standing.cnn_passes([six]) == 12
    assert standing.cnn_passes([tb, six, tb.replace(seed=3)]) == 12  # members share their features
    assert standing.measure("07_improvements", "3").runs == 6
