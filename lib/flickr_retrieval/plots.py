"""Figures. Each function draws and returns a matplotlib Figure; :func:`save` writes it to figures/."""

from __future__ import annotations

import functools
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from . import paths
from .images import load_image
from .metrics import dev_selection_score


def styled(draw):
    """Draw inside the study's seaborn style, without changing matplotlib's global settings
    (importing this module or drawing a figure leaves a user's own theme alone)."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        with sns.axes_style("whitegrid"), sns.plotting_context("notebook"):
            return draw(*args, **kwargs)

    return wrapper


def save(fig: plt.Figure, name: str) -> Path:
    """Write ``figures/<name>.png`` and return its path."""
    path = paths.figures_dir() / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


@styled
def caption_lengths(lengths_by_split: dict[str, np.ndarray]) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for name, lengths in lengths_by_split.items():
        sns.histplot(lengths, discrete=True, stat="percent", element="step", fill=False, label=name, ax=ax)
    ax.set(xlabel="caption length (words)", ylabel="% of captions", title="Caption lengths by split")
    ax.legend()
    return fig


@styled
def image_grid(
    paths_: list[Path],
    titles: list[str],
    ncols: int = 4,
    width: float = 16,
    wrap: int = 48,
    marks: list[bool] | None = None,
) -> plt.Figure:
    """Images with wrapped titles; ``marks`` draws a green frame around the True ones."""
    nrows = int(np.ceil(len(paths_) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, width / ncols * nrows * 1.35), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for k, (path, title) in enumerate(zip(paths_, titles)):
        ax = axes.ravel()[k]
        ax.imshow(load_image(path))
        ax.set_title("\n".join(textwrap.fill(line, wrap) for line in title.split("\n")), fontsize=8, loc="left")
        if marks is not None and marks[k]:
            ax.axis("on")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_edgecolor("tab:green")
                spine.set_linewidth(4)
    fig.tight_layout()
    return fig


@styled
def cosine_histograms(
    panels: dict[str, tuple[np.ndarray, np.ndarray]], labels=("same image", "different images"), title: str = ""
) -> plt.Figure:
    """One panel per feature set: histograms of 'same' and 'different' cosines, AUC in the title."""
    from .sanity import separability

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    for ax, (name, (same, different)) in zip(axes[0], panels.items()):
        bins = np.linspace(min(same.min(), different.min()), max(same.max(), different.max()), 60)
        ax.hist(different, bins=bins, density=True, alpha=0.6, label=labels[1])
        ax.hist(same, bins=bins, density=True, alpha=0.6, label=labels[0])
        ax.set(title=f"{name}\nROC AUC {separability(same, different):.3f}", xlabel="cosine similarity")
        ax.title.set_fontsize(10)
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


@styled
def prediction_histograms(panels: dict[str, tuple[np.ndarray, np.ndarray]]) -> plt.Figure:
    """Pair-classifier outputs on matched and random pairs, one panel per variant."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.0), squeeze=False, sharey=False)
    bins = np.linspace(0, 1, 41)
    for ax, (name, (matched, random)) in zip(axes[0], panels.items()):
        ax.hist(random, bins=bins, alpha=0.6, density=True, label="random pairs")
        ax.hist(matched, bins=bins, alpha=0.6, density=True, label="matched pairs")
        ax.set(title="\n".join(textwrap.wrap(name, 34)), xlabel="predicted similarity")
        ax.title.set_fontsize(9)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig


