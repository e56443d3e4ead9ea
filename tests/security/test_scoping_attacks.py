"""A hostile tenant against the tenant scoping of issue 9 (`visible_to`, the shared resolver,
URL parents, the related fields), through the real REST API and web pages (no proxies: fast).

The attacker is acme's owner (or a lower role of acme) naming objects it must not reach: globex's,
and those of acme's *other* project under the first project's URL. Every attack here is refused; the
ones that were not when they were written say so in their docstring."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from evals.models import Benchmark, BenchmarkRun, Dataset, DatasetItem, EvalRun, EvalSchedule, Evaluator, HumanLabel
from gateway.models import KeyStatus, ModelRoute, UsageDaily, VirtualKey
from gateway.services import keys, routes
from portal import services
from portal.access import actor_for_user, system_actor
from portal.models import ApiToken, Project, TeamRole
from tests.factories import Evals, Tenant, api, make_evals
from tests.factories import web_client as web_login

pytestmark = pytest.mark.django_db


@dataclass
class World:
    """acme with evaluation objects in two projects of its team (P1 = acme.project, P2), a second
    team ("research": the member and the team admin are not in it) with a key, usage and a
    route only globex has ("lab-only"), and globex with its evaluation objects."""

    acme: Tenant
    globex: Tenant
    p1: Evals
    p2: Evals
    g: Evals
    project2: Project
    research_key: VirtualKey
    team_admin_key: VirtualKey


def second_project_evals(t: Tenant, langfuse: Any) -> tuple[Project, Evals]:
    first, first_evals = t.project, t.evals
    project = services.project_create(actor=system_actor(t.org, "tests"),
                                      data={"name": f"{t.org.slug}-second", "team": t.team})
    t.project = project
    try:
        evals = make_evals(t, langfuse)
    finally:
        t.project, t.evals = first, first_evals
    return project, evals


def research_team(t: Tenant) -> VirtualKey:
    system = system_actor(t.org, "tests")
    team = services.team_create(actor=system, data={"name": f"{t.org.slug}-research"})
    services.team_member_add(actor=system, team=team, email=f"admin@{t.org.slug}.test", role=TeamRole.ADMIN)
    project = services.project_create(actor=system, data={"name": f"{t.org.slug}-secret-lab", "team": team})
    key = keys.key_create(actor=system, data={"name": f"{t.org.slug} research key", "team": team,
                                              "project": project, "owner": t.users["admin"]}).key
    UsageDaily.objects.create(organization=t.org, day=timezone.now().date(), key=key, team=team, project=project,
                              owner_email=f"admin@{t.org.slug}.test", route="chat", requests=7,
                              cost=Decimal("3.5"), latency_ms_sum=70)
    return key


@pytest.fixture
def world(acme: Tenant, globex: Tenant, langfuse_standin: Any) -> World:
    p1 = make_evals(acme, langfuse_standin)
    project2, p2 = second_project_evals(acme, langfuse_standin)
    g = make_evals(globex, langfuse_standin)
    routes.route_create(actor=system_actor(globex.org, "tests"), data={"name": "lab-only", "deployments": [
        {"credential": None, "model": "m", "litellm_params": {"mock_response": "hello from globex"}}]})
    research_key = research_team(acme)
    team_admin_key = keys.key_create(actor=actor_for_user(acme.org, acme.users["team_admin"]), data={
        "name": "acme team admin key", "team": acme.team, "project": acme.project}).key
    return World(acme, globex, p1, p2, g, project2, research_key, team_admin_key)


def p1_url(w: World, path: str) -> str:
    return w.acme.url(f"projects/{w.acme.project.pk}/{path}")


def no_foreign_names(w: World, body: bytes | str) -> bool:
    text = body.decode() if isinstance(body, bytes) else body
    return not any(marker in text for marker in w.globex.foreign_markers())


# Path parameters: a child that is not of the parent in the URL ------------------------------------

#: {x} is the foreign object's id, {own_x} acme P1's own (a foreign child under an own parent)
NESTED = [
    "evaluators/{evaluator}/", "evaluators/{evaluator}/versions/", "evaluators/{evaluator}/labels/",
    "evaluators/{evaluator}/labels/report/", "evaluators/{evaluator}/labels/{label}/",
    "evaluators/{own_evaluator}/labels/{label}/", "evaluators/{evaluator}/calibrations/",
    "evaluators/{evaluator}/calibrations/{calibration}/", "evaluators/{own_evaluator}/calibrations/{calibration}/",
    "evaluators/{evaluator}/labels/{own_label}/",
    "schedules/{schedule}/", "runs/{run}/", "runs/{run}/scores/", "runs/{run}/report/",
    "datasets/{dataset}/", "datasets/{dataset}/items/", "datasets/{dataset}/items/{item}/",
    "datasets/{own_dataset}/items/{item}/", "datasets/{dataset}/items/{own_item}/",
    "benchmarks/{benchmark}/", "benchmarks/{benchmark}/runs/", "benchmarks/{benchmark}/runs/{benchmark_run}/",
    "benchmarks/{own_benchmark}/runs/{benchmark_run}/", "benchmarks/{benchmark}/runs/{own_benchmark_run}/",
    "benchmarks/{benchmark}/runs/{benchmark_run}/results.csv",
    "benchmarks/{own_benchmark}/runs/{benchmark_run}/results.csv",
]

#: writes on those paths: (method, path, body); the objects must be unchanged afterwards
NESTED_WRITES = [
    ("patch", "evaluators/{evaluator}/", {"description": "pwned"}),
    ("post", "evaluators/{evaluator}/labels/", {"trace_id": "pwned", "label": "true"}),
    ("delete", "evaluators/{own_evaluator}/labels/{label}/", None),
    ("delete", "evaluators/{evaluator}/labels/{label}/", None),
    ("post", "evaluators/{evaluator}/calibrations/", {"dataset": "{own_dataset}"}),
    ("patch", "schedules/{schedule}/", {"enabled": False}),
    ("post", "schedules/{schedule}/run/", None),
    ("delete", "schedules/{schedule}/", None),
    ("post", "runs/{run}/report/", {"route": "chat"}),
    ("patch", "datasets/{dataset}/", {"description": "pwned"}),
    ("post", "datasets/{dataset}/push/", {}),
    ("post", "datasets/{dataset}/pull/", {}),
    ("post", "datasets/{dataset}/build-from-traces/", {}),
    ("post", "datasets/{dataset}/items/", {"input": "pwned"}),
    ("patch", "datasets/{own_dataset}/items/{item}/", {"input": "pwned"}),
    ("delete", "datasets/{own_dataset}/items/{item}/", None),
    ("delete", "datasets/{dataset}/items/{item}/", None),
    ("patch", "benchmarks/{benchmark}/", {"name": "pwned"}),
    ("post", "benchmarks/{benchmark}/run/", None),
    ("delete", "benchmarks/{benchmark}/", None),
    ("delete", "datasets/{dataset}/", None),
]


def fill(path: str, foreign: Evals, own: Evals) -> str:
    return path.format(**vars(foreign), **{f"own_{k}": v for k, v in vars(own).items()})


def fill_body(body: Any, foreign: Evals, own: Evals) -> Any:
    if not isinstance(body, dict):
        return body
    return {k: (int(fill(v, foreign, own)) if isinstance(v, str) and v.startswith("{") else v) for k, v in body.items()}


def evaluation_state(e: Evals) -> tuple[Any, ...]:
    """What the writes above would change of a project's evaluation objects."""
    return (Evaluator.objects.filter(pk=e.evaluator).values_list("description", flat=True).first(),
            HumanLabel.objects.filter(evaluator_id=e.evaluator).count(),
            HumanLabel.objects.filter(pk=e.label).exists(),
            EvalSchedule.objects.filter(pk=e.schedule).values_list("enabled", flat=True).first(),
            EvalRun.objects.filter(project__evaluators=e.evaluator).count(),
            Dataset.objects.filter(pk=e.dataset).values_list("description", "langfuse_name").first(),
            DatasetItem.objects.filter(dataset_id=e.dataset).count(),
            DatasetItem.objects.filter(pk=e.item).values_list("input", flat=True).first(),
            Benchmark.objects.filter(pk=e.benchmark).values_list("name", flat=True).first(),
            BenchmarkRun.objects.filter(benchmark_id=e.benchmark).count())


