import numpy as np
from flickr_retrieval.text import HeavyPipeline, clean_caption, heavy_tokens


def test_final_pipeline_keeps_the_sentence_and_drops_markers():
    assert clean_caption("startseq A dog runs on the grass . endseq") == "A dog runs on the grass ."
    assert clean_caption("<start>  Two   children play <end>") == "Two children play"
    assert clean_caption("A restart of the game") == "A restart of the game"  # no partial-word removal


def test_heavy_pipeline_drops_stop_words_punctuation_and_lemmatises():
    assert heavy_tokens("startseq The dogs are running in the snow . endseq") == ["dog", "run", "snow"]


def test_tfidf_vocabulary_is_fitted_on_training_captions_only():
    train = ["a dog runs", "a dog sleeps", "a cat sleeps", "children play football"]
    pipe = HeavyPipeline(vocab_size=3).fit(train)
    assert len(pipe.vocabulary) == 3
    assert "dog" in pipe.vocabulary
    out = pipe.transform(["The dog and the zebra sleep"])
    assert "zebra" not in out[0].split()
    vectors = pipe.tfidf(["a dog runs", "unknown words only"])
    assert vectors.shape == (2, 3) and vectors.dtype == np.float32
    assert not vectors[1].any()  # nothing left of a caption outside the vocabulary