@styled
def training_curves(histories: dict[str, list[dict]], best_epochs: dict[str, int] | None = None) -> plt.Figure:
    """Training loss, dev t2i R@K and dev median rank per epoch, one line per run; dots at the
    restored epoch."""
    fig, (ax_loss, ax_r, ax_rank) = plt.subplots(1, 3, figsize=(15, 3.6))
    for k, (name, history) in enumerate(histories.items()):
        colour = f"C{k}"
        epochs = [h["epoch"] for h in history]
        ax_loss.plot(epochs, [h["loss"] for h in history], color=colour, label=name)
        for key, style in (("dev_R@1", ":"), ("dev_R@5", "--"), ("dev_R@10", "-")):
            ax_r.plot(epochs, [h[key] for h in history], style, color=colour, label=f"{name} {key[4:]}")
        if all("dev_medr" in h for h in history):
            ax_rank.plot(epochs, [h["dev_medr"] for h in history], color=colour, label=name)
        if best_epochs:
            best = best_epochs[name]
            kept = next(h for h in history if h["epoch"] == best)  # histories of a fine-tuning start at epoch 0
            ax_r.plot([best], [kept["dev_R@10"]], "o", color=colour)
            if "dev_medr" in kept:
                ax_rank.plot([best], [kept["dev_medr"]], "o", color=colour)
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="Training loss")
    ax_r.set(
        xlabel="epoch", ylabel="dev text-to-image recall (%)", title="Dev R@1 (dotted), R@5 (dashed), R@10 (solid)"
    )
    ax_rank.set(xlabel="epoch", ylabel="dev median rank (lower is better)", title="Dev median rank")
    ax_loss.legend(fontsize=8)
    fig.tight_layout()
    return fig


@styled
def dev_criterion_curves(groups: dict[str, list[tuple[list[dict], int]]], title: str = "") -> plt.Figure:
    """Dev t2i R@1+R@5+R@10 per epoch: one colour per group (a recipe), one line per run (a seed) of
    ``(history, kept epoch)``, a dot at each run's kept epoch."""
    fig, ax = plt.subplots(figsize=(8, 4))
    for k, (name, runs) in enumerate(groups.items()):
        for n, (history, kept) in enumerate(runs):
            epochs = [h["epoch"] for h in history]
            values = [dev_selection_score(h) for h in history]
            ax.plot(epochs, values, color=f"C{k}", alpha=0.8, label=name if n == 0 else None)
            ax.plot([kept], [values[epochs.index(kept)]], "o", color=f"C{k}")
    ax.set(xlabel="epoch", ylabel="dev R@1+R@5+R@10", title=title or "Dev criterion per epoch (dots: kept epochs)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


@styled
def lenient_curves(thresholds: np.ndarray, curves: dict[str, dict[str, np.ndarray]], k: int = 10) -> plt.Figure:
    """Lenient R@K of each run (solid) and of a random ranking (dashed), over thresholds."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for i, (name, curve) in enumerate(curves.items()):
        ax.plot(thresholds, curve["model"], color=f"C{i}", label=f"{name}: model")
        ax.plot(thresholds, curve["chance"], "--", color=f"C{i}", label=f"{name}: random ranking")
    ax.set(
        xlabel="CNN-feature cosine threshold",
        ylabel=f"lenient R@{k} (%)",
        title=f"The report's lenient criterion at K={k}",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


@styled
def bar_table(table, value: str, error: tuple[str, str] | None = None, title: str = "") -> plt.Figure:
    """Horizontal bars of one column of a results DataFrame (index = row names), with intervals
    (``error``: the columns of their low and high ends; each must contain the bar's value)."""
    fig, ax = plt.subplots(figsize=(8, 0.38 * len(table) + 1.2))
    y = np.arange(len(table))[::-1]
    xerr = None
    if error is not None:
        xerr = np.vstack([table[value] - table[error[0]], table[error[1]] - table[value]])
        if (xerr < -0.01).any():
            raise ValueError(
                f"an interval of {error} does not contain its row's {value}: {table.index[(xerr < -0.01).any(axis=0)].tolist()}"
            )
        xerr = np.clip(xerr, 0.0, None)  # a mean rounded to 0.01 may sit a hair outside the range it came from
    ax.barh(y, table[value], xerr=xerr, color="tab:blue", alpha=0.8, capsize=3)
    ax.set_yticks(y, table.index)
    ax.set(xlabel=value, title=title)
    fig.tight_layout()
    return fig
