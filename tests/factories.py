"""Test data built through the same services users go through."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from gateway.models import ModelRoute, ProviderCredential, VirtualKey
from gateway.services import credentials, keys, routes
from portal import services
from portal.access import system_actor
from portal.models import Membership, Organization, OrgRole, Project, Team, TeamRole, TokenScope

User = get_user_model()
ROLES = ("owner", "admin", "team_admin", "member", "viewer")


def web_client(t: Tenant, role: str) -> Client:
    """A web client signed in as the tenant's user of `role` (the session, not a password: hashing one
    costs about a second here, and signing in has its own tests)."""
    client = Client()
    client.force_login(t.users[role])
    return client


def api(token: str | None = None) -> APIClient:
    client = APIClient()
    if token:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@dataclass
class Tenant:
    """An organization with one user (and one API token) per role, a team, a
    project, a credential, a mock route and a key owned by the member.

    Every name (but the route's public name, "chat" in every tenant, so that two
    organizations' routes of the same name are seen never to mix) carries the
    tenant's slug: a list or answer that shows another tenant's rows shows its
    name, which `foreign_markers` lists for the tests to search for."""

    org: Organization
    team: Team
    project: Project
    credential: ProviderCredential
    route: ModelRoute
    key: VirtualKey
    key_plaintext: str
    users: dict[str, Any] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    evals: Evals | None = None  # make_evals() fills it

    def client(self, role: str) -> APIClient:
        return api(self.tokens[role])

    def url(self, path: str = "") -> str:
        return f"/api/v1/orgs/{self.org.slug}/{path}"

    def foreign_markers(self) -> list[str]:
        """Texts that only this tenant's rows contain: its slug (in every name and
        email) and the answer of its route. Another tenant's answers must contain none."""
        return [self.org.slug, f"hello from {self.org.slug}", self.org.name]


def make_tenant(slug: str, *, provider_secret: str = "sk-provider-secret-value") -> Tenant:
    org, owner_token = services.bootstrap_organization(slug=slug, owner_email=f"owner@{slug}.test",
                                                           name=f"{slug.capitalize()} Corporation")
    system = system_actor(org, "tests")
    users = {"owner": Membership.objects.get(organization=org, role=OrgRole.OWNER).user}
    tokens = {"owner": owner_token}
    for role, org_role in (("admin", OrgRole.ADMIN), ("team_admin", OrgRole.MEMBER), ("member", OrgRole.MEMBER),
                           ("viewer", OrgRole.VIEWER)):
        users[role] = services.member_add(actor=system, email=f"{role}@{slug}.test", role=org_role).user
    team = services.team_create(actor=system, data={"name": f"{slug}-platform"})
    services.team_member_add(actor=system, team=team, email=f"team_admin@{slug}.test", role=TeamRole.ADMIN)
    services.team_member_add(actor=system, team=team, email=f"member@{slug}.test", role=TeamRole.MEMBER)
    project = services.project_create(actor=system, data={"name": f"{slug}-assistant", "team": team})
    for role in ROLES[1:]:
        actor = _actor(org, users[role])
        _, tokens[role] = services.api_token_create(actor=actor, name=f"{slug} {role} token", role=actor.role,
                                                    scope=TokenScope.FULL)
    cred = credentials.credential_create(actor=system, name=f"{slug}-openai", provider="openai",
                                         secrets={"api_key": provider_secret})
    route = routes.route_create(actor=system, data={
        "name": "chat", "description": f"{slug}'s chat route",
        "deployments": [{"credential": None, "model": "gpt-4o-mini",
                         "litellm_params": {"mock_response": f"hello from {slug}"}}]})
    issued = keys.key_create(actor=_actor(org, users["member"]),
                             data={"name": f"{slug} member key", "team": team, "project": project})
    return Tenant(org, team, project, cred, route, issued.key, issued.plaintext, users, tokens)


def _actor(org: Organization, user: Any) -> Any:
    from portal.access import actor_for_user

    return actor_for_user(org, user)


@dataclass
class Evals:
    """One of each evaluation object of a tenant's project (ids), named after the tenant."""

    evaluator: int
    schedule: int
    run: int
    dataset: int
    item: int
    label: int
    calibration: int
    benchmark: int
    benchmark_run: int
    agent_report: int = 0  # a finished report of the evaluation agent, with a finding, steps and a question
    agent_schedule: int = 0


def project_url(t: Tenant, path: str = "") -> str:
    return t.url(f"projects/{t.project.pk}/{path}")


def connect_langfuse(t: Tenant, langfuse: Any) -> dict[str, Any]:
    """The project's Langfuse connection, to a project of its own in the stand-in
    (`langfuse` is a started `LangfuseStandin`), and the organization key."""
    slug = t.org.slug
    if f"lf-{slug}" not in langfuse.projects:
        langfuse.add_project(f"lf-{slug}", f"{slug} traces", f"pk-lf-{slug}", f"sk-lf-{slug}")
        langfuse.set_org_key(f"pk-lf-org-{slug}", f"sk-lf-org-{slug}")
    owner = t.client("owner")
    response = owner.put(project_url(t, "langfuse/"), {"host": langfuse.url, "public_key": f"pk-lf-{slug}",
                                                       "secret_key": f"sk-lf-{slug}"}, format="json")
    assert response.status_code in (200, 201), response.content
    org_key = owner.put(t.url("langfuse/"), {"host": langfuse.url, "public_key": f"pk-lf-org-{slug}",
                                             "secret_key": f"sk-lf-org-{slug}"}, format="json")
    assert org_key.status_code == 200, org_key.content
    return dict(response.json())


