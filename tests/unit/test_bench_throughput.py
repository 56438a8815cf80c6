"""bench/throughput.py measures what it says: the pages really run at once and come back in the
document's order (the timings themselves are the script's to print, not a test's to assert)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_vllm_double_run_reaches_the_planned_concurrency_and_keeps_the_order():
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "throughput.py"), "--vllm-double", "--pages", "6",
         "--request-seconds", "0.05", "--json"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"backend", "pages", "serial_s_per_page", "parallel_s_per_page", "speedup"} <= set(out)
    assert out["pages"] == 6 and out["pages_at_once"] == 4  # the planner's for an external server
    assert out["max_in_flight"] == out["pages_at_once"]
    assert out["order_kept"] is True


def test_the_bench_refuses_a_document_without_pages():
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "throughput.py"), "--tiny", "--pages", "0"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 2 and "--pages must be at least 1" in done.stderr
