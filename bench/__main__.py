"""``bench/run [NAME ...]``: start throwaway services, run the measurements, print a table.

Absolute times depend on the machine and its neighbours; the ratios compare figures taken in
the same run, interleaved where it matters, and are what the targets apply to.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Coroutine
from typing import Any

from bench import access, breakdown, calls, guard, load, profiling, scale, startup, versus
from bench.harness import Report, Services, section

Measurement = Callable[[Services, Report], Coroutine[Any, Any, None]]

#: name → (title, function), in the order a full run takes them.
MEASUREMENTS: dict[str, tuple[str, Measurement]] = {
    "overhead": ("1. per-call overhead", calls.overhead),
    "concurrency": ("2. concurrency", calls.concurrency),
    "tenants": ("3. many tenants", scale.tenants),
    "rows": ("4a. large results: 1,000,000-row query", scale.rows),
    "objects": ("4b. large objects and listings", scale.objects),
    "coldstart": ("5. cold start", startup.coldstart),
    "profile": ("6. profile of query SELECT 1", profiling.profile),
    "load": ("7. replicas behind HAProxy under load", load.load),
    "guard": ("8. the read-only guard's cost per call, in process", guard.guard),
    "peers": ("9. against the peers: PostgreSQL (SELECT 1, 1,000 and 100,000 rows, peak RSS)", versus.peers),
    "s3peers": ("10. against the peers: S3 list_objects of 1,000 keys", versus.s3peers),
    "cli": ("11. operator CLI wall time", startup.cli),
    "breakdown": ("12. where a call's time goes: query and list_objects", breakdown.breakdown),
    "access": ("13. what authorization and the audit trail cost per call", access.access),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"one of: {', '.join(MEASUREMENTS)} (default: all)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in MEASUREMENTS]
    if unknown:
        parser.error(f"unknown measurement {', '.join(unknown)}; choose from {', '.join(MEASUREMENTS)}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    began = time.monotonic()
    print(
        f"python {sys.version.split()[0]} ({sys.executable}), {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    report = Report()
    with Services() as services:
        for name in args.names or list(MEASUREMENTS):
            title, measure = MEASUREMENTS[name]
            with section(title):
                try:
                    asyncio.run(measure(services, report))
                except Exception as exc:  # one broken measurement must not cost the others
                    traceback.print_exc()
                    report.row(title, "-", f"ERROR: {type(exc).__name__}", "-", False)
    print(f"\nSummary ({time.monotonic() - began:.0f} s in all, load average {os.getloadavg()[0]:.2f}):\n")
    print(report.table())
    return 1 if args.strict and any(row.verdict == "FAIL" for row in report.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
