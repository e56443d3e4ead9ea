"""python manage.py seed_demo

Idempotent: makes sure the demo organization exists (owner with a password,
a team, a project, routes backed by `mock_response` deployments), then issues
a fresh demo key and API token and prints them."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from gateway.models import ModelRoute, VirtualKey
from gateway.services import keys, routes
from portal import services
from portal.access import actor_for_user, system_actor
from portal.models import ApiToken, Membership, Organization, OrgRole, Project, Team, TeamRole

ORG, OWNER, PASSWORD = "demo", "admin@demo.local", "portal-demo"
ROUTES = [
    ("chat", "The default chat model (mock).", "Hello from the demo gateway! (mock_response)", ["fast"]),
    ("fast", "A cheaper fallback model (mock).", "A quick answer from the fast route. (mock_response)", []),
    ("code", "For Cline: a coding model (mock).", "def hello():\n    return 'world'  # mock_response", ["chat"]),
]


class Command(BaseCommand):
    help = "Seed the demo organization and print a login, an API token and a demo key."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--json", action="store_true", help="Print the credentials as one JSON object.")

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
        for name, description, answer, _ in ROUTES:
            if not ModelRoute.objects.filter(organization=org, name=name).exists():
                routes.route_create(actor=system, data={
                    "name": name, "description": description, "num_retries": 1,
                    "input_cost_per_million": 1, "output_cost_per_million": 2,
                    "deployments": [{"credential": None, "model": f"demo-{name}",
                                     "litellm_params": {"mock_response": answer}}]})
        for name, _, _, fallbacks in ROUTES:
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
        info = {
            "web_url": "http://127.0.0.1:8000/", "login": OWNER, "password": PASSWORD,
            "api_token": token, "org": ORG, "demo_key": issued.plaintext, "gateway_url": settings.GATEWAY_PUBLIC_URL,
            "cline": issued.cline,
        }
        if options["json"]:
            self.stdout.write(json.dumps(info))
            return
        self.stdout.write(self.style.SUCCESS("Demo organization ready."))
        for label, value in (("Web UI", info["web_url"]), ("Login", f"{OWNER} / {PASSWORD}"),
                             ("API token", token), ("API docs", "http://127.0.0.1:8000/api/v1/docs/"),
                             ("Demo key", issued.plaintext)):
            self.stdout.write(f"  {label:10} {value}")
