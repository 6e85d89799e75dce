"""The study's protocol (flickr_retrieval.protocol): decisions read dev only; families are adjusted;
the A/A check, heterogeneity and ensembles against their members."""

import numpy as np
import pytest
from flickr_retrieval import metrics, protocol, verdicts
from flickr_retrieval.config import RunConfig
from flickr_retrieval.experiments import Experiment, RowSpec
from flickr_retrieval.records import Run, Sampling

N_IMAGES, PER_IMAGE = 200, 5
CAPTION_IMAGE = np.repeat(np.arange(N_IMAGES), PER_IMAGE)


def synthetic_ranks(strength: float, seed: int, salt: int) -> np.ndarray:
    """Ranks of 1000 captions among 200 images: better (smaller) with ``strength``, seeded."""
    rng = np.random.default_rng([seed, salt])
    scores = rng.normal(size=len(CAPTION_IMAGE)) + strength
    return np.clip(np.ceil(np.exp(3.0 - scores)), 1, N_IMAGES).astype(np.int64)


class SyntheticStudy(Experiment):
    """An Experiment whose runs are drawn, not trained: each row's dev and test ranks follow its
    config's learning rate (a stand-in for its quality) and the seed. ``test_salt`` permutes what
    the test ranks are (another draw); ``dev_salt`` likewise for dev. Its dev similarity matrices and
    query banks are drawn from the run's quality and seed, on dev only."""

    def __init__(self, test_salt: int = 0, dev_salt: int = 0):
        super().__init__(data=None, sampling=Sampling("all"), offset=0)
        self.test_salt, self.dev_salt = test_salt, dev_salt

    def caption_image(self, split: str = "test") -> np.ndarray:
        return CAPTION_IMAGE

    def _train_now(self, spec: RowSpec, seed: int) -> Run:
        strength = 100 * spec.config.lr
        config = spec.config.replace(seed=seed)
        test = synthetic_ranks(strength, seed, 1000 + self.test_salt)
        test = np.random.default_rng([seed, self.test_salt]).permutation(test) if self.test_salt else test
        dev = synthetic_ranks(strength, seed, 2000 + self.dev_salt)
        summary = metrics.summarize_ranks(dev)
        run = Run(
            config,
            {"t2i": test, "i2t": test[:N_IMAGES], "lenient": test},
            [{"epoch": 1, **{f"dev_{k}": v for k, v in summary.items()}}],
            1,
            1.0,
            dev_ranks=dev,
        )
        run.result = {"strict": {"t2i": metrics.summarize_ranks(test)}}
        return run

    def dev_similarity(self, run: Run) -> np.ndarray:
        return noisy_similarity(200 * run.config.lr, 7 + run.seed)

    def bank_matrices(self, run: Run, split: str):
        if split != "dev":
            raise ValueError(f"the synthetic study has a bank on dev only, not on {split}")
        rng = np.random.default_rng(run.seed)
        return self.dev_similarity(run), rng.normal(size=(300, N_IMAGES))


def decisions(study: SyntheticStudy) -> dict:
    """Run a small study the way the notebooks do; return every decision it made."""
    base = RunConfig(name="base", lr=0.010, loss="infonce", negatives="in_batch")
    study.run(RowSpec("A", "base", None, "-", base), (0, 1, 2), quiet=True)
    for row_id, lr in (("B", 0.0104), ("C", 0.0108), ("D", 0.0109), ("E", 0.0107)):  # close to A and to each other
        study.run(RowSpec(row_id, row_id, "A", "lr", base.replace(name=row_id, lr=lr)), (0, 1, 2), quiet=True)
    said = study.settle(((0, 1, 2), (0, 1, 2, 3, 4, 5)))
    selection = study.selection()
    chosen = study.rows[selection["chosen"]]
    return {
        "seeds": {i: r.seeds for i, r in study.rows.items()},
        "settled": [line.split(":")[0] for line in said],
        "chosen": selection["chosen"],
        "tied": selection["within_tolerance"],
        "ensemble members": [(chosen.spec.id, s) for s in chosen.seeds],
    }


def test_permuting_the_test_ranks_changes_no_decision():
    """Which rows get more seeds, the dev choice, its ties and the ensemble's members read dev only:
    the same study with other test ranks decides everything the same way; with other dev ranks it
    does not (the check can fail)."""
    reference = decisions(SyntheticStudy())
    assert reference["settled"], "the synthetic study must have close calls for the check to mean something"
    for salt in (1, 2, 3):
        assert decisions(SyntheticStudy(test_salt=salt)) == reference
    assert any(decisions(SyntheticStudy(dev_salt=salt)) != reference for salt in (1, 2, 3))


