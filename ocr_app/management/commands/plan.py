"""`python manage.py plan`: what the memory planner would run, and why.

For this machine's GPU as it is now (read through NVML), or for a card described on the command
line: `--total 11.94GiB --free 5.81GiB [--cc 8.6] [--backend vllm]`. Prints the reasons first,
then the launch parameters; `--json` prints the plan as the dashboard receives it. A forced backend
that cannot fit prints the reasons and exits with an error.
"""

from __future__ import annotations

import json
from dataclasses import replace

from django.core.management.base import BaseCommand, CommandError

from core import backends
from core.backends import LLAMACPP, TRANSFORMERS, VLLM
from core.modelfacts import GiB
from core.planner import BACKEND_SETTINGS, Device, Plan, PlannerSettings, PlanRefused, make_plan, parse_size
from ocr_app import backendconfig


def _size(text: str, what: str) -> int:
    try:
        value = parse_size(text)
    except ValueError as exc:
        raise CommandError(f"--{what}: {exc}") from exc
    return value


def _compute_capability(text: str) -> tuple[int, int]:
    try:
        major, _, minor = text.strip().partition(".")
        return int(major), int(minor or 0)
    except ValueError as exc:
        raise CommandError(f"--cc: {text!r} is not a compute capability such as 8.6 or 9.0") from exc