@pytest.mark.parametrize("whose", ["globex", "other project"])
def test_a_child_not_of_the_parent_in_the_url_is_not_found(world: World, whose: str) -> None:
    """Under acme's P1 URL, globex's objects and acme P2's (also mixed with P1's own parent or child):
    every read and write is 404, and nothing changes."""
    foreign = world.g if whose == "globex" else world.p2
    owner = world.acme.client("owner")
    before = evaluation_state(foreign), evaluation_state(world.p1)
    answered = {path: owner.get(p1_url(world, fill(path, foreign, world.p1))) for path in NESTED}
    wrong = {path: (r.status_code, r.content[:200]) for path, r in answered.items() if r.status_code != 404}
    for method, path, body in NESTED_WRITES:
        response = getattr(owner, method)(p1_url(world, fill(path, foreign, world.p1)),
                                          fill_body(body, foreign, world.p1), format="json")
        if response.status_code != 404:
            wrong[f"{method} {path}"] = (response.status_code, response.content[:200])
    assert not wrong, wrong
    assert (evaluation_state(foreign), evaluation_state(world.p1)) == before


@pytest.mark.parametrize("path", ["", "evaluators/", "evaluators/templates/", "schedules/", "runs/", "datasets/",
                                  "benchmarks/", "langfuse/", "evaluators/{evaluator}/", "runs/{run}/scores/",
                                  "datasets/{dataset}/items/"])
def test_another_organizations_project_in_the_url_is_not_found(world: World, path: str) -> None:
    """acme's URL with globex's project and globex's children; and the same through globex's own slug."""
    owner = world.acme.client("owner")
    filled = path.format(**vars(world.g))
    for url in (world.acme.url(f"projects/{world.globex.project.pk}/{filled}"),
                world.globex.url(f"projects/{world.globex.project.pk}/{filled}")):
        assert owner.get(url).status_code == 404, url
    if path == "langfuse/":
        for method in ("put", "delete"):
            url = world.acme.url(f"projects/{world.globex.project.pk}/langfuse/")
            assert getattr(owner, method)(url, {"host": "http://x", "public_key": "p"},
                                          format="json").status_code == 404
        assert owner.post(world.acme.url(f"projects/{world.globex.project.pk}/langfuse/provision/")
                          ).status_code == 404


# Body fields that name an object of another tenant, or of another project ---------------------


