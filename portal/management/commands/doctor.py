"""python manage.py doctor [--json] [--only NAME,...] [--timeout SECONDS]

Checks the running system, one line per check (PASS or FAIL, what was seen, and on failure what to do):
the database (and its migrations), Redis, the Celery workers of each queue (sync, usage, evals), beat's
heartbeat, each gateway's health with its plugin and contract versions (GATEWAY_URLS), drift between
the database and the gateway's state, each project's Langfuse connection, and the clocks. Exit code 1
when any check fails. `--only beat` is compose's health check of the beat service. See portal/ops/checks.py."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from portal.ops import checks


class Command(BaseCommand):
    help = "Check the database, Redis, workers, beat, gateways, drift, Langfuse connections and clocks."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", dest="as_json", help="One JSON document instead of lines.")
        parser.add_argument("--only", default="", help=f"Comma-separated checks: {', '.join(checks.NAMES)} "
                            "(or a full name such as workers:usage).")
        parser.add_argument("--timeout", type=float, default=3.0, help="Seconds for each network check (3).")

    def handle(self, *args: Any, as_json: bool, only: str, timeout: float, **options: Any) -> None:
        names = [n for n in only.split(",") if n.strip()]
        unknown = [n for n in names if n.strip().split(":")[0] not in checks.NAMES]
        if unknown:
            self.stderr.write(f"doctor: unknown check {', '.join(unknown)}; the checks: {', '.join(checks.NAMES)}")
            sys.exit(2)
        if not 0 < timeout <= 600:  # also NaN; inf would bound nothing
            self.stderr.write("doctor: --timeout must be a number of seconds above 0 and at most 600")
            sys.exit(2)

        def show(check: checks.Check) -> None:
            if not as_json:
                self.stdout.write(check.line())
                self.stdout.flush()

        results = checks.run(names, timeout=timeout, on_check=show)
        failed = [c for c in results if not c.ok]
        if as_json:
            self.stdout.write(json.dumps({"ok": not failed, "checks": [c.as_json() for c in results]}, indent=2))
        else:
            self.stdout.write(f"{len(results) - len(failed)} passed, {len(failed)} failed")
        if failed:
            sys.exit(1)

