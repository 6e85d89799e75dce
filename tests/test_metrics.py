import numpy as np
import pytest
from flickr_retrieval import metrics, verdicts

# 4 captions x 3 images; captions 0,1 describe image 0, caption 2 image 1, caption 3 image 2.
S = np.array(
    [
        [0.9, 0.1, 0.2],  # own image first -> rank 1
        [0.5, 0.7, 0.6],  # own image third -> rank 3
        [0.3, 0.3, 0.9],  # own image (1) tied with image 0, below image 2 -> rank 3 (ties count against)
        [0.0, 0.4, 0.4],  # own image (2) tied with image 1 -> rank 2
    ]
)
OWN = np.array([0, 0, 1, 2])


def test_t2i_ranks_by_hand_with_ties():
    assert metrics.t2i_ranks(S, OWN).tolist() == [1, 3, 3, 2]


def test_i2t_ranks_take_the_best_caption_and_ignore_other_positives():
    # image 0: best own caption is 0 (0.9), nothing beats it -> 1
    # image 1: own caption 2 scores 0.3; captions 1 (0.7) and 3 (0.4) beat it -> 3
    # image 2: own caption 3 scores 0.4; captions 0 (0.2) no, 1 (0.6) and 2 (0.9) yes -> 3
    assert metrics.i2t_ranks(S, OWN).tolist() == [1, 3, 3]


def test_constant_scores_get_the_worst_rank():
    flat = np.zeros((4, 3))
    assert metrics.t2i_ranks(flat, OWN).tolist() == [3, 3, 3, 3]
    assert metrics.summarize_ranks(metrics.t2i_ranks(flat, OWN))["R@1"] == 0.0


def test_summary_recall_and_median_rank():
    out = metrics.summarize_ranks(np.array([1, 3, 3, 2]), ks=(1, 2, 5))
    assert out == {"R@1": 25.0, "R@2": 50.0, "R@5": 100.0, "medr": 2.0, "meanr": 2.25}
    # medr is the floor of the median, as VSE++ and open_clip compute it
    assert metrics.summarize_ranks(np.array([1, 2, 3, 4]))["medr"] == 2.0


def test_ranks_match_a_loop_over_argsort_without_ties():
    rng = np.random.default_rng(0)
    sim = rng.normal(size=(50, 20))
    own = rng.integers(0, 20, size=50)
    expected = [1 + int(np.where(np.argsort(-row) == o)[0][0]) for row, o in zip(sim, own)]
    assert metrics.t2i_ranks(sim, own).tolist() == expected


def test_perfect_similarity_gives_full_recall_both_ways():
    own = np.repeat(np.arange(10), 5)
    sim = np.eye(10)[own]
    r = metrics.retrieval_metrics(sim, own, n_boot=50)
    assert r["t2i"]["R@1"] == 100.0 and r["i2t"]["R@1"] == 100.0
    assert r["t2i"]["medr"] == 1.0 and r["t2i"]["ci95"]["R@1"] == (100.0, 100.0)


def test_bootstrap_interval_contains_the_estimate_and_is_seeded():
    ranks = np.random.default_rng(1).integers(1, 30, size=500)
    a = metrics.bootstrap_recall(ranks, seed=3)
    b = metrics.bootstrap_recall(ranks, seed=3)
    assert a == b
    point = metrics.summarize_ranks(ranks)
    for k in ("R@1", "R@5", "R@10"):
        assert a[k][0] <= point[k] <= a[k][1]
        assert a[k][1] - a[k][0] > 0


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError):
        metrics.t2i_ranks(S, OWN[:3])
    with pytest.raises(ValueError):
        metrics.t2i_ranks(S, np.array([0, 0, 1, 3]))
    bad = S.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError):
        metrics.t2i_ranks(bad, OWN)


