"""The peak memory and time of the worst inputs the search tools meet, each measured in a process of
its own.

    flickr-retrieval-bench-hostile            # every case, a table
    flickr-retrieval-bench-hostile --json out.json --cases exif-bomb,64mp-png

Images (a file in an indexed folder is all an attacker needs): a 100 MB TIFF of 12.5 million one-row
strips named ``.jpg``; a 64 x 48 PNG carrying 20 MB of EXIF GPS rationals and a rotation; a 70-byte
PNG whose header claims 10000 x 10000 pixels; photos of 64 megapixels (the most decoded) as PNG, WebP,
HEIC and JPEG. Each goes through what the indexer does with a file (read it, decode it for the CNN,
read its metadata) and what the page does with it (a 1024-pixel view). Checkpoints (write access to
``results/`` is needed): a valid small one, one whose history is a pickle memo tree of 2^30 leaves in
a few KB, one holding a stride-0 view that claims 4 billion numbers. Each case runs in a fresh Python
process (``--child``): its resident memory after the imports, the peak reached during the case (the
peak reset first: Linux's ``VmHWM``), and the case's seconds. The inputs are built in this process first, so
building them is not counted.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..errors import cli_errors

MEGAPIXELS_64 = (8000, 8000)


def _tiff_of_strips(path: Path, strips: int = 12_500_000) -> None:
    """A little-endian TIFF of ``strips`` one-row strips (8 bytes a strip in its two tables: a 100 MB
    file for 12.5 million), written directly (Pillow would take minutes)."""
    entries = [  # tag, type (3 SHORT, 4 LONG), count, value or offset
        (256, 4, 1, 1),  # width
        (257, 4, 1, strips),  # height
        (258, 3, 1, 8),  # bits per sample
        (259, 3, 1, 1),  # no compression
        (262, 3, 1, 1),  # black is zero
        (273, 4, strips, 0),  # strip offsets: patched below
        (277, 3, 1, 1),  # samples per pixel
        (278, 4, 1, 1),  # rows per strip
        (279, 4, strips, 0),  # strip byte counts: patched below
    ]
    ifd_size = 2 + 12 * len(entries) + 4
    offsets_at = 8 + ifd_size
    counts_at = offsets_at + 4 * strips
    with open(path, "wb") as out:
        out.write(b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries)))
        for tag, kind, count, value in entries:
            value = {273: offsets_at, 279: counts_at}.get(tag, value)
            out.write(struct.pack("<HHII", tag, kind, count, value))
        out.write(struct.pack("<I", 0))
        block = struct.pack("<I", 8) * 1_000_000
        for table in range(2):
            left = strips
            while left:
                n = min(left, 1_000_000)
                out.write(block[: 4 * n] if table == 0 else struct.pack("<I", 1) * n)
                left -= n


def _exif_bomb(path: Path, rationals: int = 2_500_000) -> None:
    """A 64 x 48 PNG with ``rationals`` GPS rationals in its EXIF (8 bytes each: 20 MB) and a rotation."""
    from PIL import Image
    from PIL.TiffImagePlugin import IFDRational

    exif = Image.Exif()
    exif[0x0112] = 6
    exif.get_ifd(0x8825)[2] = tuple(IFDRational(i + 1, 7) for i in range(rationals))
    Image.new("RGB", (64, 48)).save(path, format="PNG", exif=exif.tobytes())


def _pixel_bomb(path: Path) -> None:
    """A 1 x 1 PNG whose header claims 10000 x 10000 pixels."""
    import zlib

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = data[12:29]
    ihdr[4:12] = struct.pack(">II", 10000, 10000)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    path.write_bytes(bytes(data))


def _big_photo(path: Path, fmt: str) -> None:
    """A 64-megapixel photo (a smooth gradient: quick to encode, the same pixels to decode)."""
    from PIL import Image

    from ..search.photo_meta import enable_heif

    enable_heif()
    gradient = Image.linear_gradient("L").resize(MEGAPIXELS_64)
    image = Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.ROTATE_90), gradient))
    image.save(path, format=fmt, **({"quality": 30} if fmt in ("JPEG", "WEBP", "HEIF") else {}))


def _checkpoints(folder: Path) -> dict[str, Path]:
    """A valid small checkpoint (an untrained dual encoder of 64-dimensional inputs), and two built
    from it: a memo tree of 2^30 leaves in its history, a stride-0 view in its text normaliser."""
    import torch

    from ..checkpoint import TrainedModel
    from ..config import RunConfig
    from ..models import ModelSpec, build_model
    from ..objective import Objective

    config = RunConfig(name="bench", image_backbone="mobilenet_v2", hidden_dim=32, embed_dim=16)
    spec = ModelSpec(kind="dual_encoder", text_dim=64, image_dim=1280, hidden_dim=32, embed_dim=16)
    trained = TrainedModel(config, Objective(build_model(spec), config), [{"epoch": 0}], 0, 0.0)
    paths = {"checkpoint-valid": folder / "valid.pt", "checkpoint-tree": folder / "tree.pt"}
    paths["checkpoint-stride0"] = folder / "stride0.pt"
    trained.save(paths["checkpoint-valid"])
    state = torch.load(paths["checkpoint-valid"], weights_only=True)
    tree = [0]
    for _ in range(30):
        tree = [tree, tree]
    torch.save({**state, "history": [{"epoch": 0, "notes": tree}]}, paths["checkpoint-tree"])
    view = {"how": "standardize", "mean": torch.zeros(1).expand(4_000_000_000), "std": None}
    torch.save({**state, "text_norm": view}, paths["checkpoint-stride0"])
    return paths


#: case -> (what it is, how it is built, the file name it gets)
CASES = {
    "tiff-as-jpg": ("100 MB TIFF, 12.5 M strips, named .jpg", _tiff_of_strips, "strips.jpg"),
    "exif-bomb": ("64x48 PNG, 20 MB of EXIF GPS rationals", _exif_bomb, "bomb.png"),
    "pixel-bomb": ("70-byte PNG claiming 10000x10000", _pixel_bomb, "claims.png"),
    "64mp-png": ("64-megapixel PNG", lambda p: _big_photo(p, "PNG"), "big.png"),
    "64mp-webp": ("64-megapixel WebP", lambda p: _big_photo(p, "WEBP"), "big.webp"),
    "64mp-heic": ("64-megapixel HEIC", lambda p: _big_photo(p, "HEIF"), "big.heic"),
    "64mp-jpeg": ("64-megapixel JPEG", lambda p: _big_photo(p, "JPEG"), "big.jpg"),
    "checkpoint-valid": ("a valid small checkpoint", None, "valid.pt"),
    "checkpoint-tree": ("checkpoint: a memo tree of 2^30 leaves", None, "tree.pt"),
    "checkpoint-stride0": ("checkpoint: a stride-0 view of 4e9 numbers", None, "stride0.pt"),
}


def _status_mb(field: str) -> float | None:
    """A field of /proc/self/status in MB (``VmRSS``: resident now; ``VmHWM``: its peak), Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Set the peak resident memory back to what is resident now (Linux: ``clear_refs`` 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_mb() -> float:
    """The peak resident memory since the last :func:`_reset_peak` (else since the start), in MB."""
    hwm = _status_mb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _image_case(path: Path) -> list[str]:
    """What the indexer and the page do with a file: read, decode for the CNN, metadata, a large view."""
    from ..search import photo_index, photo_meta

    said = []
    try:
        data, *_ = photo_index.read_file(path)
    except OSError as exc:
        return [f"read: refused ({exc})"]
    for step, act in (
        ("decode", lambda: photo_index.decode_photo(data)),
        ("view", lambda: photo_index.view_bytes(data, photo_index.LARGE_SIZE)),
    ):
        try:
            act()
            said.append(f"{step}: ok")
        except Exception as exc:  # noqa: BLE001 - the outcome is what the bench reports
            said.append(f"{step}: refused ({type(exc).__name__}: {str(exc)[:100]})")
    meta = photo_meta.read_meta(path)
    said.append(f"meta: date from {meta['taken_from']}")
    return said


def _checkpoint_case(path: Path) -> list[str]:
    from ..checkpoint import TrainedModel
    from ..errors import CheckpointError

    try:
        TrainedModel.load(path)
        return ["load: ok"]
    except CheckpointError as exc:
        return [f"load: refused ({str(exc).split(': ', 1)[-1][:160]})"]


def child(case: str, path: Path) -> dict:
    """Run one case in this process: its outcome, seconds, and peak memory before and after."""
    from ..checkpoint import TrainedModel  # noqa: F401 - imported before the baseline is read
    from ..search import photo_index  # noqa: F401

    _reset_peak()
    before = _status_mb("VmRSS") or _peak_mb()
    start = time.perf_counter()
    said = _checkpoint_case(path) if case.startswith("checkpoint") else _image_case(path)
    return {
        "case": case,
        "what": CASES[case][0],
        "file_mb": round(path.stat().st_size / 2**20, 2),
        "outcome": "; ".join(said),
        "seconds": round(time.perf_counter() - start, 2),
        "baseline_mb": round(before),
        "peak_added_mb": round(_peak_mb() - before),
    }


def run(cases: list[str], folder: Path) -> list[dict]:
    """Build each case's input in ``folder`` and measure it in a child process."""
    built = {}
    if any(c.startswith("checkpoint") for c in cases):
        built.update(_checkpoints(folder))
    rows = []
    for case in cases:
        what, build, name = CASES[case]
        path = built.get(case, folder / name)
        if build is not None:
            started = time.perf_counter()
            build(path)
            print(
                f"built {case} ({path.stat().st_size / 2**20:.1f} MB) in {time.perf_counter() - started:.1f} s",
                file=sys.stderr,
            )
        done = subprocess.run(
            [sys.executable, "-m", "flickr_retrieval.benches.hostile", "--child", case, str(path)],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if done.returncode != 0:
            rows.append({"case": case, "what": what, "outcome": f"the process failed: {done.stderr.strip()[-200:]}"})
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        path.unlink(missing_ok=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| case | input | file MB | peak added MB | seconds | outcome |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['what']} | {r.get('file_mb', '')} | {r.get('peak_added_mb', '')} | "
            f"{r.get('seconds', '')} | {r['outcome']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Peak memory and time of the worst image and checkpoint inputs.")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of: {', '.join(CASES)}")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--child", nargs=2, metavar=("CASE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]))))
        return 0
    with cli_errors("flickr-retrieval-bench-hostile"):
        cases = [c.strip() for c in args.cases.split(",") if c.strip()]
        unknown = [c for c in cases if c not in CASES]
        if unknown:
            parser.error(f"unknown cases {unknown}; choose from {list(CASES)}")
        with tempfile.TemporaryDirectory(prefix="rcp217-hostile-") as folder:
            rows = run(cases, Path(folder))
        print(table(rows))
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
