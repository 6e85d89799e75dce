"""Hubness reduction: hand-made matrices with known answers."""

import numpy as np
import pytest
from flickr_retrieval import hubness
from flickr_retrieval.metrics import t2i_ranks


def _hub_case():
    """Three images; image 2 is a hub: it scores a little above the right image for every query,
    and the bank shows it attracts every query."""
    sim = np.array([[0.80, 0.10, 0.85], [0.10, 0.80, 0.85]], dtype=np.float32)  # query 0 -> image 0, 1 -> 1
    bank = np.array([[0.50, 0.10, 0.90], [0.10, 0.50, 0.90], [0.20, 0.20, 0.90]], dtype=np.float32)
    return sim, bank, np.array([0, 1])


def test_the_hub_wins_raw_and_loses_after_each_inductive_method():
    sim, bank, truth = _hub_case()
    assert list(t2i_ranks(sim, truth)) == [2, 2]
    for method, params in (("inverted_softmax", {"beta": 20}), ("querybank_norm", {"beta": 20}), ("csls", {"k": 2})):
        assert list(t2i_ranks(hubness.rescore(method, sim, bank, **params), truth)) == [1, 1], method


def test_inverted_softmax_with_a_bank_that_likes_every_image_alike_keeps_the_ranking():
    rng = np.random.default_rng(0)
    sim = rng.random((6, 4)).astype(np.float32)
    flat = np.full((5, 4), 0.3, dtype=np.float32)
    np.testing.assert_array_equal(
        np.argsort(-hubness.inverted_softmax(sim, flat, 10), axis=1), np.argsort(-sim, axis=1)
    )


def test_querybank_norm_touches_only_queries_whose_best_image_the_bank_activates():
    sim = np.array([[0.9, 0.1, 0.2], [0.1, 0.2, 0.9]], dtype=np.float32)
    bank = np.array([[0.1, 0.2, 0.8], [0.0, 0.3, 0.7]], dtype=np.float32)  # activation set: image 2 only
    assert list(hubness.activation_set(bank)) == [False, False, True]
    out = hubness.querybank_normalise(sim, bank, beta=10)
    np.testing.assert_array_equal(out[0], sim[0])  # its best image (0) is not activated: raw scores
    np.testing.assert_allclose(out[1], hubness.inverted_softmax(sim, bank, 10)[1], rtol=1e-6)


def test_csls_query_term_leaves_text_to_image_ranks_unchanged():
    rng = np.random.default_rng(1)
    sim, bank = rng.random((8, 5)).astype(np.float32), rng.random((20, 5)).astype(np.float32)
    caption_image = np.arange(8) % 5
    r_image = np.sort(bank, axis=0)[-3:].mean(axis=0)
    np.testing.assert_array_equal(
        t2i_ranks(hubness.csls(sim, bank, k=3), caption_image), t2i_ranks(sim - r_image[None] / 2, caption_image)
    )


def test_dual_softmax_reads_the_test_queries_so_a_query_changes_another_ones_scores():
    sim, _, _ = _hub_case()
    more = np.vstack([sim, [[0.0, 0.0, 0.99]]]).astype(np.float32)
    assert not np.allclose(hubness.dual_softmax(sim, 10)[0], hubness.dual_softmax(more, 10)[0])
    bank = np.array([[0.2, 0.3, 0.4]], dtype=np.float32)  # an inductive method: a query alone decides its row
    np.testing.assert_allclose(hubness.inverted_softmax(sim, bank, 10)[0], hubness.inverted_softmax(more, bank, 10)[0])


def test_tune_picks_on_the_matrices_it_is_given_and_reports_every_candidate():
    """A large beta divides by each image's single best bank score: one bank query that loves the
    right image then sinks it; a small beta divides by a softer mean and keeps it first."""
    sim, truth = np.array([[0.80, 0.10, 0.85]], dtype=np.float32), np.array([0])
    bank = np.array([[0.95, 0.1, 0.9], [0.1, 0.5, 0.9], [0.1, 0.2, 0.9]], dtype=np.float32)
    grid = [{"beta": 100}, {"beta": 1}]
    assert t2i_ranks(hubness.inverted_softmax(sim, bank, 100), truth)[0] == 2
    chosen, scores = hubness.tune("inverted_softmax", [sim], [bank], truth, grid)
    assert chosen == {"beta": 1} and scores[repr({"beta": 1})] > scores[repr({"beta": 100})]


def test_bad_inputs_are_refused():
    sim, bank, _ = _hub_case()
    with pytest.raises(ValueError, match="same images"):
        hubness.inverted_softmax(sim, bank[:, :2], 10)
    with pytest.raises(ValueError, match="positive"):
        hubness.inverted_softmax(sim, bank, 0)
    with pytest.raises(ValueError, match="k must be"):
        hubness.csls(sim, bank, k=10)
    with pytest.raises(ValueError, match="finite"):
        hubness.inverted_softmax(sim * np.nan, bank, 10)
    with pytest.raises(ValueError, match="unknown method"):
        hubness.rescore("dual", sim, bank)
