"""Throughput on this machine, every path side by side in one run (no cache involved): feature
extraction for each offline image backbone and text encoder, and training steps at the study's sizes.

    flickr-retrieval-bench [--images 128] [--captions 512] [--backbones ...] [--encoders ...] [--no-compile]

Image paths, end to end from the JPEG files: a naive one-image-at-a-time loop; batches of 8 through
the reference module (what EfficientNet-Lite0 ran before its convolutions were made plain: BatchNorm
unfolded); the package's path (:func:`backbones.inference_module`) at batch sizes 1 to 16; that path
under bfloat16 autocast and under ``torch.compile`` (at the package's batch size). Each path is
warmed up, then timed in interleaved rounds; the median round counts. Each path's features are compared with the reference module's
(minimum per-image cosine). Text: naive loop, the package's length-sorted batches, and bfloat16.
Training: steps of the two-branch model at the study's sizes and batch sizes, every path the package
has used (float32 / bfloat16 autocast, ``nn.Dropout`` / the rand-mask dropout, the Adam loop / fused
Adam), interleaved like the image paths.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
import time

import numpy as np
import torch

from ..backbones import BACKBONES, OFFLINE_BACKBONES, inference_module, load_image_backbone
from ..data import load_flickr8k
from ..errors import cli_errors
from ..features import extract_image_features
from ..helpers import l2_normalise
from ..images import load_image
from ..text import clean_caption
from ..text_encoders import OFFLINE_TEXT_ENCODERS, TEXT_ENCODERS, encode_texts, load_text_encoder, pool

#: The path the package uses, per kind of row (images: the row marked "package default"): the
#: ratios are taken against it.
PACKAGE_PATHS = ("length-sorted batches of 64, package path",)


@torch.no_grad()
def naive_images(backbone, files) -> np.ndarray:
    """Open, preprocess and run each image on its own, plain module, default layout."""
    transform = backbone.spec.preprocessing.transform()
    return np.concatenate([backbone.module(transform(load_image(path)).unsqueeze(0)).numpy() for path in files])


@torch.no_grad()
def naive_texts(encoder, texts) -> None:
    """Tokenize and encode each caption on its own."""
    for text in texts:
        tokens = encoder.tokenize([text])
        pool(encoder.model(**tokens).last_hidden_state, tokens["attention_mask"])


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float((l2_normalise(a) * l2_normalise(b)).sum(1).min())


BATCH_SIZES = (1, 2, 4, 8, 16)
#: Other runtimes, tried when installed (``pip install -r requirements-bench.txt``); adopted only
#: if at least 1.5x faster end to end with per-image cosine >= 0.999 against the reference path.
ADOPTION_SPEEDUP, ADOPTION_COSINE = 1.5, 0.999


class _NumpyRuntime(torch.nn.Module):
    """A torch-module face for a runtime that maps a float32 array (B, 3, H, W) to features (B, dim)."""

    def __init__(self, run):
        super().__init__()
        self.run = run

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.run(x.contiguous().numpy()), dtype=np.float32))


def runtime_paths(bb, batch_size: int, folder) -> tuple[dict[str, dict], list[tuple]]:
    """ONNX Runtime and OpenVINO (float32, and its default precision: bfloat16 on CPUs that have it)
    on the backbone exported to ONNX; a row saying why for each that cannot run here."""
    import importlib.util
    import warnings

    paths_, failed = {}, []
    wanted = [m for m in ("onnxruntime", "openvino") if importlib.util.find_spec(m)]
    for missing in sorted({"onnxruntime", "openvino"} - set(wanted)):
        failed.append((f"{missing}: not installed (pip install -r requirements-bench.txt)", float("nan"), None))
    if not wanted:
        return paths_, failed
    onnx_file = f"{folder}/{bb.name}.onnx"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                bb.module,
                (torch.randn(batch_size, 3, 224, 224),),
                onnx_file,
                dynamo=False,
                input_names=["x"],
                output_names=["y"],
                dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
                opset_version=17,
            )
    except Exception as exc:
        return paths_, failed + [(f"ONNX export failed: {type(exc).__name__}", float("nan"), None)]
    if "onnxruntime" in wanted:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(onnx_file, options, providers=["CPUExecutionProvider"])
        paths_[f"ONNX Runtime {ort.__version__}, batches of {batch_size}"] = dict(
            module=_NumpyRuntime(lambda a: session.run(None, {"x": a})[0]), batch_size=batch_size
        )
    if "openvino" in wanted:
        import openvino as ov

        core = ov.Core()
        for label, config, batches in (
            ("float32", {"INFERENCE_PRECISION_HINT": "f32"}, (batch_size, 16)),
            ("default precision", {}, (batch_size,)),
        ):
            compiled = core.compile_model(onnx_file, "CPU", config)
            for b in dict.fromkeys(batches):
                paths_[f"OpenVINO {ov.__version__.split('-')[0]} {label}, batches of {b}"] = dict(
                    module=_NumpyRuntime(lambda a, c=compiled: c(a)[0]), batch_size=b
                )
    return paths_, failed


def image_paths(name: str, files: list, compile_: bool = True, repeats: int = 3, runtimes: bool = True) -> list[dict]:
    """Every image path of one backbone on the same files: each warmed up once (oneDNN builds its
    kernels per input shape on first use), then timed ``repeats`` times in interleaved rounds (so a
    slow spell of a noisy machine hits every path alike); the rate is the median round's."""
    bb = load_image_backbone(name)
    default = bb.spec.batch_size
    reference_module = copy.deepcopy(bb.module).to(memory_format=torch.channels_last)  # bb.module stays as loaded
    fast = inference_module(bb)
    paths_ = {"batches of 8, reference module": dict(module=reference_module, batch_size=8)}
    for b in BATCH_SIZES:
        paths_[f"package path, batches of {b}" + (" (package default)" if b == default else "")] = dict(
            module=fast, batch_size=b
        )
    paths_["package path + bfloat16 autocast"] = dict(module=fast, batch_size=default, bf16=True)
    rows = [("naive loop, reference module", _timed(lambda: naive_images(bb, files))[1], None)]
    if compile_:
        try:
            compiled = torch.compile(fast)
            t_compile = _timed(
                lambda: extract_image_features(bb, files, default, module=compiled, show_progress=False)
            )[1]  # compiles
            paths_[f"package path + torch.compile (first pass {t_compile:.0f} s)"] = dict(
                module=compiled, batch_size=default
            )
        except Exception as exc:  # no compiler, unsupported op: say so
            rows.append((f"torch.compile failed: {type(exc).__name__}", float("nan"), None))
    if runtimes:
        import tempfile

        folder = tempfile.mkdtemp(prefix="rcp217-bench-")
        more, failed = runtime_paths(bb, default, folder)
        shutil.rmtree(folder)  # the runtimes hold the model in memory
        paths_.update(more)
        rows += failed
    outputs, times = {}, {path: [] for path in paths_}
    for path, kw in paths_.items():
        outputs[path] = extract_image_features(bb, files, show_progress=False, **kw)  # warm-up
    for _ in range(repeats):
        for path, kw in paths_.items():
            times[path].append(_timed(lambda kw=kw: extract_image_features(bb, files, show_progress=False, **kw))[1])
    reference = outputs["batches of 8, reference module"]
    rows += [(path, float(np.median(times[path])), outputs[path]) for path in paths_]
    return [
        {
            "model": name,
            "unit": "images/s",
            "path": path,
            "rate": len(files) / t,
            "package": "package default" in path,
            "cosine": None if out is None else _min_cosine(out, reference),
        }
        for path, t, out in rows
    ]