def test_holm_adjusts_step_down_and_keeps_the_order():
    adjusted = protocol.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.5})
    assert adjusted == pytest.approx({"a": 0.04, "c": 0.09, "b": 0.09, "d": 0.5})
    assert protocol.holm({"x": 0.6, "y": 0.7}) == pytest.approx({"x": 1.0, "y": 1.0})


def test_adjusted_verdicts_are_weaker_or_equal_and_follow_the_sign():
    def comparison(diff, lo, hi, df=20.0):
        c = {"diff": diff, "ci95": (lo, hi), "df": df, "verdict": verdicts.verdict(lo, hi)}
        return {**c, "p": protocol.p_value(c)}

    family = {"up": comparison(3.0, 0.2, 5.8), "down": comparison(-9.0, -12.0, -6.0), "flat": comparison(0.5, -1, 2)}
    out = protocol.adjust(family)
    assert out["down"]["verdict_adjusted"] == "hurts" and out["flat"]["verdict_adjusted"] == "no measurable difference"
    assert out["up"]["verdict"] == "helps" and out["up"]["verdict_adjusted"] == "no measurable difference"
    assert all(out[k]["p_adjusted"] >= out[k]["p"] for k in out)
    # a p-value read off an interval that ends at 0 is 0.05
    assert protocol.p_value({"diff": 1.0, "ci95": (0.0, 2.0), "df": 30.0}) == pytest.approx(0.05, abs=1e-9)


def test_the_a_a_check_finds_about_five_percent_false_positives_on_pure_noise():
    rng = np.random.default_rng(0)
    ranks = {
        f"row{i}": {s: np.clip(rng.geometric(0.08, size=len(CAPTION_IMAGE)), 1, N_IMAGES) for s in range(6)}
        for i in range(200)
    }
    aa = protocol.aa_check(ranks, CAPTION_IMAGE, (0, 1, 2), (3, 4, 5))
    assert aa["checked"] == 200 and aa["rate"] < 0.12


def test_heterogeneity_uses_training_noise_only():
    first = {"diff": 2.0, "seed_sd": 1.0, "seeds": 3}
    second = {"diff": 2.1, "seed_sd": 1.0, "seeds": 3}
    h = protocol.heterogeneity(first, second)
    assert h["delta"] == pytest.approx(0.1) and h["se"] == pytest.approx(np.sqrt(2 / 3)) and abs(h["z"]) < 1
    assert abs(protocol.heterogeneity(first, {**second, "diff": 6.0})["z"]) > 2


