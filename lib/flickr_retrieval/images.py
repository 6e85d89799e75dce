"""Image loading and preprocessing (report section IV-A): resize to 224x224, ToTensor, normalise;
and the augmented views of an image (:data:`VIEWS`, :data:`VIEW_SETS`): its mirror and zoomed corner
crops, whose features training can draw from (VSE++ trains on 10-crop features)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torchvision import transforms

from .errors import UnreadableImageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ImagePreprocessing:
    """What turns an image file into a network input. Part of every image-feature cache key.

    ``size`` is the square the image is resized to (aspect ratio not kept, as in the report);
    ``mean``/``std`` are the backbone's normalisation; ``hflip`` mirrors the image (used by the sanity
    checks to compare an image with a view of itself).
    """

    size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    hflip: bool = False

    def transform(self, crop: str | None = None) -> transforms.Compose:
        """The transform of the whole image, or (``crop``: one of :data:`CORNERS`) of one corner
        crop: the image resized to ``size / CROP_SCALE`` and the ``size`` square at that corner cut
        out (the 5-crop of ImageNet evaluation without its centre, which the whole image stands for)."""
        if crop is None:
            steps = [transforms.Resize((self.size, self.size), antialias=True)]
        else:
            if crop not in CORNERS:
                raise ValueError(f"crop must be one of {CORNERS}, got {crop!r}")
            big = round(self.size / CROP_SCALE)
            steps = [
                transforms.Resize((big, big), antialias=True),
                transforms.FiveCrop(self.size),
                _Pick(CORNERS.index(crop)),  # FiveCrop gives (tl, tr, bl, br, centre)
            ]
        if self.hflip:
            steps.append(transforms.RandomHorizontalFlip(p=1.0))
        steps += [transforms.ToTensor(), transforms.Normalize(self.mean, self.std)]
        return transforms.Compose(steps)


class _Pick:
    """One element of a tuple (a picklable transform step)."""

    def __init__(self, index: int):
        self.index = index

    def __call__(self, items):
        return items[self.index]


#: The corner crops, in torchvision's ``FiveCrop`` order, and the share of the side each keeps.
CORNERS = ("tl", "tr", "bl", "br")
CROP_SCALE = 0.875  # 224 of 256, as ImageNet's evaluation crops


@dataclass(frozen=True)
class View:
    """One augmented view of an image: a corner crop (or the whole image, ``crop=None``), mirrored
    or not. ``full`` is the image every other notebook uses."""

    name: str
    crop: str | None
    hflip: bool


VIEWS: dict[str, View] = {
    v.name: v for v in [View("full", None, False), View("flip", None, True)] + [View(c, c, False) for c in CORNERS]
}

#: Named sets of views a run trains on (``RunConfig.image_views``); the first is always ``full``.
#: VSE++'s 10 crops (5 crops and their mirrors) would cost 10 extractions; ``crops`` keeps 6 (each
#: extraction of all 8091 images costs about 2.5 min for Lite0 + MobileNetV2 on this 2-core CPU).
VIEW_SETS: dict[str, tuple[str, ...]] = {
    "full": ("full",),
    "flip": ("full", "flip"),
    "crops": tuple(VIEWS),  # the image, its mirror and the four corner crops: 6 views
}


def load_image(path: str | Path) -> Image.Image:
    """Open an image as RGB, or raise :class:`UnreadableImageError` naming the file."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except Exception as exc:  # PIL raises many types for broken files
        raise UnreadableImageError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from exc


class ImageFiles(torch.utils.data.Dataset):
    """Image files as preprocessed tensors, for a DataLoader."""

    def __init__(self, files: list[Path], preprocessing: ImagePreprocessing, crop: str | None = None):
        self.files = list(files)
        self.transform = preprocessing.transform(crop)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(load_image(self.files[i]))
