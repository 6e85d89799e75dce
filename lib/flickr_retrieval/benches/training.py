"""The package's training step against this machine's limits, and the candidate paths for it.

For the study's two model sizes, in each precision: samples per second of :func:`fit.training_step`
(the package's own step, fused Adam, the rand-mask dropout), its FLOP/s as a fraction of this
machine's measured matrix-multiply peak in the same dtype (two threads, or what torch uses), and the
bytes a step moves (weights, their bfloat16 copies, gradients, Adam's state, the activations kept for
the backward pass) as a fraction of the measured memory bandwidth.

FLOPs are counted by torch (:class:`torch.utils.flop_counter.FlopCounterMode`) on a real step;
activation bytes by a saved-tensor hook on a real step; weights, gradients and optimizer state from
the parameter count. Bytes are a model of main-memory traffic that ignores the caches: on a CPU
whose last-level cache holds the weights, the real traffic is lower. The paths the package has
taken, and the candidates measured against it, are timed in interleaved rounds (median round).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

#: The study's model sizes: (text features, image features) of the reference row of 07 (MiniLM,
#: EfficientNet-Lite0 + MobileNetV2) and of the field rows of 10 and 11 (mpnet, four backbones).
SIZES = {"reference (07)": (384, 2560), "field (10, 11)": (768, 5120)}
#: The study's contrastive batch size (the reference recipe R).
BATCH = 256


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of an (n x n) @ (n x n) product in ``dtype`` with torch's threads: the best of
    ``repeats`` after a warm-up (what the machine's matrix kernels reach at a size they like)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(dtype)
    b = torch.randn(n, n, generator=gen).to(dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best


def memory_bandwidth(megabytes: int = 512, repeats: int = 5) -> float:
    """Bytes per second of a large copy (each byte read once and written once, counted twice):
    the best of ``repeats`` after a warm-up, a STREAM-copy-like figure."""
    n = megabytes * 2**20 // 4
    src, dst = torch.ones(n), torch.empty(n)
    dst.copy_(src)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - start)
    return 2.0 * n * 4 / best


@dataclass
class StepSetup:
    """A package training step ready to time: the objective, its optimizer, ``steps`` batches."""

    objective: torch.nn.Module
    optimizer: torch.optim.Optimizer
    batches: list
    bf16: bool

    def run(self) -> float:
        """Seconds for one pass over the batches (training mode), through :func:`fit.training_step`."""
        from ..fit import training_step

        self.objective.train()
        start = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            for batch in self.batches:
                training_step(self.objective, self.optimizer, batch, self.bf16)
        return time.perf_counter() - start


def package_step(
    text_dim: int, image_dim: int, batch: int, steps: int, bf16: bool, *, fused: bool = True, dropout=None
) -> StepSetup:
    """The study's two-branch model with InfoNCE (2048 hidden, 512 out, dropout 0.5) on random
    inputs of the given sizes: ``steps`` batches of ``batch`` captions over 30000 captions and 6000
    images, five captions per image as in the reference recipe. ``fused``: fused Adam (the
    package's) or the per-parameter loop; ``dropout``: a module class to use instead of the
    package's :class:`models.Dropout`."""
    from ..config import RunConfig
    from ..models import ModelSpec, Queries, build_model
    from ..objective import Objective
    from ..sampling import Batch

    config = RunConfig(loss="infonce", negatives="in_batch", batch_size=batch, precision="float32")
    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        objective = Objective(build_model(ModelSpec.from_config(config, text_dim, image_dim)), config)
    if dropout is not None:
        for seq in (objective.model.text_branch, objective.model.image_branch):
            seq[2] = dropout(seq[2].p)
    optimizer = torch.optim.Adam(objective.parameters(), lr=config.lr, fused=fused)
    queries = Queries(torch.randn(30000, text_dim, generator=gen))
    images = torch.randn(6000, image_dim, generator=gen)
    batches = []
    for i in range(steps):
        idx = np.random.default_rng(i).permutation(30000)[:batch]
        batches.append(Batch(queries[idx], torch.from_numpy(idx // 5), images))
    return StepSetup(objective, optimizer, batches, bf16)


def step_counts(setup: StepSetup) -> dict:
    """FLOPs of one step (counted by torch), and the bytes one step moves, by part (a model that
    ignores caches): ``weights`` read in the forward and the backward pass (and, under bfloat16,
    read again to be cast, their copies written and read), ``gradients`` written then read by the
    optimizer, ``optimizer`` Adam's two moments read and written and the weights written, and
    ``activations`` the tensors the backward pass keeps, written then read."""
    from torch.utils.flop_counter import FlopCounterMode

    from ..fit import training_step

    params = sum(p.numel() for p in setup.objective.parameters())
    saved = []

    def pack(tensor):
        saved.append(tensor.numel() * tensor.element_size())
        return tensor

    setup.objective.train()
    with torch.random.fork_rng(devices=[]), FlopCounterMode(display=False) as counter:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            training_step(setup.objective, setup.optimizer, setup.batches[0], setup.bf16)
    weight_bytes = 4 * params
    # float32: read in the forward and the backward pass; bfloat16: read to be cast, the copy written,
    # then read in the forward and the backward pass (2 bytes a weight)
    weights = 2 * weight_bytes if not setup.bf16 else weight_bytes + 3 * 2 * params
    # written, then read by the optimizer; under bfloat16 each is first made in bfloat16 and cast
    gradients = 2 * weight_bytes + (2 * 2 * params if setup.bf16 else 0)
    return {
        "flops": float(counter.get_total_flops()),
        "bytes": {
            "weights": float(weights),
            "gradients": float(gradients),
            "optimizer": float(6 * weight_bytes),  # Adam: read the weights and both moments, write all three
            "activations": float(2 * sum(saved)),
        },
        "parameters": params,
    }


def median_rounds(timers: dict, repeats: int) -> dict[str, float]:
    """Each timer warmed up once, then run ``repeats`` times in interleaved rounds (a slow spell of
    the machine hits every path alike); the median round of each, in seconds."""
    for timer in timers.values():
        timer()
    times = {label: [] for label in timers}
    for _ in range(repeats):
        for label, timer in timers.items():
            times[label].append(timer())
    return {label: float(np.median(t)) for label, t in times.items()}


def training_limits(
    steps: int = 20,
    repeats: int = 3,
    batch: int = BATCH,
    sizes: dict | None = None,
    peak_size: int = 2048,
    bandwidth_mb: int = 512,
) -> list[dict]:
    """One row per model size and precision: samples/s of the package's step, its FLOP/s against the
    measured matmul peak of the same dtype (``peak_size`` square matrices), its bytes per step
    against the measured bandwidth (a copy of ``bandwidth_mb``). Small sizes make a quick check
    (where bfloat16 is emulated, a 2048 product in it takes seconds)."""
    sizes = SIZES if sizes is None else sizes
    peaks = {"float32": matmul_peak(torch.float32, peak_size), "bfloat16": matmul_peak(torch.bfloat16, peak_size)}
    bandwidth = memory_bandwidth(bandwidth_mb)
    rows = []
    for label, (text_dim, image_dim) in sizes.items():
        setups = {p: package_step(text_dim, image_dim, batch, steps, p == "bfloat16") for p in ("float32", "bfloat16")}
        seconds = median_rounds({p: s.run for p, s in setups.items()}, repeats)
        for precision, setup in setups.items():
            counts = step_counts(setup)
            steps_per_s = steps / seconds[precision]
            moved = sum(counts["bytes"].values())
            rows.append(
                {
                    "model": f"{label}: {text_dim}+{image_dim} inputs, batch {batch}",
                    "precision": precision,
                    "samples/s": steps_per_s * batch,
                    "GFLOP/step": counts["flops"] / 1e9,
                    "GFLOP/s": counts["flops"] * steps_per_s / 1e9,
                    "peak GFLOP/s": peaks[precision] / 1e9,
                    "of peak": counts["flops"] * steps_per_s / peaks[precision],
                    "MB/step": {k: v / 1e6 for k, v in counts["bytes"].items()},
                    "GB/s": moved * steps_per_s / 1e9,
                    "bandwidth GB/s": bandwidth / 1e9,
                    "of bandwidth": moved * steps_per_s / bandwidth,
                }
            )
    return rows


def format_limits(rows: list[dict]) -> list[str]:
    """The rows of :func:`training_limits` as printed lines."""
    lines = [
        f"{'training step':<46}{'precision':<10}{'samples/s':>10}{'GFLOP/s':>9}{'of peak':>9}{'MB/step':>9}"
        f"{'GB/s':>7}{'of bw':>7}  (MB/step: weights + gradients + optimizer + activations)"
    ]
    for r in rows:
        mb = r["MB/step"]
        lines.append(
            f"{r['model']:<46}{r['precision']:<10}{r['samples/s']:>10.0f}{r['GFLOP/s']:>9.0f}{r['of peak']:>9.0%}"
            f"{sum(mb.values()):>9.0f}{r['GB/s']:>7.1f}{r['of bandwidth']:>7.0%}  "
            f"({mb['weights']:.0f} + {mb['gradients']:.0f} + {mb['optimizer']:.0f} + {mb['activations']:.0f}; "
            f"peak {r['peak GFLOP/s']:.0f} GFLOP/s, bandwidth {r['bandwidth GB/s']:.1f} GB/s)"
        )
    return lines
