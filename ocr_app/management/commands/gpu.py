"""`python manage.py gpu status|free|stop-container` — the GPU memory manager on the command line."""

from __future__ import annotations

import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from core.gpu import gib, sample_to_event
from ocr_app import gpumanager, livestate


def _user(name: str | None):
    if not name:
        raise CommandError("Say who you are with --user NAME (an admin account): every action is logged.")
    try:
        return get_user_model().objects.get(username=name)
    except get_user_model().DoesNotExist:
        raise CommandError(f"No account named {name!r}.") from None


class Command(BaseCommand):
    help = "GPU status, and freeing the GPU memory ocrdash holds (admins only)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        status = sub.add_parser("status", help="Devices, memory, and the processes and containers holding it.")
        status.add_argument("--json", action="store_true", help="Print JSON instead of text.")
        free = sub.add_parser("free", help="Unload ocrdash's model, stop ocrdash's vLLM container, empty caches.")
        free.add_argument("--user", help="The admin account doing it (logged).")
        free.add_argument("--dry-run", action="store_true", help="Only say what would be done.")
        stop = sub.add_parser("stop-container", help="Stop another container that holds GPU memory (superusers).")
        stop.add_argument("name", help="The container's name, exactly.")
        stop.add_argument("--user", help="The superuser account doing it (logged).")

    def handle(self, *args, action: str, **options):
        if action == "status":
            return self.status(options["json"])
        if action == "free":
            return self.free(_user(options["user"]), options["dry_run"])
        return self.stop(_user(options["user"]), options["name"])

    def status(self, as_json: bool) -> None:
        snapshot = gpumanager.labelled_snapshot()
        body = sample_to_event(snapshot)
        try:
            body["workers"] = livestate.live_workers()
        except Exception as exc:
            body["workers"] = {}
            body["workers_error"] = f"Redis not reachable: {exc}"
        if as_json:
            self.stdout.write(json.dumps(body, indent=2))
            return
        if body["error"]:
            self.stdout.write(body["error"])
        for d in body["devices"]:
            self.stdout.write(
                f"GPU {d['index']}: {d['name']} — {gib(d['used'])} used, "
                f"{gib(d['free'])} free of {gib(d['total'])}"
                + (f", {d['utilization']}% busy" if d["utilization"] is not None else "")
                + (f", {d['temperature']} °C" if d["temperature"] is not None else "")
                + (f", {d['power']:.0f} W" if d["power"] is not None else "")
            )
            for p in d["processes"]:
                who = " ".join(
                    x for x in [f"[{p['container']}]" if p["container"] else "", f"(ocrdash {p['role']})"
                                if p["role"] else ""] if x
                )
                self.stdout.write(f"  pid {p['pid']:>7}  {gib(p['used_bytes']):>10}  {p['name']} {who}")
            if not d["processes"]:
                self.stdout.write("  no processes hold memory")
        for name, record in sorted(body["workers"].items()):
            status = record.get("backend_status") or {}
            self.stdout.write(
                f"worker {name}: backend {status.get('backend') or '—'} {status.get('state', 'unknown')}"
            )

    def free(self, user, dry_run: bool) -> None:
        try:
            gpumanager.check_staff(user, "free GPU memory")
        except gpumanager.NotAllowed as exc:
            raise CommandError(str(exc)) from None
        snapshot = gpumanager.labelled_snapshot()
        steps = gpumanager.free_plan(snapshot, livestate.live_workers())
        self.stdout.write("This will:")
        for step in steps:
            expect = f" (should free about {gib(step.expected_bytes)})" if step.expected_bytes else ""
            self.stdout.write(f"  - {step.what}{expect}")
        self.stdout.write("  - never stop other containers or kill any process")
        if dry_run:
            return
        action = gpumanager.free(user, "cli")
        for step in action.steps:
            self.stdout.write(f"{'ok' if step['ok'] else '--' if step['ok'] is None else 'FAILED'}: "
                              f"{step['what']}: {step['outcome']}")
        self.stdout.write(f"Freed {gib(action.freed_bytes)} (measured before and after).")

    def stop(self, user, name: str) -> None:
        try:
            action = gpumanager.stop_container(user, name, "cli")
        except (gpumanager.NotAllowed, ValueError) as exc:
            raise CommandError(str(exc)) from None
        step = action.steps[0]
        self.stdout.write(f"{step['what']}: {step['outcome']}. Freed {gib(action.freed_bytes)}.")
        if not action.ok:
            raise CommandError("The container was not stopped.")
