"""The arithmetic training runs in, decided once per process from what this CPU does natively.

``bfloat16`` (autocast of the forward passes; weights, gradients, optimiser and every evaluation
stay float32) only where the CPU has bfloat16 instructions (AVX512-BF16 or AMX) **and** the package's
own training step measured faster in it than in float32; ``float32`` everywhere else. On a CPU
without those instructions bfloat16 is emulated: an AMD EPYC of the Zen 3 generation (AVX2 only)
trained 21 times slower in bfloat16 than in float32.

``RCP217_PRECISION=float32`` or ``bfloat16`` overrides the decision (``auto``, the default, decides).
The measurement (a few seconds, interleaved rounds of the package's training step in each precision)
is made once per machine and kept in the feature cache folder, keyed by the CPU's model name, its
flags, the instruction-set limits set for oneDNN and ATen, the torch version and the thread count, so
that every process on one machine decides the same way.

The decision is a property of the machine, not of a run: a run's config records the precision it
was *trained* in (:class:`~flickr_retrieval.config.RunConfig` resolves ``"auto"`` here), its run-cache
key holds it, and a committed run record (ranks, not weights) is read the same way on any machine.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

PRECISIONS = ("float32", "bfloat16")
VARIABLE = "RCP217_PRECISION"
#: bfloat16 is adopted only when the training step is at least this much faster in it.
ADOPTION_SPEEDUP = 1.15
#: CPU flags (as /proc/cpuinfo names them) that give bfloat16 arithmetic in hardware.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
#: oneDNN ISA limits (``ONEDNN_MAX_CPU_ISA``) under which its bfloat16 kernels are not native.
_ISA_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")


@dataclass(frozen=True)
class Cpu:
    """What the decision reads off the machine."""

    model: str
    flags: frozenset[str]
    isa_limit: str  # ONEDNN_MAX_CPU_ISA / ATEN_CPU_CAPABILITY as set, "" when unset

    @property
    def native_bfloat16(self) -> bool:
        """bfloat16 instructions present and not switched off by an instruction-set limit."""
        return any(f in self.flags for f in BF16_FLAGS) and not self.limited

    @property
    def limited(self) -> bool:
        onednn, _, aten = self.isa_limit.partition("|")
        return onednn.upper() in _ISA_WITHOUT_BF16 or aten.lower() in ("avx2", "default")

    def describe(self) -> str:
        has = [f for f in BF16_FLAGS if f in self.flags]
        native = ", ".join(has) if has else "no AVX512-BF16 or AMX"
        limit = f", instruction set limited ({self.isa_limit})" if self.isa_limit.strip("|") else ""
        return f"{self.model} ({native}{limit})"


def read_cpu(cpuinfo: str | None = None) -> Cpu:
    """The CPU's model name and flags (from ``/proc/cpuinfo`` on Linux; elsewhere torch's own checks),
    and the instruction-set limits set in the environment."""
    model, flags = platform.processor() or platform.machine(), set()
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            cpuinfo = ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and value.strip():
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    if not cpuinfo:  # not Linux: ask torch (cpuinfo library underneath)
        import torch

        if torch.cpu._is_avx512_bf16_supported():
            flags.add("avx512_bf16")
        if torch.cpu._is_amx_tile_supported():
            flags.add("amx_bf16")
    limit = f"{os.environ.get('ONEDNN_MAX_CPU_ISA', '')}|{os.environ.get('ATEN_CPU_CAPABILITY', '')}"
    return Cpu(model, frozenset(flags), limit)


def choose(cpu: Cpu, measure=None) -> tuple[str, str]:
    """``(precision, why)`` for ``cpu``: float32 without native bfloat16 (nothing measured), else
    bfloat16 when ``measure()`` (the speed-up of bfloat16 over float32) is at least
    :data:`ADOPTION_SPEEDUP`."""
    if not cpu.native_bfloat16:
        return "float32", f"{cpu.describe()}: bfloat16 would be emulated"
    speedup = measure() if measure is not None else ADOPTION_SPEEDUP
    if speedup >= ADOPTION_SPEEDUP:
        return "bfloat16", f"{cpu.describe()}: the training step measured {speedup:.2f}x faster in bfloat16"
    return "float32", f"{cpu.describe()}: the training step measured only {speedup:.2f}x faster in bfloat16"


def two_branch_step_timer(batch: int, steps: int, bf16: bool, text_dim: int = 384, image_dim: int = 2560):
    """A function timing ``steps`` training steps of a two-branch model of the study's sizes (Linear,
    ReLU, dropout, Linear on each side, 2048 hidden, 512 out; InfoNCE over the batch; fused Adam) on
    random inputs, forward under bfloat16 autocast when ``bf16``. Plain torch, its own generator:
    what the precision decision measures without building the package's model."""
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        branches = nn.ModuleList(
            nn.Sequential(nn.Linear(d, 2048), nn.ReLU(), nn.Dropout(0.5), nn.Linear(2048, 512))
            for d in (text_dim, image_dim)
        )
    optimizer = torch.optim.Adam(branches.parameters(), lr=1e-4, fused=True)
    inputs = [(torch.randn(batch, text_dim, generator=gen), torch.randn(batch, image_dim, generator=gen))] * steps
    labels = torch.arange(batch)

    def timed() -> float:
        start = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            for text, image in inputs:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    t = nn.functional.normalize(branches[0](text), dim=-1)
                    i = nn.functional.normalize(branches[1](image), dim=-1)
                    logits = (t @ i.T).float() / 0.05
                    loss = nn.functional.cross_entropy(logits, labels) + nn.functional.cross_entropy(logits.T, labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        return time.perf_counter() - start

    return timed


def measured_speedup(steps: int = 10, rounds: int = 3) -> float:
    """Speed of :func:`two_branch_step_timer` (batch 256) in bfloat16 over float32: each warmed up,
    then timed in interleaved rounds; the ratio of the median rounds."""
    timers = {p: two_branch_step_timer(256, steps, bf16=p == "bfloat16") for p in PRECISIONS}
    for timer in timers.values():
        timer()  # warm-up: oneDNN builds its kernels on first use
    times = {p: [] for p in PRECISIONS}
    for _ in range(rounds):
        for p, timer in timers.items():
            times[p].append(timer())
    median = lambda values: sorted(values)[len(values) // 2]  # noqa: E731
    return median(times["float32"]) / median(times["bfloat16"])


def _decision_file(cpu: Cpu) -> Path:
    import torch

    from . import paths

    key = json.dumps([cpu.model, sorted(cpu.flags), cpu.isa_limit, torch.__version__, torch.get_num_threads()])
    return paths.cache_dir() / f"precision-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def _measured_once(cpu: Cpu) -> float:
    """:func:`measured_speedup`, measured once per machine and read back from the cache folder."""
    path = _decision_file(cpu)
    try:
        return float(json.loads(path.read_text())["speedup"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    start = time.perf_counter()
    speedup = measured_speedup()
    from .helpers import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"cpu": cpu.describe(), "speedup": round(speedup, 3), "seconds": round(time.perf_counter() - start, 1)}
    atomic_write(path, lambda handle: handle.write(json.dumps(record).encode()))
    return speedup


@functools.cache
def _machine_decision() -> tuple[str, str]:
    cpu = read_cpu()
    return choose(cpu, lambda: _measured_once(cpu))


def default_precision() -> str:
    """The precision ``"auto"`` stands for in this process: ``RCP217_PRECISION`` when set, else the
    machine's decision (:func:`choose`)."""
    return decision()[0]


def decision() -> tuple[str, str]:
    """``(precision, why)``: the override, or the machine's decision and its reason."""
    raw = os.environ.get(VARIABLE, "auto").strip().lower() or "auto"
    if raw not in (*PRECISIONS, "auto"):
        raise ValueError(f"{VARIABLE} must be float32, bfloat16 or auto, got {raw!r}")
    if raw != "auto":
        return raw, f"set by {VARIABLE}={raw}"
    return _machine_decision()


def describe() -> str:
    """One line for a notebook or a command: the precision training runs in here, and why."""
    precision, why = decision()
    return f"training precision: {precision} ({why}; {VARIABLE}=float32|bfloat16 overrides)"