def foreign_bodies(w: World) -> list[tuple[str, str, str, Any, str]]:
    """(label, method, url, body, the field that must be refused)."""
    g, p2, a = w.g, w.p2, w.acme
    gt, gp = w.globex.team.pk, w.globex.project.pk
    deploy = [{"credential": None, "model": "m"}]
    return [
        ("key team", "post", a.url("keys/"), {"name": "k", "team": gt, "project": a.project.pk}, "team"),
        ("key project", "post", a.url("keys/"), {"name": "k", "team": a.team.pk, "project": gp}, "project"),
        ("key route", "post", a.url("keys/"), {"name": "k", "team": a.team.pk, "project": a.project.pk,
                                               "allowed_routes": ["lab-only"]}, "allowed_routes"),
        ("key update route", "patch", a.url(f"keys/{a.key.pk}/"), {"allowed_routes": ["lab-only"]},
         "allowed_routes"),
        ("key owner", "post", a.url("keys/"), {"name": "k", "team": a.team.pk, "project": a.project.pk,
                                               "owner": "member@globex.test"}, "owner"),
        ("key update owner", "patch", a.url(f"keys/{a.key.pk}/"), {"owner": "member@globex.test"}, "owner"),
        ("team member", "post", a.url(f"teams/{a.team.pk}/members/"), {"email": "member@globex.test"}, "email"),
        ("project team", "post", a.url("projects/"), {"name": "acme-x", "team": gt}, "team"),
        ("project update team", "patch", a.url(f"projects/{a.project.pk}/"), {"team": gt}, "team"),
        ("route team", "post", a.url("routes/"), {"name": "x", "deployments": deploy, "allowed_teams": [gt]},
         "allowed_teams"),
        ("route credential", "post", a.url("routes/"), {"name": "x", "deployments": [
            {"credential": w.globex.credential.pk, "model": "m"}]}, "deployments"),
        ("route fallback", "post", a.url("routes/"), {"name": "x", "deployments": deploy,
                                                      "fallbacks": ["lab-only"]}, "fallbacks"),
        ("route update team", "patch", a.url(f"routes/{a.route.pk}/"), {"allowed_teams": [gt]}, "allowed_teams"),
        ("evaluator judge", "post", p1_url(w, "evaluators/"), {"name": "j", "template": "helpfulness",
                                                               "judge_route": "lab-only"}, "judge_route"),
        ("report route", "post", p1_url(w, f"runs/{w.p1.run}/report/"), {"route": "lab-only"}, "route"),
        ("benchmark update route", "patch", p1_url(w, f"benchmarks/{w.p1.benchmark}/"), {"routes": ["lab-only"]},
         "routes"),
        ("benchmark route", "post", p1_url(w, "benchmarks/"), {"name": "b", "dataset": w.p1.dataset,
                                                               "routes": ["lab-only"]}, "routes"),
        *[(f"{whose} {label}", method, p1_url(w, path), body(e), field) for whose, e in (("globex", g), ("p2", p2))
          for label, method, path, body, field in (
              ("schedule evaluator", "post", "schedules/",
               lambda e: {"name": "s", "evaluator": e.evaluator, "interval_seconds": 60}, "evaluator"),
              ("schedule update evaluator", "patch", f"schedules/{w.p1.schedule}/",
               lambda e: {"evaluator": e.evaluator}, "evaluator"),
              ("run evaluator", "post", "runs/",
               lambda e: {"evaluator": e.evaluator, "window_start": "2026-01-01T00:00:00Z"}, "evaluator"),
              ("benchmark dataset", "post", "benchmarks/",
               lambda e: {"name": "b", "dataset": e.dataset, "routes": ["chat"]}, "dataset"),
              ("benchmark evaluators", "post", "benchmarks/",
               lambda e: {"name": "b", "dataset": w.p1.dataset, "routes": ["chat"], "evaluators": [e.evaluator]},
               "evaluators"),
              ("benchmark update dataset", "patch", f"benchmarks/{w.p1.benchmark}/",
               lambda e: {"dataset": e.dataset}, "dataset"),
              ("benchmark update evaluators", "patch", f"benchmarks/{w.p1.benchmark}/",
               lambda e: {"evaluators": [e.evaluator]}, "evaluators"),
              ("calibration dataset", "post", f"evaluators/{w.p1.evaluator}/calibrations/",
               lambda e: {"dataset": e.dataset}, "dataset"),
              ("label item", "post", f"evaluators/{w.p1.evaluator}/labels/",
               lambda e: {"item": e.item, "label": "true"}, "item"),
          )],
    ]


def test_body_fields_naming_another_tenants_or_projects_objects_are_refused(world: World) -> None:
    owner = world.acme.client("owner")
    keys_before, routes_before = VirtualKey.objects.count(), ModelRoute.objects.count()
    runs_before = EvalRun.objects.count()
    wrong = {}
    for label, method, url, body, field in foreign_bodies(world):
        response = getattr(owner, method)(url, body, format="json")
        if response.status_code != 400 or field not in response.json() or not no_foreign_names(world,
                                                                                                response.content):
            wrong[label] = (response.status_code, response.content[:300])
    assert not wrong, wrong
    assert (VirtualKey.objects.count(), ModelRoute.objects.count(), EvalRun.objects.count()) == \
        (keys_before, routes_before, runs_before)
    schedule = EvalSchedule.objects.get(pk=world.p1.schedule)
    benchmark = Benchmark.objects.get(pk=world.p1.benchmark)
    assert schedule.evaluator_id == world.p1.evaluator and benchmark.dataset_id == world.p1.dataset
    assert not benchmark.evaluators.exclude(project=world.acme.project).exists()


