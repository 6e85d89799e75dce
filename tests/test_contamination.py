"""The contamination measures (flickr_retrieval.contamination) on small known cases."""

import numpy as np
from flickr_retrieval import contamination


def test_sibling_ranks_find_the_nearest_caption_of_the_same_image():
    # two images, two captions each; captions 0 and 1 (image 0) are close, 2 and 3 (image 1) too
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    ranks = contamination.sibling_ranks(vectors, np.array([0, 0, 1, 1]))
    assert ranks.tolist() == [1, 1, 1, 1]
    swapped = contamination.sibling_ranks(vectors, np.array([0, 1, 0, 1]))  # siblings are now the far ones
    assert swapped.tolist() == [3, 2, 3, 2]  # caption 0: both other-image captions are nearer than its sibling
    assert contamination.sibling_retrieval(vectors, np.array([0, 0, 1, 1]))["R@1"] == 100.0


def test_tfidf_and_the_nearest_training_caption():
    test = ["a dog runs", "a cat sleeps"]
    train = ["a dog runs", "two birds fly"]
    vectors = contamination.tfidf_vectors(test + train)
    out = contamination.nearest_train_caption(vectors[:2], vectors[2:], test, train)
    assert out["verbatim in train, %"] == 50.0 and out["nearest cosine > 0.95, %"] == 50.0