def text_paths(name: str, texts: list[str]) -> list[dict]:
    enc = load_text_encoder(name)
    encode_texts(enc, texts[:64])
    _, t_naive = _timed(lambda: naive_texts(enc, texts))
    reference, t_batched = _timed(lambda: encode_texts(enc, texts))
    bf16, t_bf16 = _timed(lambda: encode_texts(enc, texts, bf16=True))
    return [
        {"model": name, "unit": "captions/s", "path": "naive loop", "rate": len(texts) / t_naive, "cosine": None},
        {
            "model": name,
            "unit": "captions/s",
            "path": "length-sorted batches of 64, package path",
            "rate": len(texts) / t_batched,
            "cosine": 1.0,
        },
        {
            "model": name,
            "unit": "captions/s",
            "path": "package path + bfloat16 autocast",
            "rate": len(texts) / t_bf16,
            "cosine": _min_cosine(bf16["mean"], reference["mean"]),
        },
    ]


#: Training paths, oldest first (what each changed is one lever), then the candidates measured
#: against the package's step (``package``: the path :func:`fit.training_step` takes, in the
#: precision this machine trains in, :mod:`flickr_retrieval.precision`).
TRAINING_PATHS = (
    ("float32, nn.Dropout, Adam loop (before 2026-11-27)", dict(bf16=False, dropout="torch", fused=False)),
    ("bfloat16 autocast, nn.Dropout, Adam loop (6dbd7f3)", dict(bf16=True, dropout="torch", fused=False)),
    ("float32, rand-mask Dropout, fused Adam (6786640)", dict(bf16=False, dropout=None, fused=True)),
    ("bfloat16 autocast, rand-mask Dropout, fused Adam (6786640)", dict(bf16=True, dropout=None, fused=True)),
)