def test_a_route_name_both_tenants_have_binds_to_ones_own(world: World) -> None:
    """"chat" is a route of acme and of globex: a key, a judge and a report name acme's."""
    response = world.acme.client("team_admin").post(world.acme.url("keys/"), {
        "name": "both", "team": world.acme.team.pk, "project": world.acme.project.pk, "allowed_routes": ["chat"]},
        format="json")
    assert response.status_code == 201, response.content
    key = VirtualKey.objects.get(pk=response.json()["id"])
    assert [r.organization_id for r in key.allowed_routes.all()] == [world.acme.org.pk]
    assert Evaluator.objects.get(pk=world.p1.evaluator).current.judge_route.organization_id == world.acme.org.pk


# A member reading other teams' keys, usage, tokens and audit through filters --------------------


@pytest.mark.parametrize("role", ["member", "team_admin"])
def test_list_filters_do_not_widen_what_a_member_sees(world: World, role: str) -> None:
    a, research = world.acme, world.research_key
    client = a.client(role)
    for params in ({"team": research.team_id}, {"project": research.project_id}, {"owner": "admin@acme.test"},
                   {"search": "research"}, {"search": research.key_prefix}, {"status": "active", "ordering": "name"},
                   {"ordering": "-last_used_at", "page_size": 1000}, {"team": world.globex.team.pk},
                   {"search": "globex"}):
        body = client.get(a.url("keys/"), params).json()
        ids = [k["id"] for k in body["results"]]
        assert research.pk not in ids and world.globex.key.pk not in ids, (params, body)
        assert "research" not in str(body) and no_foreign_names(world, str(body)), (params, body)
    for verb in ("", "rotate/", "revoke/", "block/"):
        method = "get" if not verb else "post"
        assert getattr(client, method)(a.url(f"keys/{research.pk}/{verb}")).status_code == 404, verb
    assert client.patch(a.url(f"keys/{research.pk}/"), {"name": "pwned"}, format="json").status_code == 404
    research.refresh_from_db()
    assert research.status == KeyStatus.ACTIVE and research.name == "acme research key"


USAGE_FILTERS = ["team", "project", "key"]


@pytest.mark.parametrize("role", ["member", "team_admin", "member viewer token"])
def test_usage_filters_and_groups_do_not_reach_other_teams_or_tenants(world: World, role: str) -> None:
    a, g, research = world.acme, world.globex, world.research_key
    if role == "member viewer token":
        created = a.client("member").post(a.url("tokens/"), {"name": "low", "role": "viewer"}, format="json")
        client = api(created.json()["token"])
    else:
        client = a.client(role)
    UsageDaily.objects.create(organization=g.org, day=timezone.now().date(), key=g.key, team=g.team,
                              project=g.project, owner_email="member@globex.test", route="chat", requests=5,
                              cost=Decimal("1"), latency_ms_sum=1)
    for group_by in ("day", "route", "key", "project", "team", "user"):
        for filters in ({}, {"team": research.team_id}, {"project": research.project_id}, {"key": research.pk},
                        {"team": g.team.pk}, {"key": g.key.pk}, {"project": g.project.pk}, {"route": "chat"}):
            body = client.get(a.url("usage/"), {"group_by": group_by, **filters}).json()
            assert body["totals"]["requests"] == 0, (group_by, filters, body)
            assert "research" not in str(body) and "secret-lab" not in str(body), (group_by, filters, body)
            assert no_foreign_names(world, str(body)), (group_by, filters, body)


def test_a_member_sees_and_revokes_only_its_own_tokens(world: World) -> None:
    a = world.acme
    admin_token = ApiToken.objects.filter(organization=a.org, user=a.users["admin"]).first()
    assert admin_token is not None
    for role in ("member", "team_admin", "viewer"):
        client = a.client(role)
        listed = client.get(a.url("tokens/"), {"role": "admin"}).json()
        assert listed["results"] == [], (role, listed)
        everything = client.get(a.url("tokens/"), {"ordering": "-created_at", "page_size": 1000}).json()
        assert {t["user"] for t in everything["results"]} == {f"{role}@acme.test"}, (role, everything)
        assert client.get(a.url(f"tokens/{admin_token.pk}/")).status_code == 404
        assert client.delete(a.url(f"tokens/{admin_token.pk}/")).status_code == 404
        globex_token = ApiToken.objects.filter(organization=world.globex.org).first()
        assert globex_token is not None
        assert client.delete(a.url(f"tokens/{globex_token.pk}/")).status_code == 404
    assert a.client("owner").delete(a.url(f"tokens/{ApiToken.objects.filter(organization=world.globex.org).first().pk}/")
                                    ).status_code == 404
    assert not ApiToken.objects.filter(revoked_at__isnull=False).exists()


