"""Seconds per page, tokens per second and peak GPU memory of each OCR backend this machine can run.

    .venv/bin/python bench/backends.py [--runs 3] [--max-new-tokens 128] [--max-pixels 3885504]
                                       [--model FOLDER_OR_HUB_ID [--revision COMMIT]] [--real-size]
                                       [--hold-gib N] [--backends rapidocr,cpu,transformers] [--json]

One generated A4 page (1654 × 2339 pixels, 200 dpi, printed text in DejaVu Sans) is read by:

- rapidocr, always (CPU);
- the cpu backend (dots.ocr code path in float32) on the tiny random-weight model that the tests
  build (tests/fixtures/tiny_dots), or on --model;
- on a machine with a CUDA GPU, the transformers backend in bf16, 8-bit and 4-bit (nf4) on
  --model, or with --real-size on a random-weight model of dots.ocr's real dimensions (3 B
  parameters, built once into a temporary folder; without --model or --real-size the tiny model).

Each backend is loaded once, reads one warm-up page, then --runs pages; the medians are printed.
Random weights produce random text, so every page runs to --max-new-tokens: the figures measure
the machinery (vision encoder on the page, prefill, decoding), not the model's reading.

--hold-gib N starts a second process that holds N GiB of GPU memory (torch.empty on cuda:0) for
the whole run, as another user of a shared card would.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.backends import CPU, RAPIDOCR, TRANSFORMERS  # noqa: E402

FONT = ROOT / "tests" / "data" / "DejaVuSans.ttf"
GiB = 1024**3

HOLDER = """
import sys, torch
held = torch.empty(int(float(sys.argv[1]) * 2**30), dtype=torch.uint8, device="cuda:0")
torch.cuda.synchronize()
print("holding", flush=True)
sys.stdin.read()
"""


def a4_page():
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (1654, 2339), "white")
    pen = ImageDraw.Draw(image)
    title = ImageFont.truetype(str(FONT), 56)
    body = ImageFont.truetype(str(FONT), 30)
    pen.text((150, 150), "Quarterly report on shared GPU use", font=title, fill="black")
    sentence = "The quick brown fox jumps over the lazy dog while the model reads the page line {n}."
    for n in range(48):
        pen.text((150, 300 + 40 * n), sentence.format(n=n + 1), font=body, fill="black")
    pen.rectangle((150, 2250, 1500, 2252), fill="black")
    return image


def never() -> bool:
    return False


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


class MemoryHolder:
    """A second process holding `gib` GiB of GPU memory until stopped."""

    def __init__(self, gib: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(gib)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline().strip()
        if line != "holding":
            self.stop()
            raise SystemExit(f"the memory-holding process failed to take {gib} GiB")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def measure(label: str, backend, plan: dict, runs: int, mode: str, variant: str | None = None) -> dict:
    """Load, one warm-up page, `runs` timed pages; the figures, or the reason it could not run."""
    from core.planner import torch_bytes_budgeted
    from core.results import BackendError

    image = a4_page()
    row: dict = {"backend": label}
    if variant:
        # The planner's budget for this page size, to set beside the measured peak.
        row["planned_gib"] = round(torch_bytes_budgeted(variant, plan["max_pixels"]) / GiB, 2)
    try:
        start = time.perf_counter()
        backend.load(plan)
        row["load_s"] = round(time.perf_counter() - start, 2)
        weights = gpu_allocated()
        backend.ocr(image, mode, never)
        seconds, firsts, rates, peaks, details = [], [], [], [], {}
        for _ in range(runs):
            start = time.perf_counter()
            result = backend.ocr(image, mode, never)
            seconds.append(time.perf_counter() - start)
            details = result.details
            if details.get("first_token_seconds") is not None:
                firsts.append(details["first_token_seconds"])
            if details.get("tokens_per_second"):
                rates.append(details["tokens_per_second"])
            if details.get("peak_gpu_bytes"):
                peaks.append(details["peak_gpu_bytes"])
    except BackendError as exc:
        row["skipped"] = str(exc)
        return row
    finally:
        backend.unload()
    row.update(
        s_per_page=round(statistics.median(seconds), 3),
        first_token_s=round(statistics.median(firsts), 3) if firsts else None,
        tokens_per_s=round(statistics.median(rates), 1) if rates else None,
        new_tokens=details.get("new_tokens"),
        image_tokens=details.get("image_tokens"),
        image_size_sent=details.get("image_size_sent"),
        weights_gib=round(weights / GiB, 2) if weights else None,
        peak_gpu_gib=round(max(peaks) / GiB, 2) if peaks else None,
    )
    return row


def gpu_allocated() -> int | None:
    if not cuda_available():
        return None
    import torch

    return int(torch.cuda.memory_allocated(0)) or None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument(
        "--max-pixels", type=int, default=1652 * 2352, help="image size cap (default: A4 200 dpi)"
    )
    parser.add_argument("--mode", default="layout_all", help="reading mode (layout_all, layout_only, text)")
    parser.add_argument("--model", help="dots.ocr model folder or hub id (default: the tiny random model)")
    parser.add_argument("--revision", help="commit hash, for a hub id")
    parser.add_argument("--cache-dir", help="Hugging Face cache folder, for a hub id")
    parser.add_argument(
        "--real-size", action="store_true", help="random weights at dots.ocr's real size (CUDA)"
    )
    parser.add_argument("--hold-gib", type=float, default=0, help="GiB of GPU memory another process holds")
    parser.add_argument("--backends", default=",".join(b.name for b in (RAPIDOCR, CPU, TRANSFORMERS)))
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    wanted = set(args.backends.split(","))

    from tests.fixtures.tiny_dots.build import REAL_SIZES, build_tiny_model
    from workers.backends.rapidocr_backend import RapidOcrBackend
    from workers.backends.transformers_backend import CpuBackend, TransformersBackend

    scratch = Path(tempfile.mkdtemp(prefix="ocrdash-bench-"))
    cuda = cuda_available()
    notes: list[str] = []
    holder = None
    if args.hold_gib:
        if cuda:
            holder = MemoryHolder(args.hold_gib)
            notes.append(f"another process holds {args.hold_gib:g} GiB of cuda:0")
        else:
            notes.append("--hold-gib ignored: no CUDA GPU")

    model = {"model": args.model, "revision": args.revision, "cache_dir": args.cache_dir}
    if not args.model:
        tiny = build_tiny_model(scratch / "tiny_dots")
        model = {"model": str(tiny)}
        notes.append(f"cpu backend: tiny random model ({tiny})")
    gpu_model = model
    if args.real_size:
        if cuda:
            start = time.perf_counter()
            real = build_tiny_model(scratch / "dots_real_size", sizes=REAL_SIZES, device="cuda")
            gpu_model = {"model": str(real)}
            notes.append(
                f"transformers backend: real-size random model, built in {time.perf_counter() - start:.0f} s"
            )
        else:
            notes.append("--real-size ignored: it is built and run only with a CUDA GPU")
    limits = {"max_pixels": args.max_pixels, "max_new_tokens": args.max_new_tokens}

    rows = []
    try:
        if RAPIDOCR.name in wanted:
            rows.append(measure(RAPIDOCR.name, RapidOcrBackend(), {"language": "multi"}, args.runs, "text"))
        if CPU.name in wanted:
            plan = {"backend": CPU.name, "dtype": "float32", **model, **limits}
            rows.append(measure("cpu float32", CpuBackend(), plan, args.runs, args.mode))
        if TRANSFORMERS.name in wanted:
            for quantization in ("bf16", "int8", "nf4"):
                plan = {"backend": TRANSFORMERS.name, "quantization": quantization, "dtype": "bfloat16",
                        "device_index": 0, **gpu_model, **limits}  # fmt: skip
                label = f"{TRANSFORMERS.name} {quantization}"
                variant = f"{TRANSFORMERS.name}:{quantization}"
                rows.append(measure(label, TransformersBackend(), plan, args.runs, args.mode, variant))
    finally:
        if holder is not None:
            holder.stop()

    if args.json:
        print(json.dumps({"notes": notes, "rows": rows}, indent=2))
        return
    device = "CPU only"
    if cuda:
        import torch

        device = torch.cuda.get_device_name(0)
    print(f"{device}; {os.cpu_count()} CPUs; {args.runs} runs after one warm-up; medians")
    for note in notes:
        print(f"  {note}")
    columns = [
        ("load_s", "load s"),
        ("s_per_page", "s/page"),
        ("first_token_s", "1st tok s"),
        ("tokens_per_s", "tok/s"),
        ("new_tokens", "new tok"),
        ("image_tokens", "img tok"),
        ("weights_gib", "weights GiB"),
        ("peak_gpu_gib", "peak GiB"),
        ("planned_gib", "planned GiB"),
    ]
    print(f"{'backend':18}" + "".join(f" {title:>11}" for _, title in columns))
    for row in rows:
        if "skipped" in row:
            print(f"{row['backend']:18} skipped: {row['skipped']}")
            continue
        cells = ["-" if row.get(key) is None else row[key] for key, _ in columns]
        print(f"{row['backend']:18}" + "".join(f" {cell:>11}" for cell in cells))


if __name__ == "__main__":
    main()