def test_lenient_counts_similar_images_as_found():
    # image 1 and 2 are near-duplicates in CNN space, image 0 is far from both
    cnn = np.array([[1.0, 0.0], [0.0, 1.0], [0.1, 1.0]])
    cos = metrics.cosine_matrix(cnn)
    # caption 2 (own image 1) ranks image 2 first: strict rank 3, lenient rank 1 (image 2 is acceptable)
    strict = metrics.summarize_ranks(metrics.t2i_ranks(S, OWN))
    lenient = metrics.lenient_recall(S, OWN, cos, threshold=0.7, ks=(1, 5, 10))
    assert strict["R@1"] == 25.0
    assert lenient["R@1"] == 75.0  # captions 0, 2 and 3 (images 1 and 2 stand in for each other)
    # with a threshold above every cosine it is the strict criterion
    assert metrics.lenient_recall(S, OWN, cos, threshold=1.01)["R@1"] == strict["R@1"]


def test_lenient_chance_is_exact():
    # N = 4 images, each caption has m acceptable images; chance at K = 1 - C(N-m, K) / C(N, K)
    own = np.array([0, 1])
    cos = np.array([[1.0, 0.9, 0.0, 0.0], [0.9, 1.0, 0.0, 0.0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
    chance = metrics.lenient_chance(own, cos, threshold=0.7, ks=(1, 2))
    assert chance["R@1"] == pytest.approx(50.0)  # m = 2 of 4
    assert chance["R@2"] == pytest.approx(100 * (1 - 1 / 6))  # C(2,2)/C(4,2) = 1/6
    # and a simulation of random rankings agrees
    rng = np.random.default_rng(0)
    sims = rng.random((20000, 4))
    hits = metrics.lenient_recall(sims, np.zeros(20000, dtype=int), cos, threshold=0.7, ks=(1, 2))
    assert hits["R@1"] == pytest.approx(50.0, abs=1.5)
    assert hits["R@2"] == pytest.approx(100 * 5 / 6, abs=1.5)


def test_paired_bootstrap_resamples_images_with_their_captions():
    caption_image = np.repeat(np.arange(50), 5)
    a = np.ones(250, dtype=int)  # model a finds every caption's image at rank 1
    b = np.where(caption_image < 25, 1, 7)  # model b misses the captions of half the images
    out = verdicts.paired_bootstrap(a, b, caption_image, k=1, n_boot=500, seed=0)
    assert out["diff"] == pytest.approx(50.0) and out["verdict"] == "helps"
    assert out["ci95"][0] > 30 and out["ci95"][1] <= 70
    same = verdicts.paired_bootstrap(a, a, caption_image)
    assert same == {"diff": 0.0, "ci95": (0.0, 0.0), "verdict": "no measurable difference"}
    assert verdicts.paired_bootstrap(b, a, caption_image)["verdict"] == "hurts"
    # a small, noisy difference is not a verdict
    rng = np.random.default_rng(0)
    c = rng.integers(1, 3, size=250)
    d = c.copy()
    d[:3] = 2
    assert verdicts.paired_bootstrap(c, d, caption_image, n_boot=500)["verdict"] == "no measurable difference"


def test_paired_bootstrap_is_wider_than_a_caption_bootstrap_when_captions_of_an_image_agree():
    """Five captions of one image succeed or fail together: treating them as independent queries
    would understate the uncertainty; resampling images does not."""
    caption_image = np.repeat(np.arange(100), 5)
    rng = np.random.default_rng(1)
    a = np.repeat(rng.integers(1, 3, size=100), 5)
    b = np.ones(500, dtype=int)
    by_image = verdicts.paired_bootstrap(a, b, caption_image, n_boot=2000)
    by_caption = verdicts.paired_bootstrap(a, b, np.arange(500), n_boot=2000)
    assert (by_image["ci95"][1] - by_image["ci95"][0]) > 1.5 * (by_caption["ci95"][1] - by_caption["ci95"][0])


def test_ties_count_against_the_model_or_half_on_request():
    from flickr_retrieval.metrics import t2i_ranks

    sim = np.array([[0.5, 0.5, 0.5, 0.1], [0.9, 0.2, 0.2, 0.2]])  # caption 0: its image ties with two others
    caption_image = np.array([0, 1])
    assert t2i_ranks(sim, caption_image).tolist() == [3, 4]
    assert t2i_ranks(sim, caption_image, ties="mean").tolist() == [2.0, 3.0]
    with pytest.raises(ValueError, match="ties"):
        t2i_ranks(sim, caption_image, ties="best")
