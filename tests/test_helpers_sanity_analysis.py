"""The small shared helpers, the sanity checks' pair sampling and cosines, and the table helpers of
analysis: each on hand-made inputs whose answer is known."""

import hashlib

import numpy as np
import pytest
from flickr_retrieval import analysis, helpers, sanity


def test_rows_are_normalised_and_a_zero_row_stays_zero():
    x = np.array([[3.0, 4.0], [0.0, 0.0]])
    assert helpers.l2_normalise(x).tolist() == [[0.6, 0.8], [0.0, 0.0]]


def test_auc_is_chance_for_equal_scores_and_one_for_separated_ones():
    assert helpers.auc([1, 1], [1, 1]) == 0.5
    assert helpers.auc([2, 3], [0, 1]) == 1.0 and helpers.auc([0, 1], [2, 3]) == 0.0


def test_file_hash_matches_hashlib(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 3_000_000)
    assert helpers.sha256_file(path, chunk=1 << 16) == hashlib.sha256(b"x" * 3_000_000).hexdigest()


def test_an_interrupted_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")

    def fail(handle):
        handle.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        helpers.atomic_write(path, fail)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    helpers.atomic_write(path, lambda handle: handle.write(b"new"))
    assert path.read_text() == "new" and oct(path.stat().st_mode & 0o777) == "0o644"


def test_same_and_different_group_pairs():
    groups = np.array([0, 1, 0, 1, 0])
    left, right = sanity.same_group_pairs(groups)
    assert sorted(zip(left.tolist(), right.tolist())) == [(0, 2), (0, 4), (1, 3), (2, 4)]
    left, right = sanity.different_group_pairs(groups, n=200, seed=1)
    assert len(left) == 200 and (groups[left] != groups[right]).all()
    again = sanity.different_group_pairs(groups, n=200, seed=1)
    assert np.array_equal(again[0], left) and np.array_equal(again[1], right)  # seeded


def test_group_cosines_separate_clustered_vectors():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16))
    groups = np.repeat(np.arange(4), 5)
    vectors = centres[groups] + 0.05 * rng.normal(size=(20, 16))
    same, different = sanity.group_cosines(vectors, groups, n_different=500)
    assert len(same) == 4 * 10 and same.min() > 0.9
    assert sanity.separability(same, different) == 1.0
    assert sanity.rowwise_cosine(np.array([[1.0, 0.0]]), np.array([[2.0, 0.0]])).tolist() == [1.0]
    assert sanity.summary(same, different)["ROC AUC"] == 1.0


def test_sentence_relations_are_ordered_when_paraphrases_score_highest():
    import pandas as pd

    relations = ["paraphrase", "related", "unrelated"] * 2
    table = pd.DataFrame({"relation": relations, "cosine": [0.9, 0.5, 0.1, 0.8, 0.6, 0.2]})
    assert sanity.ordered_by_relation(table)
    table.loc[5, "cosine"] = 0.7  # the second group's unrelated sentence above its related one
    assert not sanity.ordered_by_relation(table)
    with pytest.raises(ValueError, match="groups labelled"):
        sanity.ordered_by_relation(table.iloc[[1, 0, 2]])


def test_top_k_and_sigmoid():
    sim = np.array([[0.1, 0.9, 0.5], [0.3, 0.2, 0.1]])
    assert analysis.top_k(sim, [0, 1], k=2).tolist() == [[1, 2], [0, 1]]
    assert analysis.sigmoid(np.array([0.0]))[0] == 0.5