@pytest.mark.parametrize("role", ["member", "team_admin", "viewer"])
def test_the_audit_log_is_for_admins_whatever_the_filter(world: World, role: str) -> None:
    client = world.acme.client(role)
    for params in ({}, {"action": "key.create"}, {"target_type": "virtualkey"}, {"ordering": "-created_at"}):
        assert client.get(world.acme.url("audit-log/"), params).status_code == 403
    entry = world.acme.org.audit_log.first()
    assert client.get(world.acme.url(f"audit-log/{entry.pk}/")).status_code == 403
    listed = world.acme.client("admin").get(world.acme.url("audit-log/"), {"page_size": 1000}).json()
    assert no_foreign_names(world, str(listed)), listed
    foreign = world.globex.org.audit_log.first()
    assert world.acme.client("owner").get(world.acme.url(f"audit-log/{foreign.pk}/")).status_code == 404


# Tokens: a viewer-level token of a member, a keys-scope token -----------------------------------


def test_a_members_viewer_token_does_not_widen_to_other_teams_keys(world: World) -> None:
    a = world.acme
    created = a.client("member").post(a.url("tokens/"), {"name": "low", "role": "viewer"}, format="json")
    low = api(created.json()["token"])
    assert world.research_key.pk not in [k["id"] for k in low.get(a.url("keys/")).json()["results"]]
    assert low.get(a.url(f"keys/{world.research_key.pk}/")).status_code == 404
    # and a viewer token cannot write, even the member's own key
    assert low.post(a.url(f"keys/{a.key.pk}/revoke/")).status_code == 403
    a.key.refresh_from_db()
    assert a.key.status == KeyStatus.ACTIVE


KEYS_SCOPE_REFUSED = [
    ("get", "members/"), ("get", "tokens/"), ("post", "tokens/"), ("get", "audit-log/"), ("get", "usage/"),
    ("get", "credentials/"), ("get", ""), ("patch", ""), ("get", "langfuse/"), ("put", "langfuse/"),
    ("post", "teams/"), ("post", "projects/"), ("post", "routes/"), ("get", "projects/{project}/evaluators/"),
    ("get", "projects/{project}/langfuse/"), ("get", "projects/{project}/datasets/"),
    ("post", "projects/{project}/datasets/"), ("delete", "tokens/{token}/"), ("patch", "teams/{team}/"),
    ("post", "teams/{team}/members/"), ("get", "teams/{team}/members/"),
]


def test_a_keys_scope_token_reaches_only_keys_and_what_issuing_one_needs(world: World) -> None:
    a = world.acme
    created = a.client("owner").post(a.url("tokens/"), {"name": "ci", "role": "owner", "scope": "keys"},
                                     format="json")
    assert created.status_code == 201, created.content
    scoped = api(created.json()["token"])
    token = ApiToken.objects.filter(organization=a.org, user=a.users["admin"]).first()
    wrong = {}
    for method, path in KEYS_SCOPE_REFUSED:
        url = a.url(path.format(project=a.project.pk, token=token.pk, team=a.team.pk))
        response = getattr(scoped, method)(url, {"name": "x", "role": "owner"}, format="json")
        if response.status_code != 403:
            wrong[f"{method} {path}"] = (response.status_code, response.content[:200])
    assert not wrong, wrong
    for path in ("keys/", "teams/", "projects/", "routes/"):
        assert scoped.get(a.url(path)).status_code == 200, path
    assert scoped.get(world.globex.url("keys/")).status_code == 404
    assert ApiToken.objects.filter(organization=a.org, revoked_at__isnull=False).count() == 0


# Rows one may view but not change ----------------------------------------------------------------


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_a_key_one_may_view_is_not_one_may_change(world: World, role: str) -> None:
    """The member sees the team admin's key of its team (the "view" rows); revoking, rotating, blocking,
    renaming it is the owner's or the team admin's (403), as is everything for a viewer."""
    a, key = world.acme, world.team_admin_key
    client = a.client(role)
    assert client.get(a.url(f"keys/{key.pk}/")).status_code == 200
    for verb in ("rotate/", "revoke/", "block/", "unblock/"):
        assert client.post(a.url(f"keys/{key.pk}/{verb}")).status_code == 403, verb
    assert client.patch(a.url(f"keys/{key.pk}/"), {"name": "pwned", "max_budget": None},
                        format="json").status_code == 403
    assert client.delete(a.url(f"keys/{key.pk}/")).status_code in (403, 405)
    key.refresh_from_db()
    assert key.status == KeyStatus.ACTIVE and key.name == "acme team admin key" and key.rotated_at is None


def test_a_member_may_not_change_a_team_it_sees(world: World) -> None:
    a = world.acme
    member = a.client("member")
    assert member.get(a.url(f"teams/{a.team.pk}/")).status_code == 200
    assert member.patch(a.url(f"teams/{a.team.pk}/"), {"max_budget": "1000000"}, format="json").status_code == 403
    assert member.post(a.url(f"teams/{a.team.pk}/members/"), {"email": "viewer@acme.test"},
                       format="json").status_code == 403
    assert member.patch(a.url(f"projects/{a.project.pk}/"), {"max_budget": "1000000"},
                        format="json").status_code == 403
    assert member.delete(a.url(f"projects/{world.project2.pk}/")).status_code == 403
    assert Project.objects.filter(pk=world.project2.pk).exists()


# Singletons ---------------------------------------------------------------------------------------