class Command(BaseCommand):
    help = (
        "Print the memory plan for this machine's GPU now, or for a hypothetical card "
        "(--total 11.94GiB --free 5.81GiB [--cc 8.6] [--backend vllm]), as text or --json."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--total", help="Total memory of a hypothetical card, e.g. 11.94GiB, 12GB, 6000MiB."
        )
        parser.add_argument("--free", help="Free memory of that card (GiB when no unit is given).")
        parser.add_argument("--cc", help="Its CUDA compute capability, e.g. 8.6 (decides bf16 and fp8).")
        parser.add_argument("--name", default="hypothetical card", help="A name for that card in the text.")
        parser.add_argument(
            "--backend",
            choices=BACKEND_SETTINGS,
            help="Force a backend (default: auto, or the admin's setting for this GPU).",
        )
        parser.add_argument("--max-pixels", type=int, help="The largest image the settings allow, in pixels.")
        parser.add_argument("--max-new-tokens", type=int, help="The output budget per page, in tokens.")
        parser.add_argument("--allow-cpu", action="store_true", help="Allow the (slow) CPU path.")
        parser.add_argument(
            "--ram", help="RAM available for the CPU path (default: this machine's MemAvailable)."
        )
        parser.add_argument("--no-vllm", action="store_true", help="Plan as if no vLLM server were set up.")
        parser.add_argument("--no-fp8", action="store_true", help="Do not consider vLLM's fp8 quantization.")
        parser.add_argument("--no-gguf", action="store_true", help="Plan as if llama.cpp (GGUF) were not set up.")
        parser.add_argument("--reserve", help="Fixed part of the memory left to others (default 0.5GiB).")
        parser.add_argument("--json", action="store_true", help="Print the plan as JSON.")

    def handle(self, *args, **opts):
        gpu = self._gpu(opts)
        settings = self._settings(opts, admins=isinstance(gpu, list) is False)
        try:
            plan = make_plan(gpu, settings)
        except PlanRefused as refused:
            if opts["json"]:
                self.stdout.write(json.dumps(refused.as_json(), indent=2, ensure_ascii=False))
            else:
                self.stdout.write("\n".join(f"- {r}" for r in refused.reasons))
            raise CommandError(
                f"the {refused.backend} backend cannot start here. {refused.headline}"
            ) from None
        if opts["json"]:
            self.stdout.write(json.dumps(plan.as_json(), indent=2, ensure_ascii=False))
        else:
            self.stdout.write(self._text(plan))

    def _settings(self, opts, admins: bool) -> PlannerSettings:
        """This machine's GPU is planned with the admin's backend settings (as the worker does);
        a hypothetical card with the defaults. Flags override either."""
        if admins:
            from ocr_app.models import BackendSettings

            settings = backendconfig.planner_settings(BackendSettings.load())
        else:
            settings = PlannerSettings()
        changes = {}
        if opts["backend"]:
            changes["backend"] = opts["backend"]
        if opts["max_pixels"] is not None:
            changes["max_pixels"] = opts["max_pixels"]
        if opts["max_new_tokens"] is not None:
            changes["max_new_tokens"] = opts["max_new_tokens"]
        if opts["allow_cpu"]:
            changes["allow_cpu"] = True
            changes["cpu_ram_bytes"] = _size(opts["ram"], "ram") if opts["ram"] else backendconfig.ram_bytes()
        if opts["no_vllm"]:
            changes["vllm_allowed"] = False
        if opts["no_fp8"]:
            changes["fp8_allowed"] = False
        if opts["no_gguf"]:
            changes["llamacpp_unavailable"] = "llama.cpp is left out (--no-gguf)"
        if opts["reserve"]:
            changes["reserve_bytes"] = _size(opts["reserve"], "reserve")
        try:
            return replace(settings, **changes)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc

    def _gpu(self, opts):
        if opts["total"] is None and opts["free"] is None:
            if opts["cc"]:
                raise CommandError("--cc describes a hypothetical card: give --total and --free with it")
            return self._this_machine()
        if opts["total"] is None or opts["free"] is None:
            raise CommandError(
                "a hypothetical card needs both --total and --free, e.g. --total 12GB --free 5.8GB"
            )
        total, free = _size(opts["total"], "total"), _size(opts["free"], "free")
        if total <= 0:
            raise CommandError("--total must be more than zero")
        if free > total:
            raise CommandError(
                f"--free ({free / GiB:.2f} GiB) cannot be more than --total ({total / GiB:.2f} GiB)"
            )
        cc = _compute_capability(opts["cc"]) if opts["cc"] else None
        return [Device(index=0, total_bytes=total, free_bytes=free, compute_capability=cc, name=opts["name"])]

    def _this_machine(self):
        from core import gpu

        return gpu.read_snapshot()

    def _text(self, plan: Plan) -> str:
        lines = ["Why:"] + [f"  - {r}" for r in plan.reasons] + ["", f"Plan: {plan.summary}"]
        rows: list[tuple[str, object]] = [("backend", plan.backend), ("variant", plan.variant)]
        if backends.runs_dots(plan.backend):
            rows += [
                ("quantization", plan.quantization or "none"),
                ("dtype", plan.dtype or "-"),
                ("device", "-" if plan.device_index is None else f"{plan.device_index} ({plan.device_name})"),
                ("max_pixels", f"{plan.max_pixels:,} ({plan.max_image_tokens:,} image tokens)"),
                ("max_new_tokens", f"{plan.max_new_tokens:,}"),
                ("estimated memory", f"{plan.estimated_bytes / GiB:.2f} GiB of {plan.memory.upper()}"),
                ("pages at once", plan.pages_at_once),
            ]
        if plan.backend == VLLM.name and not plan.vllm_external:
            rows += [
                ("gpu_memory_utilization", plan.gpu_memory_utilization),
                ("max_model_len", f"{plan.max_model_len:,}"),
                ("max_num_seqs", plan.max_num_seqs),
                ("max_num_batched_tokens", f"{plan.max_num_batched_tokens:,}"),
                ("enforce_eager", plan.enforce_eager),
                ("kv cache", f"{plan.kv_cache_bytes / GiB:.2f} GiB"),
                ("vllm serve flags", " ".join(_quote(a) for a in plan.vllm_args())),
            ]
        if plan.backend == LLAMACPP.name:
            rows += [
                ("gpu_layers", f"{plan.gpu_layers} of {plan.total_layers}"),
                ("vision projector", f"{plan.projector_type} on the {'GPU' if plan.projector_on_gpu else 'CPU'}"),
                ("n_ctx", f"{plan.n_ctx:,}"),
            ]
        if plan.backend == TRANSFORMERS.name:
            rows.append(("max_memory", {k: f"{v / GiB:.2f}GiB" for k, v in (plan.max_memory or {}).items()}))
        rows.append(("on CUDA out of memory", " → ".join(plan.fallbacks) or "nothing further"))
        width = max(len(k) for k, _ in rows)
        lines += [f"  {k.ljust(width)}  {v}" for k, v in rows]
        return "\n".join(lines)


def _quote(arg: str) -> str:
    return f"'{arg}'" if any(c in arg for c in ' {}"') else arg