def test_an_ensemble_equal_to_its_members_gains_nothing_and_a_better_one_gains():
    member = synthetic_ranks(1.0, 0, 1)
    same = protocol.ensemble_gain(member, [member, member], CAPTION_IMAGE)
    assert same["diff"] == 0 and same["verdict"] == "no measurable difference"
    better = protocol.ensemble_gain(np.maximum(member // 2, 1), [member, member], CAPTION_IMAGE)
    assert better["diff"] > 0 and better["verdict"] == "helps" and 0 <= better["p"] < 0.05


def test_choose_ties_to_the_simplest_within_the_tolerance():
    scores = {"simple": [140.0, 141.0, 139.0], "complex": [141.0, 142.0, 140.0], "bad": [120.0, 121.0, 119.0]}
    out = protocol.choose(scores, {"simple": (0,), "complex": (1,), "bad": (0,)})
    assert out["chosen"] == "simple" and out["within_tolerance"] == ["simple", "complex"]
    assert protocol.choose(scores, {"simple": (0,), "complex": (1,), "bad": (0,)}, tolerance=0.1)["chosen"] == "complex"


def noisy_similarity(signal: float, seed: int) -> np.ndarray:
    """(captions x images) scores: each caption's own image raised by ``signal``, plus seeded noise."""
    rng = np.random.default_rng(seed)
    sim = rng.normal(size=(len(CAPTION_IMAGE), N_IMAGES))
    sim[np.arange(len(CAPTION_IMAGE)), CAPTION_IMAGE] += signal
    return sim


def test_select_members_adds_what_raises_dev_and_leaves_out_noise():
    pool = {"a": noisy_similarity(2.0, 1), "b": noisy_similarity(2.0, 2), "noise": noisy_similarity(0.0, 3)}
    out = protocol.select_members(pool, CAPTION_IMAGE)
    assert out["members"][0] in ("a", "b") and set(out["members"]) == {"a", "b"}  # independent noise: both add
    assert all(later > earlier for earlier, later in zip(out["dev_criterion"], out["dev_criterion"][1:]))
    assert out["alone"]["noise"] < out["alone"]["a"]
    # the criterion it reports is the criterion of the members' mean, computed the long way
    mean = np.mean([pool[i] for i in out["members"]], axis=0)
    assert out["dev_criterion"][-1] == pytest.approx(verdicts.hits(metrics.t2i_ranks(mean, CAPTION_IMAGE)).mean())
    assert protocol.select_members(pool, CAPTION_IMAGE, max_members=1)["members"] == [out["members"][0]]
    # a copy of a member adds nothing: selection stops (without replacement, ties do not count)
    assert protocol.select_members({"a": pool["a"], "a again": pool["a"].copy()}, CAPTION_IMAGE)["members"] == ["a"]


def test_select_members_refuses_mismatched_candidates():
    with pytest.raises(ValueError, match="shape"):
        protocol.select_members({"a": np.zeros((10, 4)), "b": np.zeros((10, 5))}, np.arange(10) % 4)
    with pytest.raises(ValueError, match="no candidate"):
        protocol.select_members({}, CAPTION_IMAGE)


class SealedRead(AssertionError):
    """A decision read a test rank."""


class Sealed:
    """Stands where a run's test ranks (or test results) would be: any read raises."""

    def _raise(self, *args, **kwargs):
        raise SealedRead("a decision read the test split")

    __array__ = __getitem__ = __len__ = __iter__ = __contains__ = __float__ = _raise
    keys = values = items = get = _raise


class SealedStudy(SyntheticStudy):
    """SyntheticStudy whose runs carry no readable test rank or test result: only dev can be read."""

    def _train_now(self, spec: RowSpec, seed: int) -> Run:
        run = super()._train_now(spec, seed)
        run.ranks = {key: Sealed() for key in ("t2i", "i2t", "lenient")}
        run.result = Sealed()
        return run


def every_decision(study: SyntheticStudy) -> dict:
    """Every decision path of the study's protocol, on one study: more seeds (settle), the dev choice
    (selection), ensemble members chosen on dev (select_members over the study's dev similarities),
    a re-scoring's parameters (hubness.tune over the dev banks), and the choice between an ensemble
    and it re-scored (their dev criteria)."""
    from flickr_retrieval import hubness

    out = decisions(study)
    pool = {f"{i} {s}": r.runs[s] for i, r in study.rows.items() for s in r.seeds}
    dev_caption_image = study.caption_image("dev")
    picked = protocol.select_members({k: study.dev_similarity(run) for k, run in pool.items()}, dev_caption_image)
    out["pool members"] = picked["members"]
    chosen = study.rows[out["chosen"]]
    banks = [study.bank_matrices(chosen.runs[s], "dev") for s in chosen.seeds]
    grid = [{"beta": 1.0}, {"beta": 20.0}]
    params, _ = hubness.tune("inverted_softmax", [b[0] for b in banks], [b[1] for b in banks], dev_caption_image, grid)
    out["rescoring"] = params
    members = [pool[k] for k in picked["members"]]
    plain = np.mean([study.dev_similarity(m) for m in members], axis=0)
    bank = np.mean([study.bank_matrices(m, "dev")[1] for m in members], axis=0)
    scores = {
        "ensemble": metrics.selection_score(metrics.summarize_ranks(metrics.t2i_ranks(plain, dev_caption_image))),
        "ensemble re-scored": metrics.selection_score(
            metrics.summarize_ranks(
                metrics.t2i_ranks(hubness.rescore("inverted_softmax", plain, bank, **params), dev_caption_image)
            )
        ),
    }
    out["ensemble choice"] = max(scores, key=scores.get)
    return out


def test_every_decision_path_runs_with_the_test_split_sealed():
    """The decision phase with every test rank and test result unreadable (a read raises): settle,
    the dev choice, members chosen on dev, a re-scoring's tuning, and the ensemble choice all run and
    decide exactly what they decide when test can be read."""
    sealed = every_decision(SealedStudy())
    assert sealed == every_decision(SyntheticStudy())
    assert sealed["settled"] and len(sealed["pool members"]) >= 1
    with pytest.raises(SealedRead):  # the seal holds: reporting a row reads test
        SealedStudy().run(RowSpec("A", "a", None, "-", RunConfig(name="a", lr=0.01)), (0,), quiet=False)


def test_a_declared_member_not_measured_counts_at_p_one():
    def comparison(diff, lo, hi, df=20.0):
        c = {"diff": diff, "ci95": (lo, hi), "df": df, "verdict": verdicts.verdict(lo, hi)}
        return {**c, "p": protocol.p_value(c)}

    measured = {"a": comparison(3.0, 0.6, 5.4), "b": comparison(-9.0, -12.0, -6.0)}
    alone = protocol.adjust(measured)
    declared = protocol.adjust(measured, declared=("a", "b", "c", "d"))
    assert set(declared) == {"a", "b"} and declared["a"]["family_size"] == 4 and alone["a"]["family_size"] == 2
    assert declared["a"]["p_adjusted"] > alone["a"]["p_adjusted"]
    assert alone["a"]["verdict_adjusted"] == "helps" and declared["a"]["verdict_adjusted"] == "no measurable difference"
