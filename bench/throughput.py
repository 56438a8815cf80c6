"""A document's pages one after another vs several at once: seconds per page, the speedup, and on a
GPU the decoding rate beside the rate the card's memory bandwidth allows.

    .venv/bin/python bench/throughput.py --tiny [--pages 8] [--batch N] [--max-new-tokens 24] [--repeats 3] [--json]
    .venv/bin/python bench/throughput.py --vllm-double [--pages 8] [--request-seconds 0.25] [--json]
    python3 bench/throughput.py --gpu --real-size --quantization bf16|int8|nf4 [--batch N] [--json]

--tiny       the transformers code path (CpuBackend, float32) on the tiny random-weight dots.ocr
             model the tests build (tests/fixtures/tiny_dots), on the CPU: serial = one generate per
             page, parallel = the pages in left-padded batches of --batch (default: all pages).
--vllm-double the vLLM backend against a local OpenAI-compatible server (tests/doubles/openai_server.py)
             that takes --request-seconds per request and serves requests concurrently: serial =
             one request at a time, parallel = as many in flight as the planner gives an external
             server (OCRDASH_MAX_PAGES_AT_ONCE, default 4).
--gpu        the transformers backend on cuda:0 (--real-size: dots.ocr's real shapes, random
             weights), batch 1 vs --batch. Adds tokens_per_s (batch 1 decoding, after the first
             token), bandwidth_bound_tokens_per_s (the card's memory bandwidth ÷ the bytes of the
             language model's weights, read once per token) and their ratio.

Every page is different (its number is drawn on it) and the results are checked to come back for
the right pages in the document's order (`order_kept`). Random weights write random text, so every
page runs to --max-new-tokens: the figures measure the machinery, not the reading. A warm-up page
runs first; with --repeats the serial and parallel runs alternate and the fastest of each counts
(another process on a shared machine only ever slows a run down).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.backends import CPU, TRANSFORMERS, VLLM  # noqa: E402
from core.dots.prompts import LAYOUT_ALL, TEXT_ONLY  # noqa: E402
from core.modelfacts import BF16, DOTS_OCR  # noqa: E402

FONT = ROOT / "tests" / "data" / "DejaVuSans.ttf"


def page_images(n: int, size: tuple[int, int]) -> list:
    """`n` different pages: each says its number (and the vLLM double answers with its size)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(FONT), max(12, size[1] // 12))
    pages = []
    for i in range(n):
        image = Image.new("RGB", size, "white")
        ImageDraw.Draw(image).text((20, 20), f"Page {i + 1}", font=font, fill="black")
        pages.append(image)
    return pages


def never() -> bool:
    return False


def _timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def read_all(backend, pages: list, mode: str) -> tuple[float, dict]:
    """Every page through read_pages, keyed by number; the wall time."""
    from workers.backends.pagereading import DONE, FAILED

    def run():
        results = {}
        for event in backend.read_pages(list(enumerate(pages, 1)), mode, never):
            if event.kind == DONE:
                results[event.key] = event.result
            elif event.kind == FAILED:
                raise SystemExit(f"page {event.key} failed: {event.error}")
        return results

    return _timed(run)


def summary(backend: str, pages: int, at_once: int, serial_s: float, parallel_s: float, **more) -> dict:
    return {
        "backend": backend,
        "pages": pages,
        "pages_at_once": at_once,
        "serial_s_per_page": round(serial_s / pages, 4),
        "parallel_s_per_page": round(parallel_s / pages, 4),
        "speedup": round(serial_s / parallel_s, 2),
        **more,
    }


# -- the transformers path ------------------------------------------------------------------------


def transformers_run(args, backend, plan: dict, pages: list, name: str) -> dict:
    """Batch 1 (ocr per page) vs read_pages in batches of args.batch, on a loaded backend."""
    at_once = args.batch or len(pages)
    backend.load({**plan, "pages_at_once": 1})
    backend.ocr(pages[0], TEXT_ONLY, never)  # warm-up
    backend.load({**plan, "pages_at_once": at_once})
    list(backend.read_pages([(0, pages[0])] * min(at_once, len(pages)), TEXT_ONLY, never))  # warm-up
    # Serial and batched runs alternate and the fastest of each counts: a shared machine's other
    # work slows a run down, never speeds it up.
    serial_s = parallel_s = float("inf")
    for _ in range(max(1, getattr(args, "repeats", 1))):
        backend.load({**plan, "pages_at_once": 1})
        took, serial = _timed(lambda: [backend.ocr(p, TEXT_ONLY, never) for p in pages])
        serial_s = min(serial_s, took)
        backend.load({**plan, "pages_at_once": at_once})
        took, batched = read_all(backend, pages, TEXT_ONLY)
        parallel_s = min(parallel_s, took)
    order_kept = sorted(batched) == list(range(1, len(pages) + 1)) and all(
        batched[i + 1].details["image_size_sent"] == serial[i].details["image_size_sent"] for i in range(len(pages))
    )
    same_text = sum(batched[i + 1].text == serial[i].text for i in range(len(pages)))
    new_tokens = [r.details["new_tokens"] for r in serial]
    rates = [r.details["tokens_per_second"] for r in serial if r.details.get("tokens_per_second")]
    out = summary(
        name,
        len(pages),
        at_once,
        serial_s,
        parallel_s,
        order_kept=order_kept,
        pages_with_the_same_text=same_text,
        new_tokens_per_page=statistics.median(new_tokens),
        parallel_tokens_per_s=round(sum(r.details["new_tokens"] for r in batched.values()) / parallel_s, 1),
    )
    if rates:
        out["tokens_per_s"] = round(statistics.median(rates), 1)
    return out


def run_tiny(args) -> dict:
    from tests.fixtures.tiny_dots.build import build_tiny_model
    from workers.backends.transformers_backend import CpuBackend

    with tempfile.TemporaryDirectory() as tmp:
        folder = build_tiny_model(Path(tmp) / "tiny_dots")
        backend = CpuBackend()
        plan = {
            "backend": CPU.name,
            "model": str(folder),
            "dtype": "float32",
            "max_pixels": 448 * 448,
            "max_new_tokens": args.max_new_tokens,
            "loop_window": 0,  # random weights repeat themselves: measure the full budget
        }
        try:
            return transformers_run(args, backend, plan, page_images(args.pages, (448, 448)), "cpu (tiny model)")
        finally:
            backend.unload()


def bandwidth_bytes_per_s() -> tuple[float | None, str]:
    """The memory bandwidth of GPU 0 from NVML: memory clock × 2 (double data rate) × bus width."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        name = pynvml.nvmlDeviceGetName(handle)
        clock_mhz = pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_MEM)
        bus_bits = pynvml.nvmlDeviceGetMemoryBusWidth(handle)
        return clock_mhz * 1e6 * 2 * bus_bits / 8, name if isinstance(name, str) else name.decode()
    except Exception as exc:  # no NVML here: no bound
        return None, f"unknown ({exc})"


def lm_weight_bytes(quantization: str) -> int:
    """The bytes of the language model's weights read for every decoded token."""
    f = DOTS_OCR
    per_linear = {"bf16": BF16, "fp16": BF16, "int8": 1, "nf4": 0.5}[quantization]
    return int(f.lm_linear_weights * per_linear + f.lm_other_params * BF16)


def run_gpu(args) -> dict:
    from tests.fixtures.tiny_dots.build import REAL_SIZES, build_tiny_model
    from workers.backends.transformers_backend import TransformersBackend

    with tempfile.TemporaryDirectory() as tmp:
        sizes = REAL_SIZES if args.real_size else None
        folder = build_tiny_model(Path(tmp) / "dots", sizes=sizes, device="cuda")
        backend = TransformersBackend()
        plan = {
            "backend": TRANSFORMERS.name,
            "model": str(folder),
            "quantization": args.quantization,
            "device_index": 0,
            "max_pixels": args.max_pixels,
            "max_new_tokens": args.max_new_tokens,
            "loop_window": 0,
            "fast_decode": args.fast_decode,
        }
        try:
            pages = page_images(args.pages, (1654, 2339))
            out = transformers_run(args, backend, plan, pages, f"transformers {args.quantization}")
        finally:
            backend.unload()
    bandwidth, card = bandwidth_bytes_per_s()
    out["card"] = card
    out["real_size"] = bool(args.real_size)
    out["fast_decode"] = bool(args.fast_decode)
    if bandwidth and args.real_size:
        bound = bandwidth / lm_weight_bytes(args.quantization)
        out["bandwidth_bound_tokens_per_s"] = round(bound, 1)
        if out.get("tokens_per_s"):
            out["tokens_per_s_of_bound"] = round(out["tokens_per_s"] / bound, 3)
    return out


# -- the vLLM path --------------------------------------------------------------------------------


def run_vllm_double(args) -> dict:
    from core.planner import PlannerSettings, make_plan
    from tests.doubles.openai_server import OpenAIServer
    from workers.backends.vllm.backend import VllmBackend

    settings = PlannerSettings(backend=VLLM.name, vllm_external=True, max_pages_at_once=args.batch or 4)
    plan = make_plan(None, settings).as_json()
    pages = page_images(args.pages, (448, 448))
    # Each answer names the page it was asked about (its size differs per page), so the order of
    # the results can be checked.
    sizes = {(448 + 28 * i, 448): i + 1 for i in range(args.pages)}
    pages = [p.resize((448 + 28 * i, 448)) for i, p in enumerate(pages)]
    with OpenAIServer(answer=lambda req: f"page {sizes.get(req.image_size, '?')}") as server:
        server.behaviour = "slow"
        server.slow_seconds = args.request_seconds
        backend = VllmBackend()
        backend.load({**plan, "vllm_url": server.url, "max_new_tokens": args.max_new_tokens})
        serial_s, serial = _timed(lambda: [backend.ocr(p, LAYOUT_ALL, never) for p in pages])
        server.max_in_flight = 0
        parallel_s, results = read_all(backend, pages, LAYOUT_ALL)
        order_kept = [results[n].text for n in sorted(results)] == [f"page {n}" for n in range(1, args.pages + 1)]
        backend.unload()
        return summary(
            "vllm (OpenAI-compatible double)",
            args.pages,
            plan["pages_at_once"],
            serial_s,
            parallel_s,
            order_kept=order_kept and [r.text for r in serial] == [results[n].text for n in sorted(results)],
            max_in_flight=server.max_in_flight,
            request_seconds=args.request_seconds,
        )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--tiny", action="store_true")
    which.add_argument("--vllm-double", action="store_true")
    which.add_argument("--gpu", action="store_true")
    parser.add_argument("--pages", type=int, default=8)
    parser.add_argument("--batch", type=int, default=0, help="pages at once (default: all / the planner's)")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--request-seconds", type=float, default=0.25)
    parser.add_argument("--real-size", action="store_true")
    parser.add_argument("--quantization", default="bf16", choices=["bf16", "int8", "nf4"])
    parser.add_argument("--max-pixels", type=int, default=3_885_504)
    parser.add_argument("--fast-decode", action="store_true")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each, alternating; the fastest counts")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.pages < 1:
        parser.error("--pages must be at least 1")
    if args.tiny:
        out = run_tiny(args)
    elif args.vllm_double:
        out = run_vllm_double(args)
    else:
        out = run_gpu(args)
    if args.json:
        print(json.dumps(out))
    else:
        width = max(len(k) for k in out)
        for key, value in out.items():
            print(f"{key.ljust(width)}  {value}")
    return out


if __name__ == "__main__":
    main()
