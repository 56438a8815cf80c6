"""The soak: 300 jobs from 10 concurrent API clients while faults are injected at random times, on a
whole ocrdash of real processes (tests/faults/stack.py: redis-server, uvicorn, Celery workers, SQLite),
with rapidocr reading one generated word per job. Prints the jobs, the faults injected, and how many
jobs were lost, stuck or run twice to the end, and the time from upload to result (p50, p95).

    .venv/bin/python bench/soak.py                       # 300 jobs, 10 clients, a fault every 10-25 s
    .venv/bin/python bench/soak.py --jobs 60 --clients 4 --every 5 10 --faults pool web

The recovery rounds are ocrdash's defaults (a dead worker is taken for lost after 30 s, a lost send
is sent again after 15 s). Exit status 1 when any job was lost, stuck, duplicated or read wrong.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.faults.soak import FAULTS, Soak  # noqa: E402
from tests.faults.stack import Stack, make_template  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--every", type=float, nargs=2, default=(10.0, 25.0), metavar=("MIN", "MAX"),
                        help="seconds between faults (uniform in this range)")
    parser.add_argument("--faults", nargs="*", default=list(FAULTS), choices=FAULTS)
    parser.add_argument("--pause", type=float, nargs=2, default=(0.5, 3.0), metavar=("MIN", "MAX"),
                        help="seconds each client waits between its uploads")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the folder with the logs and the database")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="ocrdash-soak-"))
    template = base / "template"
    template.mkdir()
    make_template(template)
    stack = Stack(base / "stack", template_db=template / "ocrdash.sqlite3")
    try:
        stack.start_all()
        print(f"soak: {args.jobs} jobs, {args.clients} clients, faults {', '.join(args.faults)} every "
              f"{args.every[0]:g}-{args.every[1]:g} s (logs in {base})", flush=True)
        started = time.monotonic()
        soak = Soak(stack, jobs=args.jobs, clients=args.clients, seed=args.seed,
                    log=lambda line: print(line, flush=True))
        result = soak.run(every=tuple(args.every), kinds=tuple(args.faults), pause=tuple(args.pause),
                          settle=600, give_up_after=600)
        print(f"\n== soak on this machine, {time.monotonic() - started:.0f} s ==")
        for line in result.lines():
            print(line)
        bad = result.lost or result.not_accepted or result.stuck or result.duplicated or result.wrong_text
        return 1 if bad else 0
    finally:
        stack.close()
        if not args.keep:
            import shutil

            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
