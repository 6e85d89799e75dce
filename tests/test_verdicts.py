"""The verdict rule and the seed-and-image interval (flickr_retrieval.verdicts)."""

import numpy as np
import pytest
from flickr_retrieval import verdicts


def test_verdict_at_every_threshold():
    assert verdicts.verdict(0.01, 2.0) == "helps"
    assert verdicts.verdict(0.0, 2.0) == "no measurable difference"  # touching 0 is not excluding it
    assert verdicts.verdict(-2.0, -0.01) == "hurts"
    assert verdicts.verdict(-2.0, 0.0) == "no measurable difference"
    assert verdicts.verdict(-1.0, 1.0) == "no measurable difference"
    with pytest.raises(ValueError):
        verdicts.verdict(1.0, -1.0)


def test_describe_formats_one_comparison():
    assert verdicts.describe({"diff": 1.234, "ci95": (0.3, 2.1), "verdict": "helps"}) == "+1.2 (+0.3 to +2.1): helps"


def test_hits_sum_recalls():
    ranks = np.array([1, 3, 7, 20])
    assert verdicts.hits(ranks).mean() == pytest.approx(25 + 50 + 75)
    assert verdicts.hits(ranks, (1,)).tolist() == [100, 0, 0, 0]


def _ranks(rng, p_hit, caption_image):
    """Ranks that are 1 with probability p_hit[image] (else 50): a model's t2i ranks."""
    return np.where(rng.random(len(caption_image)) < p_hit[caption_image], 1, 50)


def test_seed_paired_interval_covers_the_truth_about_95_percent():
    """Synthetic truth: image difficulty varies, row a adds a known effect to the hit probability,
    every training seed shifts a row's hit probability by a seed effect. Over repeated draws of a
    test set and of seeds, the interval covers the true mean difference about 95% of the time."""
    n_images, n_seeds, effect, seed_sd = 200, 3, 0.03, 0.02
    caption_image = np.repeat(np.arange(n_images), 5)
    covered, reps = 0, 300
    rng = np.random.default_rng(0)
    for _ in range(reps):
        base = rng.uniform(0.1, 0.5, n_images)  # a fresh test set
        ra, rb = [], []
        for _ in range(n_seeds):
            ra.append(_ranks(rng, np.clip(base + effect + rng.normal(0, seed_sd), 0, 1), caption_image))
            rb.append(_ranks(rng, np.clip(base + rng.normal(0, seed_sd), 0, 1), caption_image))
        c = verdicts.seed_paired(ra, rb, caption_image, ks=(1,))
        covered += c["ci95"][0] <= 100 * effect <= c["ci95"][1]
    assert 0.90 <= covered / reps <= 0.995, covered / reps


def test_seed_paired_ignoring_seeds_would_be_too_narrow():
    """With large seed noise and many seeds the interval widens with the seed spread."""
    caption_image = np.repeat(np.arange(100), 5)
    rng = np.random.default_rng(1)
    base = rng.uniform(0.2, 0.4, 100)
    quiet = [_ranks(rng, base, caption_image) for _ in range(4)]
    noisy = [_ranks(rng, np.clip(base + rng.normal(0, 0.1), 0, 1), caption_image) for _ in range(4)]
    ref = [_ranks(rng, base, caption_image) for _ in range(4)]
    a = verdicts.seed_paired(quiet, ref, caption_image, ks=(1,))
    b = verdicts.seed_paired(noisy, ref, caption_image, ks=(1,))
    assert b["seed_sd"] > a["seed_sd"]
    assert b["ci95"][1] - b["ci95"][0] > a["ci95"][1] - a["ci95"][0]


def test_seed_paired_one_seed_needs_a_pooled_spread():
    caption_image = np.repeat(np.arange(50), 5)
    a, b = np.ones(250, int), np.full(250, 50)
    with pytest.raises(ValueError, match="seed_sd"):
        verdicts.seed_paired([a], [b], caption_image)
    c = verdicts.seed_paired([a], [b], caption_image, ks=(1,), seed_sd=1.0)
    assert c["diff"] == 100 and c["verdict"] == "helps" and c["seeds"] == 1


def test_seed_paired_checks_its_inputs():
    caption_image = np.repeat(np.arange(10), 5)
    with pytest.raises(ValueError):
        verdicts.seed_paired([np.ones(50)], [np.ones(50), np.ones(50)], caption_image)
    with pytest.raises(ValueError):
        verdicts.seed_paired([np.ones(49)], [np.ones(49)], caption_image, seed_sd=1.0)


def test_identical_rows_make_no_measurable_difference():
    caption_image = np.repeat(np.arange(20), 5)
    r = [np.arange(100) % 7 + 1 for _ in range(3)]
    c = verdicts.seed_paired(r, r, caption_image)
    assert c["diff"] == 0 and c["verdict"] == "no measurable difference"


def test_pooled_sd_and_close_calls():
    sd, df = verdicts.pooled_sd([[1.0, 3.0], [10.0], [4.0, 6.0, 8.0]])
    assert df == 3 and sd == pytest.approx(np.sqrt((2 + 8) / 3))
    with pytest.raises(ValueError):
        verdicts.pooled_sd([[1.0], [2.0]])
    assert verdicts.needs_more_seeds({"ci95": (0.5, 3.0)}, margin=1.5)
    assert not verdicts.needs_more_seeds({"ci95": (2.0, 5.0)}, margin=1.5)
    assert verdicts.needs_more_seeds({"ci95": (-4.0, 5.0)}, margin=1.5)
    assert not verdicts.needs_more_seeds({"ci95": (-9.0, -1.6)}, margin=1.5)
    # a row that ranks exactly as its parent on every seed: nothing more seeds could settle
    same = np.array([1, 3, 12, 2, 1, 50, 7, 1, 2, 9])
    identical = verdicts.seed_paired([same, same], [same, same], np.repeat(np.arange(2), 5))
    assert identical["ci95"] == (0.0, 0.0) and not verdicts.needs_more_seeds(identical, margin=1.5)
    assert verdicts.needs_more_seeds(
        {"ci95": (0.0, 0.0)}, margin=1.5
    )  # a zero-width interval of another origin still asks


def test_claim_helpers():
    assert verdicts.comparison_claim({"verdict": "hurts"}, "confirmed", "refuted", "partly") == "refuted"
    assert (
        verdicts.comparison_claim({"verdict": "no measurable difference"}, "confirmed", "refuted", "partly") == "partly"
    )