def training_paths(steps: int = 40, batches: tuple[int, ...] = (64, 256), repeats: int = 3) -> list[dict]:
    """Samples per second of every :data:`TRAINING_PATHS` entry on the reference row's sizes (384-d
    text, 2560-d image features; InfoNCE) at the study's batch sizes (64: the report's recipe, 256:
    the reference recipe R): each warmed up, then timed in ``repeats`` interleaved rounds; the
    median round counts. The package's path is the row in this machine's precision with the
    package's dropout and fused Adam."""
    from torch import nn

    from ..precision import default_precision
    from .training import median_rounds, package_step

    package_bf16 = default_precision() == "bfloat16"
    rows = []
    for batch in batches:
        setups = {
            label: package_step(
                384, 2560, batch, steps, kw["bf16"], fused=kw["fused"], dropout=nn.Dropout if kw["dropout"] else None
            )
            for label, kw in TRAINING_PATHS
        }
        seconds = median_rounds({label: s.run for label, s in setups.items()}, repeats)
        rows += [
            {
                "model": f"dual encoder training, batch {batch}",
                "unit": "samples/s",
                "path": label,
                "package": kw["fused"] and kw["dropout"] is None and kw["bf16"] == package_bf16,
                "rate": steps * batch / seconds[label],
                "cosine": None,
            }
            for label, kw in TRAINING_PATHS
        ]
    return rows


