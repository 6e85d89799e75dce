"""Distillation: the loss, the config's rules, and a student trained from a registered teacher (its
run-cache key holds the teacher; a missing teacher is an error, never a silent run without one)."""

import dataclasses

import numpy as np
import pytest
import torch
from flickr_retrieval import losses, runs, teacher
from flickr_retrieval.config import RunConfig
from flickr_retrieval.experiments import Experiment, RowSpec
from flickr_retrieval.objective import Objective
from flickr_retrieval.sampling import BatchSampler


def test_the_distillation_loss_is_zero_at_the_teacher_and_pulls_the_student_towards_it():
    torch.manual_seed(0)
    teacher_scores = torch.randn(6, 6)
    assert losses.distillation(teacher_scores, teacher_scores, 0.1).item() == pytest.approx(0.0, abs=1e-6)
    student = torch.zeros(6, 6, requires_grad=True)
    loss = losses.distillation(student, teacher_scores, 0.1)
    loss.backward()
    assert loss.item() > 0
    stepped = student.detach() - 0.01 * student.grad
    assert losses.distillation(stepped, teacher_scores, 0.1) < loss  # a gradient step moves towards the teacher
    # a shift of a whole row or column of the teacher's scores changes nothing (softmaxes are shift-free)
    assert losses.distillation(student.detach(), teacher_scores + 3.0, 0.1).item() == pytest.approx(
        loss.item(), rel=1e-5
    )


def test_the_config_refuses_a_teacher_without_weight_a_weight_without_teacher_and_other_losses():
    base = dict(loss="infonce", negatives="in_batch")
    assert RunConfig(**base, distill_teacher="P", distill_weight=1.0).distill_weight == 1.0
    with pytest.raises(ValueError, match="distill_weight adds"):
        RunConfig(**base, distill_weight=1.0)
    with pytest.raises(ValueError, match="distill_weight is 0"):
        RunConfig(**base, distill_teacher="P")
    with pytest.raises(ValueError, match="distill_weight adds"):
        RunConfig(distill_teacher="P", distill_weight=1.0)  # the report's cosine loss with one negative
    with pytest.raises(ValueError, match="distill_temperature"):
        RunConfig(**base, distill_teacher="P", distill_weight=1.0, distill_temperature=0.0)
    assert "distill_teacher" not in RunConfig(**base).to_dict()  # earlier configs' dicts and keys unchanged


def test_a_student_trains_from_its_registered_teacher_and_its_key_holds_the_teacher(tiny_run):
    data, config, space, feats, trained = tiny_run
    exp = Experiment(data, n_boot=10)
    exp.add(RowSpec("T", "teacher", None, "-", config), trained)
    exp.teachers["T"] = teacher.embeddings(exp, [exp.rows["T"].runs[0]])
    student = config.replace(name="student", max_epochs=1, distill_teacher="T", distill_weight=1.0)
    with pytest.raises(KeyError, match="no teacher 'U'"):
        exp.run(RowSpec("S0", "no such teacher", None, "-", student.replace(distill_teacher="U")))
    row = exp.run(RowSpec("S", "student", None, "-", student), quiet=True)
    assert row.runs[0].config.distill_teacher == "T" and np.isfinite(row.runs[0].dev_score())
    taught = exp._taught(feats["train"], "T")
    other = dataclasses.replace(taught, teacher_text=taught.teacher_text.flip(0))
    key = runs.features_digest({"train": taught, "dev": feats["dev"]})
    assert key != runs.features_digest({"train": other, "dev": feats["dev"]})
    assert key != runs.features_digest(feats)


def test_a_batch_without_teacher_scores_is_refused_by_a_student(tiny_run):
    data, config, space, feats, trained = tiny_run
    student = config.replace(distill_teacher="T", distill_weight=1.0)
    with pytest.raises(ValueError, match="no teacher embeddings"):
        BatchSampler(student, feats["train"])
    batch = next(BatchSampler(config, feats["train"]).epoch(np.random.default_rng(0)))
    with pytest.raises(ValueError, match="no teacher scores"):
        Objective(trained.model, student)(batch)
