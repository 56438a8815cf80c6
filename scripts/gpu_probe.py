"""The GPU facts ocrdash relies on, checked against a real NVIDIA card (run by scripts/device_check.sh).

1. NVML through core.gpu: devices, memory, the processes holding it.
2. A second process allocates memory: the sampler sees the device's free memory drop by that much
   and attributes it to that pid.
3. The planner against the real card with that memory held by the other process, and whether
   its plan still fits a moment later (core.planner.fits_now).
4. GpuPeak (the per-job peak measurement) while this process allocates a known amount.
Prints one line per figure; exits 0 with a plain sentence where there is no GPU.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.backends import AUTO, TRANSFORMERS, VLLM  # noqa: E402
from core.gpu import read_snapshot  # noqa: E402
from core.gpupeak import GpuPeak  # noqa: E402
from core.planner import PlannerSettings, fits_now, make_plan  # noqa: E402

GiB = 1024**3
HOLD = """
import sys, torch
x = torch.empty(int(float(sys.argv[1]) * 2**30), dtype=torch.uint8, device="cuda:0")
torch.cuda.synchronize(); print("holding", flush=True); sys.stdin.read()
"""


def gib(n):
    return "—" if n is None else f"{n / GiB:.2f} GiB"


def main() -> int:
    snap = read_snapshot()
    if not snap.devices:
        print(f"no GPU: {snap.error} ({snap.details.get('reason', '')})")
        return 0
    d = snap.devices[0]
    print(f"device: {d.name}, cc {d.compute_capability}, driver {snap.driver_version}")
    print(f"memory: total {gib(d.total_bytes)}, used {gib(d.used_bytes)}, free {gib(d.free_bytes)}, "
          f"reserved {gib(d.reserved_bytes)}")
    print(f"utilization {d.utilization_percent}%, {d.temperature_c} °C, {d.power_watts} W of {d.power_limit_watts} W")
    print(f"unavailable fields: {snap.details.get('unavailable', [])}")

    hold_gib = max(1.0, round(d.free_bytes / GiB * 0.6, 1))
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(hold_gib)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "holding"
    time.sleep(1.0)
    after = read_snapshot().devices[0]
    seen = {p.pid: p.used_bytes for p in after.processes}
    print(f"second process pid {holder.pid} holds {hold_gib} GiB: free dropped by "
          f"{gib(d.free_bytes - after.free_bytes)}; NVML attributes {gib(seen.get(holder.pid))} to that pid "
          f"({'seen' if holder.pid in seen else 'NOT seen'})")

    for backend in (AUTO, VLLM.name, TRANSFORMERS.name):
        try:
            plan = make_plan(read_snapshot(), PlannerSettings(backend=backend))
            ok, why = fits_now(plan, read_snapshot())
            print(f"plan ({backend}): {plan.summary}; estimated {gib(plan.estimated_bytes)}; "
                  f"utilization {plan.gpu_memory_utilization}; still fits: {ok} ({why})")
        except Exception as exc:  # PlanRefused prints its reasons
            print(f"plan ({backend}): refused: {getattr(exc, 'headline', exc)}")

    import torch

    with GpuPeak(read_snapshot, 0, lambda pid, role: pid == __import__("os").getpid(), interval=0.05) as peak:
        block = torch.empty(2 * GiB, dtype=torch.uint8, device="cuda:0")
        torch.cuda.synchronize()
        time.sleep(0.5)
        del block
    print(f"GpuPeak while this process held 2 GiB (+ its CUDA context): {gib(peak.peak())}; "
          f"free at start {gib(peak.free_at_start)}")
    holder.stdin.close()
    holder.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
