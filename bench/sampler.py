"""CPU cost of sampling the GPU once a second.

    .venv/bin/python bench/sampler.py [--seconds 30] [--nvml auto|real|double] [--recording rtx3060_shared]

Each second it does what the GPU monitor does: read a snapshot through `NvmlReader` (real NVML
where a GPU answers, else the recorded double from tests/data/nvml), match the processes to
containers (/proc and the Docker SDK), build the `gpu.sample` event and serialise it to JSON.
It prints the CPU time the process used per wall-clock second, as a percent of one core: the
median of 10-second windows, and the CPU time of one sample. The target is under 1%.
Exits 1 when the median is over the target.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.containers import ContainerNames, label_processes  # noqa: E402
from core.gpu import NvmlReader, sample_to_event  # noqa: E402

TARGET_PERCENT = 1.0
WINDOW_SECONDS = 10.0


def choose_nvml(kind: str, recording: str):
    """(nvml module or double, a line saying which)."""
    reason = ""
    if kind in ("auto", "real"):
        try:
            import pynvml
        except ImportError as exc:
            pynvml, reason = None, f"nvidia-ml-py is not installed ({exc})"
        if pynvml is not None:
            probe = NvmlReader(pynvml).read()
            if probe.has_gpu or kind == "real":
                names = ", ".join(d.name for d in probe.devices) or probe.details.get("reason", "")
                return pynvml, f"real NVML (nvidia-ml-py {_version('nvidia-ml-py')}): {names}"
            reason = probe.details.get("reason", probe.error or "")
    from tests.doubles.fake_pynvml import FakeNvml

    why = f" - no NVIDIA GPU answers here ({reason})" if reason else ""
    return FakeNvml(recording), f"recorded double tests/data/nvml/{recording}.json{why}"


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def cpu_seconds() -> float:
    return time.process_time()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to sample (default 30)")
    parser.add_argument("--nvml", choices=("auto", "real", "double"), default="auto")
    parser.add_argument(
        "--recording", default="rtx3060_shared", help="which tests/data/nvml recording the double plays"
    )
    args = parser.parse_args()

    nvml, which = choose_nvml(args.nvml, args.recording)
    print(f"NVML: {which}")
    reader = NvmlReader(nvml)
    names = ContainerNames()
    own = {os.getpid(): "worker"}

    def sample() -> str:
        snapshot = label_processes(reader.read(), names, own)
        return json.dumps(sample_to_event(snapshot))

    first = sample()  # session start and imports are not part of the steady state
    print(f"devices: {len(json.loads(first)['devices'])}, event: {len(first)} bytes")
    if names.reason:
        print(f"containers: {names.reason}")

    per_sample: list[float] = []
    windows: list[float] = []
    start_wall = window_wall = time.monotonic()
    start_cpu = window_cpu = cpu_seconds()
    start_usage = resource.getrusage(resource.RUSAGE_SELF)
    next_tick = start_wall
    while True:
        next_tick += 1.0
        delay = next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        now = time.monotonic()
        if now - start_wall >= args.seconds:
            break
        before = cpu_seconds()
        sample()
        per_sample.append(cpu_seconds() - before)
        if now - window_wall >= WINDOW_SECONDS:
            cpu = cpu_seconds()
            windows.append(100 * (cpu - window_cpu) / (now - window_wall))
            window_wall, window_cpu = now, cpu

    if now - window_wall >= WINDOW_SECONDS / 2:  # the last window, if it is long enough to count
        windows.append(100 * (cpu_seconds() - window_cpu) / (now - window_wall))
    wall = time.monotonic() - start_wall
    cpu = cpu_seconds() - start_cpu
    usage = resource.getrusage(resource.RUSAGE_SELF)
    user = usage.ru_utime - start_usage.ru_utime
    system = usage.ru_stime - start_usage.ru_stime
    reader.close()
    names.close()

    if not windows:  # shorter than one window: the whole run is the window
        windows.append(100 * cpu / wall)
    median = statistics.median(windows)
    print(
        f"samples: {len(per_sample)} in {wall:.1f} s wall, {cpu * 1000:.1f} ms CPU"
        f" (user {user * 1000:.1f} ms, sys {system * 1000:.1f} ms)"
    )
    one = statistics.median(per_sample) * 1e6
    print(f"CPU per sample: median {one:.0f} us, max {max(per_sample) * 1e6:.0f} us")
    print(f"{len(windows)} window(s) of {WINDOW_SECONDS:.0f} s: " + ", ".join(f"{w:.3f}%" for w in windows))
    verdict = "met" if median < TARGET_PERCENT else "MISSED"
    print(f"CPU at 1 Hz: median {median:.3f}% of one core (target < {TARGET_PERCENT:.0f}%: {verdict})")
    return 0 if median < TARGET_PERCENT else 1


if __name__ == "__main__":
    sys.exit(main())
