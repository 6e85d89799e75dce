"""Image loading and preprocessing (report section IV-A): resize to 224x224, ToTensor, normalise."""

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

    def transform(self) -> transforms.Compose:
        steps = [transforms.Resize((self.size, self.size), antialias=True)]
        if self.hflip:
            steps.append(transforms.RandomHorizontalFlip(p=1.0))
        steps += [transforms.ToTensor(), transforms.Normalize(self.mean, self.std)]
        return transforms.Compose(steps)


def load_image(path: str | Path) -> Image.Image:
    """Open an image as RGB, or raise :class:`UnreadableImageError` naming the file."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except Exception as exc:  # PIL raises many types for broken files
        raise UnreadableImageError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from exc


class ImageFiles(torch.utils.data.Dataset):
    """Image files as preprocessed tensors, for a DataLoader."""

    def __init__(self, files: list[Path], preprocessing: ImagePreprocessing):
        self.files = list(files)
        self.transform = preprocessing.transform()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(load_image(self.files[i]))