def test_singletons_of_another_organization_are_not_found(world: World) -> None:
    a, g = world.acme, world.globex
    owner = a.client("owner")
    for method, path in (("get", ""), ("patch", ""), ("get", "langfuse/"), ("put", "langfuse/"),
                         ("delete", "langfuse/"), ("get", f"projects/{g.project.pk}/langfuse/")):
        assert getattr(owner, method)(g.url(path), {"name": "pwned", "host": "http://x", "public_key": "p",
                                                    "secret_key": "s"}, format="json").status_code == 404, path
    g.org.refresh_from_db()
    assert g.org.name == "Globex Corporation" and hasattr(g.org, "langfuse_org_key")
    for role in ("member", "team_admin", "viewer"):
        assert a.client(role).get(a.url("langfuse/")).status_code == 403
        assert a.client(role).delete(a.url("langfuse/")).status_code == 403
    body = owner.get(a.url("langfuse/")).json()
    assert body["public_key"] == "pk-lf-org-acme" and "secret_key" not in body
    assert owner.get(a.url("")).json()["slug"] == "acme"


# Web pages ------------------------------------------------------------------------------------------




def test_web_pages_with_foreign_ids_are_not_found(world: World) -> None:
    a, g = world.acme, world.globex
    owner = web_login(a, "owner")
    for path in (f"projects/{g.project.pk}/", f"projects/{a.project.pk}/runs/{world.g.run}/",
                 f"projects/{a.project.pk}/runs/{world.p2.run}/", f"projects/{world.project2.pk}/runs/{world.p1.run}/",
                 f"projects/{g.project.pk}/runs/{world.g.run}/", "projects/999999/"):
        assert owner.get(f"/orgs/{a.org.slug}/{path}").status_code == 404, path
    for path in ("", "keys/", "routes/", "audit/", f"projects/{g.project.pk}/"):
        assert owner.get(f"/orgs/{g.org.slug}/{path}").status_code == 404, path
    for verb in ("revoke", "block", "rotate", "unblock"):
        assert owner.post(f"/orgs/{a.org.slug}/keys/{g.key.pk}/{verb}/").status_code == 404
        assert owner.post(f"/orgs/{g.org.slug}/keys/{g.key.pk}/{verb}/").status_code == 404
    for page in ("", "keys/", "routes/", "audit/", f"projects/{a.project.pk}/",
                 f"projects/{a.project.pk}/runs/{world.p1.run}/"):
        response = owner.get(f"/orgs/{a.org.slug}/{page}")
        assert response.status_code == 200 and no_foreign_names(world, response.content), page
    g.key.refresh_from_db()
    assert g.key.status == KeyStatus.ACTIVE


def test_web_key_actions_of_a_member_on_keys_of_others(world: World) -> None:
    """Another team's key: 404; its own team's key of another owner: refused, the key unchanged."""
    a = world.acme
    member = web_login(a, "member")
    for verb in ("revoke", "block", "rotate"):
        assert member.post(f"/orgs/{a.org.slug}/keys/{world.research_key.pk}/{verb}/").status_code == 404
        response = member.post(f"/orgs/{a.org.slug}/keys/{world.team_admin_key.pk}/{verb}/")
        assert response.status_code == 403, (verb, response.status_code)
    for key in (world.research_key, world.team_admin_key):
        key.refresh_from_db()
        assert key.status == KeyStatus.ACTIVE and key.rotated_at is None
    page = member.get(f"/orgs/{a.org.slug}/keys/").content.decode()
    assert "research key" not in page and "acme team admin key" in page
    overview = member.get(f"/orgs/{a.org.slug}/").content.decode()  # teams are the org's: their names show
    assert "research key" not in overview and no_foreign_names(world, overview)
    issued = member.post(f"/orgs/{a.org.slug}/keys/", {"name": "x", "team": world.research_key.team_id,
                                                       "project": world.research_key.project_id})
    assert issued.status_code in (400, 403) and not VirtualKey.objects.filter(name="x").exists()
    issued = member.post(f"/orgs/{a.org.slug}/keys/", {"name": "y", "team": world.globex.team.pk,
                                                       "project": world.globex.project.pk})
    assert issued.status_code == 400 and not VirtualKey.objects.filter(name="y").exists()
    viewer = web_login(a, "viewer")
    assert viewer.post(f"/orgs/{a.org.slug}/keys/{a.key.pk}/revoke/").status_code == 403
    a.key.refresh_from_db()
    assert a.key.status == KeyStatus.ACTIVE


def test_web_pages_of_a_non_member_are_not_found(world: World) -> None:
    outsider = web_login(world.globex, "owner")
    a = world.acme
    for path in ("", "keys/", "routes/", "audit/", f"projects/{a.project.pk}/",
                 f"projects/{a.project.pk}/runs/{world.p1.run}/"):
        assert outsider.get(f"/orgs/{a.org.slug}/{path}").status_code == 404, path
    assert outsider.post(f"/orgs/{a.org.slug}/keys/{a.key.pk}/revoke/").status_code == 404
    assert outsider.post(f"/orgs/{a.org.slug}/keys/", {"name": "z", "team": a.team.pk,
                                                       "project": a.project.pk}).status_code == 404
    a.key.refresh_from_db()
    assert a.key.status == KeyStatus.ACTIVE and not VirtualKey.objects.filter(name="z").exists()


# Another organization's ids in the organization-level paths ------------------------------------------


