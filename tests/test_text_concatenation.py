"""Several sentence encoders concatenated (``text_encoder="mpnet+minilm"``): the inputs, the
config's limits, and the search tools' refusal."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TINY, TINY_CONFIG
from flickr_retrieval import features
from flickr_retrieval.config import RunConfig
from flickr_retrieval.data import load_flickr8k
from flickr_retrieval.errors import QueryError
from flickr_retrieval.experiments import complexity
from flickr_retrieval.inputs import FeatureSpace, concatenated


def test_the_caption_inputs_are_each_encoders_features_side_by_side(tiny_root, isolated_cache):
    ds = load_flickr8k(tiny_root, expected=TINY)
    config = RunConfig(**{**TINY_CONFIG, "text_encoder": "minilm+minilm", "feature_norm": "standardize"})
    assert config.text_encoders == ["minilm", "minilm"]
    space = FeatureSpace(config, ds)
    dev = space.split("dev")
    one = features.dataset_caption_features(ds, "minilm").rows(dev.caption_ids)
    assert dev.text.shape == (10, 768)
    single = FeatureSpace(RunConfig(**{**TINY_CONFIG, "feature_norm": "standardize"}), ds).split("dev")
    np.testing.assert_allclose(dev.text[:, :384], single.text, rtol=1e-5, atol=1e-5)  # per dimension: the same
    np.testing.assert_allclose(dev.text[:, 384:], single.text, rtol=1e-5, atol=1e-5)
    assert one.shape == (10, 384)


def test_tables_of_other_ids_are_not_concatenated(tiny_root, isolated_cache):
    ds = load_flickr8k(tiny_root, expected=TINY)
    table = features.dataset_caption_features(ds, "minilm")
    other = features.FeatureTable(table.ids[::-1], table.vectors)
    with pytest.raises(ValueError, match="same ids"):
        concatenated([table, other])


def test_a_concatenation_is_less_simple_cannot_be_fine_tuned_and_is_not_searched(tiny_root, isolated_cache):
    one = RunConfig(**TINY_CONFIG)
    assert complexity(one) < complexity(one.replace(text_encoder="mpnet+minilm"))
    with pytest.raises(ValueError, match="one sentence encoder"):
        RunConfig(text_encoder="mpnet+minilm", finetune_text=True, loss="infonce", negatives="in_batch")
    from flickr_retrieval.checkpoint import TrainedModel
    from flickr_retrieval.models import ModelSpec, build_model
    from flickr_retrieval.objective import Objective
    from flickr_retrieval.search.searcher import Searcher

    config = one.replace(text_encoder="minilm+minilm")
    trained = TrainedModel(config, Objective(build_model(ModelSpec.from_config(config, 768, 1280)), config), [], 0, 0.0)
    ds = load_flickr8k(tiny_root, expected=TINY)
    with pytest.raises(QueryError, match="not searchable"):
        Searcher(trained, "test", data=ds)