def run(
    n_images: int = 128,
    n_captions: int = 512,
    backbones=None,
    encoders=None,
    compile_: bool = True,
    training: bool = True,
) -> list[dict]:
    if n_images < 1 or n_captions < 1:
        raise ValueError(f"need at least one image and one caption, got {n_images} and {n_captions}")
    data = load_flickr8k()
    split = data.split("all")
    files = [data.image_path(i) for i in split.image_ids[:n_images]]
    texts = [clean_caption(t) for t in split.captions[:n_captions]]
    rows = []
    for name in backbones or OFFLINE_BACKBONES:
        rows += image_paths(name, files, compile_)
    for name in encoders or OFFLINE_TEXT_ENCODERS:
        rows += text_paths(name, texts)
    if training:
        rows += training_paths()
    return rows


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=positive_int, default=128, help="images per backbone (1 to 8091)")
    parser.add_argument("--captions", type=positive_int, default=512, help="captions per text encoder (1 to 40455)")
    parser.add_argument("--backbones", nargs="*", default=None, choices=list(BACKBONES))
    parser.add_argument("--encoders", nargs="*", default=None, choices=list(TEXT_ENCODERS))
    parser.add_argument(
        "--no-compile", action="store_true", help="skip the torch.compile path (it compiles for a minute or more)"
    )
    parser.add_argument("--no-training", action="store_true", help="skip the training lines")
    parser.add_argument(
        "--training-only",
        action="store_true",
        help="only the training step: its paths, and its FLOP/s and bytes against this machine's peak and bandwidth",
    )
    args = parser.parse_args(argv)
    if args.images > 8091 or args.captions > 40455:
        parser.error("--images is at most 8091 and --captions at most 40455 (all of Flickr8k)")
    from ..precision import describe
    from .training import format_limits, training_limits

    with cli_errors("flickr-retrieval-bench"):
        print(describe())
        if args.training_only:
            _report(training_paths())
        else:
            _report(
                run(
                    args.images, args.captions, args.backbones, args.encoders, not args.no_compile, not args.no_training
                )
            )
        if not args.no_training:
            for line in format_limits(training_limits()):
                print(line)
    return 0


def summary(rows: list[dict]) -> list[str]:
    """Per image backbone: the fastest path whose features match the reference (per-image cosine
    >= 0.999) and how far the package's path is from it; then the backbones' package rates relative
    to each other."""
    lines, package = [], {}
    for model in dict.fromkeys(r["model"] for r in rows if r["unit"] == "images/s"):
        mine = [r for r in rows if r["model"] == model and r["rate"] == r["rate"]]  # drop NaN rows
        base = next((r for r in mine if r.get("package")), None)
        matching = [r for r in mine if r["cosine"] is not None and r["cosine"] >= ADOPTION_COSINE]
        if base is None or not matching:
            continue
        package[model] = base["rate"]
        best = max(matching, key=lambda r: r["rate"])
        fastest = max(mine, key=lambda r: r["rate"])
        verdict = "adopt" if best["rate"] >= ADOPTION_SPEEDUP * base["rate"] else "keep the package path"
        line = (
            f"{model}: package {base['rate']:.1f} images/s; fastest matching path {best['path']!r} {best['rate']:.1f} "
            f"({best['rate'] / base['rate']:.2f}x: {verdict})"
        )
        if fastest is not best:
            line += (
                f"; fastest of all {fastest['path']!r} {fastest['rate']:.1f} ({fastest['rate'] / base['rate']:.2f}x) "
                f"but min cosine {fastest['cosine']:.4f} < {ADOPTION_COSINE}"
            )
        lines.append(line)
    if "efficientnet_lite0" in package and "mobilenet_v2" in package:
        lines.append(
            f"efficientnet_lite0 / mobilenet_v2, package paths: {package['efficientnet_lite0'] / package['mobilenet_v2']:.2f}x"
        )
    return lines


def _report(rows: list[dict]) -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'model':<34}{'path':<62}{'rate':>10}  {'unit':<11}{'vs package':>11}{'min cosine':>12}")
    package = {r["model"]: r["rate"] for r in rows if r["path"] in PACKAGE_PATHS or r.get("package")}
    for r in rows:
        base = package.get(r["model"])
        ratio = f"{r['rate'] / base:.2f}x" if base and r["rate"] == r["rate"] else "-"
        cosine = "-" if r["cosine"] is None else f"{r['cosine']:.5f}"
        print(f"{r['model']:<34}{r['path']:<62}{r['rate']:>10.1f}  {r['unit']:<11}{ratio:>11}{cosine:>12}")
    for line in summary(rows):
        print(line)


if __name__ == "__main__":
    sys.exit(main())
