"""Errors the package raises on purpose, each with a message that says what to do."""

from __future__ import annotations


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights cannot be had here. Never answered by running on random weights."""


class UnreadableImageError(RuntimeError):
    """An image file that PIL cannot decode. The message names the file."""


class CheckpointError(RuntimeError):
    """A checkpoint file that is damaged, from another version, or not what its run describes."""


class RunNameError(ValueError):
    """A run name that is not a plain name, or names no trained run."""
