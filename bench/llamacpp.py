"""Seconds per page and tokens per second of the llama.cpp backend, and its peak GPU memory.

    .venv/bin/python bench/llamacpp.py [--runs 5] [--max-new-tokens 32] [--max-pixels 1003520]
    .venv/bin/python bench/llamacpp.py --real-size [--runs 2] [--partial-layers 15]   (CUDA build, GPU)

Without --real-size: the tiny dots.ocr-shaped model of the tests, converted to GGUF (Q8_0 language
model, F16 projector) with llama.cpp's converter, read on the CPU as the planner's no-GPU plan
says (gpu_layers 0, every core): the median seconds per page over --runs pages after a warm-up.

With --real-size (scripts/device_check.sh): a random-weight model of dots.ocr's real dimensions is
built on the GPU, converted to a Q8_0 and a Q4_K_M language model (Q4_K_M through llama.cpp's own
quantizer) and an F16 projector, and each is read at full offload (29 of 29 layers and the
projector on the GPU) and at partial offload (--partial-layers on the GPU, the projector still on
the GPU so the figure is the language model's split). The peak is the rise of the GPU's used memory
(NVML) over the run. Random weights give random text: every page runs to --max-new-tokens, so the
figures measure the machinery, not the reading.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.backends import a4_page, never  # noqa: E402
from core.dots import prompts  # noqa: E402

GiB = 1024**3


def cache_dir() -> Path:
    return Path(os.environ.get("OCRDASH_TEST_CACHE") or Path.home() / ".cache" / "ocrdash-tests")


def read_pages(lm: Path, mmproj: Path, plan: dict, runs: int, gpu_index: int | None = None) -> dict:
    from workers.backends.llamacpp.backend import LlamaCppBackend

    backend = LlamaCppBackend()
    args = {**plan, "lm_path": str(lm), "mmproj_path": str(mmproj)}
    peak = None
    if gpu_index is not None:
        from core.gpu import read_snapshot
        from core.gpupeak import GpuPeak

        peak = GpuPeak(read_snapshot, gpu_index, lambda pid, role: pid == os.getpid(), interval=0.1)
        peak.__enter__()
    image = a4_page()
    try:
        start = time.perf_counter()
        backend.load(args)
        load_s = time.perf_counter() - start
        backend.ocr(image, prompts.LAYOUT_ALL, never)
        seconds, rates, details = [], [], {}
        for _ in range(runs):
            start = time.perf_counter()
            result = backend.ocr(image, prompts.LAYOUT_ALL, never)
            seconds.append(time.perf_counter() - start)
            details = result.details
            if details.get("tokens_per_second"):
                rates.append(details["tokens_per_second"])
    finally:
        backend.unload()
        if peak is not None:
            peak.__exit__(None, None, None)
    return {
        "gpu_layers": plan.get("gpu_layers"),
        "projector_on_gpu": bool(plan.get("projector_on_gpu")),
        "load_s": round(load_s, 2),
        "s_per_page": round(statistics.median(seconds), 3),
        "tokens_per_s": round(statistics.median(rates), 1) if rates else None,
        "first_token_s": details.get("first_token_seconds"),
        "new_tokens": details.get("new_tokens"),
        "image_tokens": details.get("image_tokens"),
        "peak_gpu_gib": round(peak.peak() / GiB, 2) if peak is not None and peak.peak() else None,
    }


def tiny_cpu(args) -> list[dict]:
    from core.planner import PlannerSettings, make_plan
    from tests.fixtures.tiny_dots.gguf import tiny_gguf_pair

    lm, mmproj = tiny_gguf_pair(cache_dir())
    from core.backends import LLAMACPP

    settings = PlannerSettings(backend=LLAMACPP.name, max_pixels=args.max_pixels, max_new_tokens=args.max_new_tokens)
    plan = make_plan(None, settings).as_json()
    row = read_pages(lm, mmproj, plan, args.runs)
    return [{"model": "tiny (tests/fixtures/tiny_dots), Q8_0 + F16 projector", "where": "CPU", **row}]


def real_size(args) -> list[dict]:
    import llama_cpp

    from tests.fixtures.tiny_dots.build import REAL_SIZES, build_tiny_model
    from tests.fixtures.tiny_dots.gguf import convert, converter_dir

    scratch = Path(tempfile.mkdtemp(prefix="ocrdash-gguf-real-"))
    model = build_tiny_model(scratch / "hf", sizes=REAL_SIZES, device="cuda")
    converter = converter_dir(cache_dir())
    files = {
        "Q8_0": convert(model, scratch / "lm-q8_0.gguf", converter, mmproj=False, outtype="q8_0"),
        "F16": convert(model, scratch / "lm-f16.gguf", converter, mmproj=False, outtype="f16"),
    }
    mmproj = convert(model, scratch / "mmproj-f16.gguf", converter, mmproj=True, outtype="f16")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    files["Q4_K_M"] = scratch / "lm-q4_k_m.gguf"
    llama_cpp.llama_model_quantize(str(files["F16"]).encode(), str(files["Q4_K_M"]).encode(), params)
    rows = []
    n_ctx = 4096 + 512 + args.max_new_tokens
    for quantization in ("Q8_0", "Q4_K_M"):
        for label, layers in (("full", 29), ("partial", args.partial_layers)):
            plan = {
                "quantization": quantization, "gpu_layers": layers, "projector_on_gpu": True, "n_ctx": n_ctx,
                "max_pixels": args.max_pixels, "max_new_tokens": args.max_new_tokens, "device_index": 0,
            }  # fmt: skip
            row = read_pages(files[quantization], mmproj, plan, args.runs, gpu_index=0)
            size = files[quantization].stat().st_size / GiB
            rows.append({"model": f"real size, {quantization} ({size:.2f} GiB)", "where": f"{label} offload", **row})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--max-pixels", type=int, default=1280 * 28 * 28)
    parser.add_argument("--real-size", action="store_true", help="dots.ocr's real dimensions on the GPU")
    parser.add_argument("--partial-layers", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = real_size(args) if args.real_size else tiny_cpu(args)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"llama.cpp backend, {args.runs} pages after a warm-up, {args.max_new_tokens} new tokens, medians:")
    for row in rows:
        print(
            f"  {row['model']:<48} {row['where']:<16} layers {row['gpu_layers']!s:>2}  "
            f"{row['s_per_page']:>7.3f} s/page  {row['tokens_per_s'] or '-':>7} tokens/s  "
            f"first token {row['first_token_s']} s  peak GPU {row['peak_gpu_gib'] or '-'} GiB"
        )


if __name__ == "__main__":
    main()
