"""The exact scan and the approximate (FAISS) index behind search."""

import numpy as np
import pytest
from flickr_retrieval.search.vector_index import (
    APPROXIMATE_FROM,
    TARGET_RECALL,
    ApproximateIndex,
    ExactIndex,
    build_index,
    exact_scores,
    recall_at,
    top_k,
)


def _clustered(n, dim=32, centres=200, seed=0):
    """Unit vectors around a few hundred centres (as image embeddings are), and queries near them."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((centres, dim)).astype(np.float32)
    pick = base[rng.integers(0, centres, n)] + 0.4 * rng.standard_normal((n, dim)).astype(np.float32)
    query = base[rng.integers(0, centres, 600)] + 0.6 * rng.standard_normal((600, dim)).astype(np.float32)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    return unit(pick), unit(query)


def test_top_k_ranks_as_a_stable_sort_ties_included():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 5, size=(20, 50)).astype(np.float32)  # many ties
    for k in (1, 7, 50):
        values, columns = top_k(scores, k)
        expected = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        assert (columns == expected).all()
        assert (values == np.take_along_axis(scores, expected, 1)).all()
    with pytest.raises(ValueError, match="k must be"):
        top_k(scores, 51)


@pytest.mark.parametrize("similarity", ["cosine", "dot", "euclidean"])
def test_the_exact_index_ranks_every_image_by_the_models_similarity(similarity):
    import torch
    from flickr_retrieval.models import pairwise_similarity

    vectors, queries = _clustered(500)
    scores, rows = ExactIndex(vectors, similarity).search(queries[:5], 10)
    expected = pairwise_similarity(torch.from_numpy(queries[:5]), torch.from_numpy(vectors), similarity).numpy()
    assert (rows == np.argsort(-expected, axis=1, kind="stable")[:, :10]).all()
    assert np.allclose(scores, np.take_along_axis(expected, rows, 1))


@pytest.mark.parametrize("similarity", ["cosine", "euclidean"])
def test_the_approximate_index_measures_its_recall_and_keeps_it_on_unseen_queries(similarity):
    vectors, queries = _clustered(20_000)
    index = ApproximateIndex(vectors, similarity, queries[:300])
    assert (
        index.cells == round(np.sqrt(len(vectors))) and 1 <= index.nprobe < index.cells
    )  # scans a part, not everything
    assert index.recall_at_10 >= 0.995
    exact = ExactIndex(vectors, similarity)
    found, truth = index.search(queries[300:], 10)[1], exact.search(queries[300:], 10)[1]
    assert recall_at(found, truth) >= TARGET_RECALL
    # the scores are the model's own (euclidean: distances, not FAISS's squared distances)
    scores, rows = index.search(queries[:3], 5)
    assert np.allclose(scores, np.take_along_axis(exact_scores(queries[:3], vectors, similarity), rows, 1), atol=1e-4)
    assert "recall@10" in index.describe() and index.nbytes() >= vectors.nbytes


def test_recall_counts_the_true_neighbours_found():
    assert recall_at(np.array([[1, 2, 3, 4]]), np.array([[4, 3, 9, 8]])) == 0.5


def test_small_collections_are_scanned_exactly_and_large_ones_need_calibration():
    vectors, queries = _clustered(1000)
    assert isinstance(build_index(vectors, "cosine"), ExactIndex)
    assert APPROXIMATE_FROM > 8091  # Flickr8k itself is always scanned exactly
    with pytest.raises(ValueError, match="calibration queries"):
        build_index(vectors, "cosine", approximate_from=100)
    assert isinstance(build_index(vectors, "cosine", queries[:50], approximate_from=100), ApproximateIndex)


def test_bad_vectors_are_refused():
    vectors, _ = _clustered(100)
    bad = vectors.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ApproximateIndex(bad, "cosine", vectors[:5])
    scores, rows = ExactIndex(bad, "cosine").search(vectors[:2], 100)  # a damaged run: its NaN shows, ranked last
    assert rows[0, -1] == 3 and np.isnan(scores[0, -1]) and np.isfinite(scores[:, :-1]).all()
    with pytest.raises(ValueError, match="width 32"):
        ExactIndex(vectors, "cosine").search(np.zeros((1, 8), np.float32), 3)
    with pytest.raises(ValueError, match="unknown similarity"):
        ExactIndex(vectors, "manhattan")


def test_the_synthetic_collection_of_the_scale_bench_is_unit_vectors_near_real_ones():
    from flickr_retrieval.benches.index import synthetic_images

    real, _ = _clustered(300)
    synthetic = synthetic_images(real, 1000, 0.5, np.random.default_rng(0), chunk=300)
    assert synthetic.shape == (1000, 32) and np.allclose(np.linalg.norm(synthetic, axis=1), 1, atol=1e-5)
    assert (synthetic @ real.T).max(axis=1).mean() > 0.8  # each near one real vector