def foreign_paths(w: World) -> list[tuple[str, str]]:
    """(method, path under acme's URL) naming globex's objects, and acme's research team's team membership
    under acme's own team."""
    g = w.globex
    membership = g.org.memberships.get(user=g.users["member"])
    team_membership = g.team.memberships.get(user=g.users["member"])
    research = w.research_key.team
    research_tm = research.memberships.get(user=w.acme.users["admin"])
    token = ApiToken.objects.filter(organization=g.org).first()
    assert token is not None
    audit = g.org.audit_log.first()
    assert audit is not None
    out = [(m, f"members/{membership.pk}/") for m in ("get", "patch", "delete")]
    out += [(m, f"teams/{g.team.pk}/") for m in ("get", "patch", "delete")]
    out += [(m, f"teams/{g.team.pk}/members/") for m in ("get", "post")]
    out += [(m, f"teams/{g.team.pk}/members/{team_membership.pk}/") for m in ("get", "patch", "delete")]
    out += [(m, f"teams/{w.acme.team.pk}/members/{team_membership.pk}/") for m in ("get", "patch", "delete")]
    out += [(m, f"teams/{w.acme.team.pk}/members/{research_tm.pk}/") for m in ("get", "patch", "delete")]
    out += [(m, f"projects/{g.project.pk}/") for m in ("get", "patch", "delete")]
    out += [(m, f"credentials/{g.credential.pk}/") for m in ("get", "patch", "delete")]
    out += [(m, f"routes/{g.route.pk}/") for m in ("get", "patch", "delete")]
    out += [(m, f"keys/{g.key.pk}/") for m in ("get", "patch")]
    out += [("post", f"keys/{g.key.pk}/{verb}/") for verb in ("rotate", "revoke", "block", "unblock")]
    out += [(m, f"tokens/{token.pk}/") for m in ("get", "delete")]
    out += [("get", f"audit-log/{audit.pk}/")]
    return out


def globex_state(w: World) -> tuple[Any, ...]:
    g = w.globex
    key = VirtualKey.objects.get(pk=g.key.pk)
    return (list(g.org.memberships.values_list("pk", "role").order_by("pk")),
            list(g.team.memberships.values_list("pk", "role").order_by("pk")),
            list(w.research_key.team.memberships.values_list("pk", "role").order_by("pk")),
            list(Project.objects.filter(organization=g.org).values_list("pk", "name", "max_budget")),
            list(ModelRoute.objects.filter(organization=g.org).values_list("pk", "name", "description")),
            (key.status, key.name, key.rotated_at, key.key_hash),
            list(ApiToken.objects.filter(organization=g.org).values_list("pk", "revoked_at")),
            g.org.credentials.count(), g.org.teams.count())


@pytest.mark.parametrize("role", ["owner", "team_admin"])
def test_another_organizations_ids_in_paths_are_not_found(world: World, role: str) -> None:
    """404 (a team admin's too-low role may be refused first, 403, before any row is read)."""
    allowed = {404} if role == "owner" else {403, 404}
    client = world.acme.client(role)
    before = globex_state(world)
    body = {"name": "pwned", "role": "admin", "description": "pwned", "max_budget": "1", "email": "owner@acme.test"}
    wrong = {}
    for method, path in foreign_paths(world):
        response = getattr(client, method)(world.acme.url(path), body, format="json")
        if response.status_code not in allowed or not no_foreign_names(world, response.content):
            wrong[f"{method} {path}"] = (response.status_code, response.content[:200])
    assert not wrong, wrong
    assert globex_state(world) == before


@pytest.mark.parametrize("whose", ["globex", "other project"])
def test_imported_labels_name_only_items_of_the_evaluators_project(world: World, whose: str) -> None:
    foreign = world.g if whose == "globex" else world.p2
    before = HumanLabel.objects.count()
    for content, content_type in ((f"item_id,label\n{foreign.item},true\n", "text/csv"),
                                  (f'[{{"item_id": {foreign.item}, "label": "true"}}]', "application/json")):
        response = world.acme.client("owner").post(p1_url(world, f"evaluators/{world.p1.evaluator}/labels/import/"),
                                                   content.encode(), content_type=content_type)
        assert response.status_code == 400 and "file" in response.json(), response.content
        assert no_foreign_names(world, response.content), response.content
    assert HumanLabel.objects.count() == before


def test_a_key_cannot_move_to_another_tenants_team_or_project(world: World) -> None:
    a = world.acme
    response = a.client("owner").patch(a.url(f"keys/{a.key.pk}/"), {"team": world.globex.team.pk,
                                                                    "project": world.globex.project.pk,
                                                                    "organization": world.globex.org.pk},
                                       format="json")
    assert response.status_code == 200, response.content
    key = VirtualKey.objects.get(pk=a.key.pk)
    assert (key.organization_id, key.team_id, key.project_id) == (a.org.pk, a.team.pk, a.project.pk)


def test_a_token_of_another_organization_does_not_act_here_for_a_member_of_both(world: World) -> None:
    """globex's member is also acme's viewer: its globex token still answers 404 under acme."""
    a, g = world.acme, world.globex
    services.member_add(actor=system_actor(a.org, "tests"), email="member@globex.test", role="viewer")
    globex_token = g.client("member")
    for path in ("", "keys/", "teams/", f"projects/{a.project.pk}/evaluators/", "usage/", "tokens/"):
        assert globex_token.get(a.url(path)).status_code == 404, path
    assert globex_token.post(a.url("tokens/"), {"name": "x", "role": "viewer"}, format="json").status_code == 404


HUGE = "9" * 30


