"""python manage.py seed_demo [--langfuse-host URL --langfuse-public-key PK --langfuse-secret-key SK]

Idempotent: makes sure the demo organization exists (owner with a password,
a team, a project, routes backed by `mock_response` deployments), then issues
a fresh demo key and API token and prints them. It also seeds 30 days of the
demo key's usage, and, with a Langfuse (`LANGFUSE_HOST`, `LANGFUSE_PUBLIC_KEY`,
`LANGFUSE_SECRET_KEY`, or the options; `make demo` starts the stand-in when none
is configured), connects the project to it and seeds traces, an evaluator, a
schedule, a finished run with its report, a dataset and a benchmark
(`_demo_evals.py`)."""

from __future__ import annotations

import json
import os
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from gateway.models import ModelRoute, VirtualKey
from gateway.services import keys, routes
from portal import services
from portal.access import actor_for_user, system_actor
from portal.management.commands import _demo_evals
from portal.models import ApiToken, Membership, Organization, OrgRole, Project, Team, TeamRole

ORG, OWNER, PASSWORD = "demo", "admin@demo.local", "portal-demo"
# name, description, the mock's answer, fallbacks, $ per million input and output tokens
ROUTES = [
    ("chat", "The default chat model (mock).", "Hello from the demo gateway! (mock_response)", ["fast"], "3", "15"),
    ("fast", "A cheaper fallback model (mock).", "A quick answer from the fast route. (mock_response)", [], "0.15", "0.6"),
    ("code", "For Cline: a coding model (mock).", "def hello():\n    return 'world'  # mock_response", ["chat"], "3", "15"),
    ("judge", "The evaluations' LLM judge and report writer (mock: it always gives a 4).",
     _demo_evals.judge_answer(), [], "0.15", "0.6"),
]


class Command(BaseCommand):
    help = "Seed the demo organization and print a login, an API token and a demo key."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--json", action="store_true", help="Print the credentials as one JSON object.")
        parser.add_argument("--langfuse-host", default=os.environ.get("LANGFUSE_HOST", ""))
        parser.add_argument("--langfuse-public-key", default=os.environ.get("LANGFUSE_PUBLIC_KEY", ""))
        parser.add_argument("--langfuse-secret-key", default=os.environ.get("LANGFUSE_SECRET_KEY", ""))

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        org = Organization.objects.filter(slug=ORG).first()
        if org is None:
            org = services.organization_create(slug=ORG, name="Demo Org", owner_email=OWNER, label="seed_demo")
        owner = Membership.objects.get(organization=org, role=OrgRole.OWNER).user
        if not owner.has_usable_password():
            owner.set_password(PASSWORD)
            owner.is_staff = owner.is_superuser = True
            owner.save()
        system = system_actor(org, "seed_demo")
        team = Team.objects.filter(organization=org, name="platform").first() or services.team_create(
            actor=system, data={"name": "platform", "description": "The demo team"})
        if not team.memberships.filter(user=owner).exists():
            services.team_member_add(actor=system, team=team, email=OWNER, role=TeamRole.ADMIN)
        project = Project.objects.filter(organization=org, name="assistant").first() or services.project_create(
            actor=system, data={"name": "assistant", "team": team, "description": "The demo project"})
        for name, description, answer, _, per_input, per_output in ROUTES:
            if not ModelRoute.objects.filter(organization=org, name=name).exists():
                routes.route_create(actor=system, data={
                    "name": name, "description": description, "num_retries": 1,
                    "input_cost_per_million": per_input, "output_cost_per_million": per_output,
                    "deployments": [{"credential": None, "model": f"demo-{name}",
                                     "litellm_params": {"mock_response": answer}}]})
        for name, _, _, fallbacks, _, _ in ROUTES:
            route = ModelRoute.objects.get(organization=org, name=name)
            if fallbacks and not route.fallback_links.exists():
                targets = list(ModelRoute.objects.filter(organization=org, name__in=fallbacks))
                routes.route_update(actor=system, route=route, data={"fallbacks": targets})

        actor = actor_for_user(org, owner)
        for old in ApiToken.objects.filter(organization=org, name="demo token", revoked_at=None):
            services.api_token_revoke(actor=actor, token=old)
        _, token = services.api_token_create(actor=actor, name="demo token", role=OrgRole.OWNER)
        key = VirtualKey.objects.filter(organization=org, name="demo key").exclude(status="revoked").first()
        if key is None:
            issued = keys.key_create(actor=actor, data={
                "name": "demo key", "team": team, "project": project, "owner": owner,
                "max_budget": 5, "budget_period": "daily", "rpm_limit": 120})
        else:
            issued = keys.key_rotate(actor=actor, key=key)
        used = _demo_evals.seed_usage(issued.key)
        evals = self.evaluations(system, project, options)
        info = {
            "web_url": "http://127.0.0.1:8000/", "login": OWNER, "password": PASSWORD,
            "api_token": token, "org": ORG, "demo_key": issued.plaintext, "gateway_url": settings.GATEWAY_PUBLIC_URL,
            "cline": issued.cline, "project": project.pk, "usage_events_added": used, **evals,
        }
        if options["json"]:
            self.stdout.write(json.dumps(info))
            return
        self.stdout.write(self.style.SUCCESS("Demo organization ready."))
        for label, value in (("Web UI", info["web_url"]), ("Login", f"{OWNER} / {PASSWORD}"),
                             ("API token", token), ("API docs", "http://127.0.0.1:8000/api/v1/docs/"),
                             ("Demo key", issued.plaintext)):
            self.stdout.write(f"  {label:10} {value}")

    def evaluations(self, system: Any, project: Project, options: dict[str, Any]) -> dict[str, Any]:
        """The project's Langfuse connection, traces and evaluation objects (without a Langfuse: the
        evaluation objects that need no traces)."""
        host, public_key, secret_key = (options["langfuse_host"], options["langfuse_public_key"],
                                        options["langfuse_secret_key"])
        conn, traces = None, []
        if host and public_key and secret_key:
            conn = _demo_evals.connect(actor=system, project=project, host=host, public_key=public_key,
                                       secret_key=secret_key)
            traces = _demo_evals.seed_traces(conn)
        made = _demo_evals.seed_evaluations(actor=system, project=project, conn=conn, traces=traces)
        return {"langfuse": {"host": host, "standin": bool(conn and conn.is_standin), "traces": len(traces)}
                if conn else None, **made}