def make_evals(t: Tenant, langfuse: Any) -> Evals:
    """Every kind of evaluation object in the tenant's project, through the API as its
    owner (tasks are enqueued on commit, so nothing runs in a test transaction)."""
    from django.utils import timezone

    from evals.models import BenchmarkRun, EvalReport, EvalRun, EvalScore

    slug, owner = t.org.slug, t.client("owner")

    def post(path: str, body: Any, status: int = 201, **kwargs: Any) -> dict[str, Any]:
        response = owner.post(project_url(t, path), body, **({"format": "json"} | kwargs))
        assert response.status_code == status, (path, response.content)
        return dict(response.json())

    connect_langfuse(t, langfuse)
    evaluator = post("evaluators/", {"name": f"{slug}-correct", "score_type": "boolean", "judge_route": "chat",
                                     "prompt_template": f"{slug}: is {{{{output}}}} right for {{{{input}}}}?"})
    schedule = post("schedules/", {"name": f"{slug}-hourly", "evaluator": evaluator["id"], "interval_seconds": 3600})
    run = post("runs/", {"evaluator": evaluator["id"], "window_start": "2026-01-01T00:00:00Z"}, 202)
    run_row = EvalRun.objects.get(pk=run["id"])
    EvalRun.objects.filter(pk=run_row.pk).update(status="succeeded", finished_at=timezone.now())
    EvalScore.objects.create(project=t.project, evaluator_version=run_row.evaluator_version, run=run_row,
                             trace_id=f"{slug}-trace-1", status="scored", value=1.0, comment=f"{slug} judged",
                             scored_at=timezone.now())
    EvalReport.objects.create(run=run_row, route=t.route, status="succeeded", content=f"{slug} report")
    dataset = post("datasets/", {"name": f"{slug}-qa", "description": f"{slug}'s questions"})
    lines = "\n".join(json.dumps({"id": f"{slug}-item-{i}", "input": f"{slug} question {i}",
                                  "expected_output": i % 2 == 0, "metadata": {"output": f"{slug} answer {i}"}})
                      for i in range(3))
    post(f"datasets/{dataset['id']}/import/", lines.encode(), 200, content_type="application/x-ndjson", format=None)
    item = owner.get(project_url(t, f"datasets/{dataset['id']}/items/")).json()["results"][0]
    label = post(f"evaluators/{evaluator['id']}/labels/", {"trace_id": f"{slug}-trace-1", "label": "true"})
    calibration = post(f"evaluators/{evaluator['id']}/calibrations/", {"dataset": dataset["id"]}, 202)
    benchmark = post("benchmarks/", {"name": f"{slug}-bench", "dataset": dataset["id"], "routes": ["chat"],
                                     "metrics": [{"type": "exact_match"}]})
    benchmark_run = post(f"benchmarks/{benchmark['id']}/run/", None, 202)
    BenchmarkRun.objects.filter(pk=benchmark_run["id"]).update(status="succeeded", finished_at=timezone.now())
    agent_schedule = post("agent-schedules/", {"name": f"{slug}-weekly", "route": "chat"})
    t.evals = Evals(evaluator=evaluator["id"], schedule=schedule["id"], run=run["id"], dataset=dataset["id"],
                    item=item["id"], label=label["id"], calibration=calibration["id"], benchmark=benchmark["id"],
                    benchmark_run=benchmark_run["id"], agent_report=make_agent_report(t),
                    agent_schedule=agent_schedule["id"])
    return t.evals


def make_agent_report(t: Tenant) -> int:
    """A finished report of the evaluation agent in the tenant's project, as its loop leaves one: a model step,
    a tool step, a finding citing the tool step's trace, and a question answered (every text names the tenant)."""
    import datetime as dt

    from django.utils import timezone

    from evals.agent.models import AgentFinding, AgentMessage, AgentReport, AgentStep

    slug, now = t.org.slug, timezone.now()
    report = AgentReport.objects.create(project=t.project, route=t.route, status="succeeded", focus=f"{slug} focus",
                                        window_start=now - dt.timedelta(days=7), window_end=now, finished_at=now,
                                        summary=f"{slug} summary")
    AgentStep.objects.create(report=report, index=0, kind="model", content=f"{slug} thinks", tool_call_id="c1")
    AgentStep.objects.create(report=report, index=1, kind="tool", tool_call_id="c1", tool_name="search_traces",
                             arguments={}, result_digest=f"{slug} rows", trace_ids=[f"{slug}-trace-1"],
                             result={"matched": 1, "window_total": 4, "rows": [{"id": f"{slug}-trace-1", "cost": None}]})
    AgentFinding.objects.create(report=report, index=0, key=f"{slug}-finding", title=f"{slug} finding",
                                problem=f"{slug} problem", count=1, share=0.25, change_kind="prompt",
                                change=f"{slug} change", trace_ids=[f"{slug}-trace-1"], steps=[1])
    AgentMessage.objects.create(report=report, role="user", content=f"{slug} question?")
    AgentMessage.objects.create(report=report, role="assistant", content=f"{slug} answer",
                                evidence=[{"trace_id": f"{slug}-trace-1", "steps": [1]}])
    return report.pk