@pytest.mark.parametrize("path", [f"projects/{HUGE}/evaluators/", f"teams/{HUGE}/members/", f"keys/{HUGE}/",
                                  "projects/{project}/datasets/" + HUGE + "/items/",
                                  "projects/{project}/benchmarks/" + HUGE + "/runs/",
                                  "projects/{project}/evaluators/" + HUGE + "/labels/",
                                  "projects/{project}/runs/" + HUGE + "/scores/", f"projects/{HUGE}/langfuse/",
                                  "projects/00{project}/evaluators/"])
def test_ids_out_of_range_or_padded_are_not_found(acme: Tenant, path: str) -> None:
    url = acme.url(path.format(project=acme.project.pk))
    expected = 200 if path.startswith("projects/00") else 404
    assert acme.client("owner").get(url).status_code == expected, url


@pytest.mark.parametrize("path", [f"projects/{HUGE}/", f"projects/{{project}}/runs/{HUGE}/", f"keys/{HUGE}/revoke/"])
def test_web_ids_out_of_range_are_not_found(acme: Tenant, path: str) -> None:
    owner = web_login(acme, "owner")
    url = f"/orgs/{acme.org.slug}/{path.format(project=acme.project.pk)}"
    response = owner.post(url) if path.endswith("revoke/") else owner.get(url)
    assert response.status_code == 404, (url, response.status_code)


def test_web_key_form_needs_the_csrf_token(acme: Tenant) -> None:
    user = acme.users["owner"]
    user.set_password("pw-for-tests-1234")
    user.save()
    client = Client(enforce_csrf_checks=True)
    assert client.login(username=user.username, password="pw-for-tests-1234")
    response = client.post(f"/orgs/{acme.org.slug}/keys/", {"name": "csrf", "team": acme.team.pk,
                                                            "project": acme.project.pk})
    assert response.status_code == 403 and not VirtualKey.objects.filter(name="csrf").exists()
    anonymous = Client()
    assert anonymous.get(f"/orgs/{acme.org.slug}/keys/").status_code == 302
    assert anonymous.post(f"/orgs/{acme.org.slug}/keys/{acme.key.pk}/revoke/").status_code == 302


def test_evaluation_objects_one_may_view_are_not_ones_one_may_change(world: World) -> None:
    """Everyone in the organization reads a project's evaluation objects; only its team's admins (and org
    admins) change them: a plain member of the team, and the team admin of another team's project."""
    a = world.acme
    research_project = Project.objects.get(pk=world.research_key.project_id)
    member, team_admin = a.client("member"), a.client("team_admin")
    assert member.get(p1_url(world, "langfuse/")).status_code == 200
    before = evaluation_state(world.p1)
    for method, path, body in [("put", "langfuse/", {"host": "http://127.0.0.1:1", "public_key": "p"}),
                               ("delete", "langfuse/", None), ("post", "langfuse/provision/", None),
                               *[(m, fill(p, world.p1, world.p1), fill_body(b, world.p1, world.p1))
                                 for m, p, b in NESTED_WRITES if "own_" not in p]]:
        response = getattr(member, method)(p1_url(world, path), body, format="json")
        assert response.status_code == 403, (method, path, response.status_code, response.content[:200])
    assert evaluation_state(world.p1) == before and a.project.langfuse_connection is not None
    other = a.url(f"projects/{research_project.pk}/")
    for path, body in (("evaluators/", {"name": "x", "template": "helpfulness", "judge_route": "chat"}),
                       ("datasets/", {"name": "x"}), ("langfuse/", None)):
        response = (team_admin.put(other + path, {"host": "http://127.0.0.1:1", "public_key": "p"}, format="json")
                    if body is None else team_admin.post(other + path, body, format="json"))
        assert response.status_code == 403, (path, response.content)


@pytest.mark.parametrize("role", ["member", "team_admin", "viewer"])
def test_credentials_are_for_admins(acme: Tenant, role: str) -> None:
    client = acme.client(role)
    assert client.get(acme.url("credentials/")).status_code == 403
    assert client.get(acme.url(f"credentials/{acme.credential.pk}/")).status_code == 403
    routes_listed = client.get(acme.url("routes/")).json()
    assert "sk-provider-secret-value" not in str(routes_listed)


def test_an_idempotent_replay_does_not_show_a_key_one_can_no_longer_see(acme: Tenant) -> None:
    """A replay of a key creation answered the key record from the idempotency record, not through
    `visible_to`: a member who issued a key, then left the team while the key passed to another owner,
    read it again (name, owner, limits, status) by replaying the request."""
    member = acme.client("member")
    body = {"name": "acme replayed key", "team": acme.team.pk, "project": acme.project.pk}
    created = member.post(acme.url("keys/"), body, format="json", HTTP_IDEMPOTENCY_KEY="once")
    assert created.status_code == 201, created.content
    team_admin = acme.client("team_admin")
    key_id = created.json()["id"]
    assert team_admin.patch(acme.url(f"keys/{key_id}/"), {"owner": "team_admin@acme.test"},
                            format="json").status_code == 200
    services.team_member_remove(actor=system_actor(acme.org, "tests"),
                                membership=acme.team.memberships.get(user=acme.users["member"]))
    assert member.get(acme.url(f"keys/{key_id}/")).status_code == 404
    replay = member.post(acme.url("keys/"), body, format="json", HTTP_IDEMPOTENCY_KEY="once")
    assert replay.status_code in (404, 409) and "replayed key" not in replay.content.decode(), replay.content
