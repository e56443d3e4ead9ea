"""python manage.py smoke [--org SLUG] [--project ID] [--route NAME] [--gateway URL]

One real journey through the running system: a short-lived key (10 minutes, $0.50, one route, audited)
calls the route through the gateway without and with streaming, the usage consumer records both,
the project's Langfuse (if it has one) has both traces, the key is revoked and then refused (401).
Prints each step with its time; exit code 1 when a step fails. The key is always revoked.
Without --org/--project/--route: the first organization with a project, its first project and its
first active route. See portal/ops/smoke.py."""

from __future__ import annotations

import sys
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from portal.logs import bind_request_id
from portal.ops.smoke import Smoke, SmokeError, Step, resolve


class Command(BaseCommand):
    help = "Issue a short-lived key, call a route through the gateway, check usage and traces, revoke it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", help="The organization's slug.")
        parser.add_argument("--project", type=int, help="The project's id.")
        parser.add_argument("--route", help="The route's name.")
        parser.add_argument("--gateway", help="The gateway's base URL (default GATEWAY_INTERNAL_URL).")

    def handle(self, *args: Any, org: str | None, project: int | None, route: str | None, gateway: str | None,
               **options: Any) -> None:
        try:
            target = resolve(org, project, route, gateway)
        except SmokeError as exc:
            self.stdout.write(Step("target", False, 0.0, exc.detail, exc.fix).line())
            sys.exit(1)
        # One request id for every call of the run, printed: the gateway's log lines of this run carry it.
        request_id = f"smoke-{uuid.uuid4().hex[:16]}"
        self.stdout.write(f"smoke: {target.org.slug}/{target.project.name} (project {target.project.pk}), "
                          f"route '{target.route.name}', gateway {target.gateway}, request id {request_id}")

        def show(step: Step) -> None:
            self.stdout.write(step.line())
            self.stdout.flush()

        smoke = Smoke(target, report=show)
        with bind_request_id(request_id):
            ok = smoke.run()
        total = sum(s.seconds for s in smoke.steps)
        failed = [s for s in smoke.steps if not s.ok]
        self.stdout.write(f"{len(smoke.steps) - len(failed)} passed, {len(failed)} failed in {total:.2f} s")
        if not ok:
            sys.exit(1)
