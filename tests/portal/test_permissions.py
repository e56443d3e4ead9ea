"""Every endpoint of the API (the test below fails if the OpenAPI schema lists
one that the matrix does not), walked with the owner, admin, team admin,
member, viewer and outsider (globex's owner) tokens: outsiders get 404, a
too-low role gets 403, and no answer shows another tenant's rows: every
answer is searched for globex's names (each carries its slug) and every list's
rows are checked to be acme's."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import models, transaction
from django.test import override_settings

from evals.agent.models import AgentMessage, AgentReport, AgentSchedule, AgentStep
from evals.models import (
    Benchmark,
    BenchmarkRun,
    Dataset,
    DatasetItem,
    EvalRun,
    EvalSchedule,
    EvalScore,
    Evaluator,
    EvaluatorVersion,
    HumanLabel,
    LangfuseConnection,
    LangfuseOrgKey,
)
from gateway.models import ModelRoute, ProviderCredential, UsageRecord, VirtualKey
from gateway.services import credentials, keys, routes
from portal import services
from portal.access import actor_for_user, system_actor
from portal.models import ApiToken, AuditLogEntry, Membership, Project, Team, TeamMembership
from tests.factories import ROLES, Evals, Tenant, connect_langfuse, make_evals, make_tenant, project_url
from tests.langfuse_standin import LangfuseStandin

ORDER = {role: i for i, role in enumerate(reversed(ROLES))}  # viewer 0 ... owner 4
TEAM = "team_admin"  # evaluation writes: the project's team managers (and org admins)

@dataclass
class Case:
    op: str  # the operationId in the OpenAPI schema
    method: str
    path: Callable[[Tenant, str], str]  # (tenant, role) -> path; fresh_* helpers make what it consumes
    lowest: str | None  # the lowest role that succeeds; None: members may act on their own keys
    ok: int | tuple[int, ...] = 200
    body: Callable[[Tenant], Any] | None = None
    model: type[models.Model] | None = None  # a list's rows: each must be of acme
    org_lookup: str = "organization"
    content_type: str | None = None  # a raw body (uploads)
    row_key: str = "id"  # what identifies a list's row


_numbers = itertools.count(1)


def n() -> int:
    """A number no other object has used (names must be distinct)."""
    return next(_numbers)


def system(t: Tenant) -> Any:
    return system_actor(t.org, "t")


def fresh_team(t: Tenant) -> Team:
    return services.team_create(actor=system(t), data={"name": f"{t.org.slug}-tmp-{Team.objects.count()}"})


def fresh_member(t: Tenant) -> Membership:
    return services.member_add(actor=system(t), email=f"tmp{n()}@{t.org.slug}.test", role="viewer")


def fresh_key(t: Tenant, owner: str = "member") -> VirtualKey:
    actor = actor_for_user(t.org, t.users["team_admin"])
    return keys.key_create(actor=actor, data={"name": f"{t.org.slug} k", "team": t.team, "project": t.project,
                                              "owner": t.users[owner]}).key


def fresh_team_member(t: Tenant) -> TeamMembership:
    m = fresh_member(t)
    services.member_update(actor=system(t), membership=m, role="member")
    return services.team_member_add(actor=system(t), team=t.team, email=m.user.email, role="member")


def fresh_project(t: Tenant) -> Project:
    return services.project_create(actor=system(t), data={"name": f"{t.org.slug}-p-{n()}", "team": t.team})


def fresh_credential(t: Tenant) -> ProviderCredential:
    return credentials.credential_create(actor=system(t), name=f"{t.org.slug}-c-{n()}", provider="openai",
                                         secrets={"api_key": "sk-x"})


def fresh_route(t: Tenant) -> ModelRoute:
    return routes.route_create(actor=system(t), data={"name": f"r{n()}", "deployments": [
        {"credential": None, "model": "m", "litellm_params": {"mock_response": f"hello from {t.org.slug}"}}]})


def own_token(t: Tenant, role: str) -> int:
    return ApiToken.objects.filter(organization=t.org, user=t.users.get(role, t.users["owner"])).order_by("pk")[0].pk


def spare_token(t: Tenant, role: str) -> int:
    actor = actor_for_user(t.org, t.users.get(role, t.users["owner"]))
    token, _ = services.api_token_create(actor=actor, name=f"{t.org.slug} spare", role=actor.role)
    return token.pk


def ev(t: Tenant) -> Evals:
    assert t.evals is not None
    return t.evals


def version(t: Tenant) -> EvaluatorVersion:
    return EvaluatorVersion.objects.filter(evaluator_id=ev(t).evaluator).order_by("-version")[0]


def fresh_schedule(t: Tenant) -> int:
    return EvalSchedule.objects.create(project=t.project, evaluator_id=ev(t).evaluator, name=f"{t.org.slug}-s{n()}",
                                       interval_seconds=3600).pk


def fresh_run(t: Tenant) -> int:
    return EvalRun.objects.create(project=t.project, evaluator_version=version(t), status="succeeded").pk


def fresh_dataset(t: Tenant) -> int:
    return Dataset.objects.create(project=t.project, name=f"{t.org.slug}-ds-{n()}").pk


def fresh_item(t: Tenant) -> int:
    return DatasetItem.objects.create(dataset_id=ev(t).dataset, external_id=f"{t.org.slug}-i{n()}", input="q").pk


def fresh_label(t: Tenant) -> int:
    return HumanLabel.objects.create(project=t.project, evaluator_id=ev(t).evaluator, trace_id=f"{t.org.slug}-t{n()}",
                                     label="true").pk


def fresh_benchmark(t: Tenant) -> int:
    response = t.client("owner").post(project_url(t, "benchmarks/"), {
        "name": f"{t.org.slug}-b{n()}", "dataset": ev(t).dataset, "routes": ["chat"],
        "metrics": [{"type": "exact_match"}]}, format="json")
    assert response.status_code == 201, response.content
    return int(response.json()["id"])


def fresh_agent_report(t: Tenant) -> int:
    from tests.factories import make_agent_report

    return make_agent_report(t)


def fresh_agent_schedule(t: Tenant) -> int:
    return AgentSchedule.objects.create(project=t.project, name=f"{t.org.slug}-as{n()}", route=t.route).pk


def connected(t: Tenant) -> str:
    """The project is connected to Langfuse (a DELETE of an earlier role removed it)."""
    if not LangfuseConnection.objects.filter(project=t.project).exists():
        connect_langfuse(t, STANDIN[0])
    return project_url(t, "langfuse/")


def org_keyed(t: Tenant) -> str:
    if not LangfuseOrgKey.objects.filter(organization=t.org).exists():
        connect_langfuse(t, STANDIN[0])
    return t.url("langfuse/")


def lf_keys(t: Tenant, prefix: str = "") -> dict[str, str]:
    slug = t.org.slug
    return {"host": STANDIN[0].url, "public_key": f"pk-lf-{prefix}{slug}", "secret_key": f"sk-lf-{prefix}{slug}"}


STANDIN: list[LangfuseStandin] = []  # the stand-in of the module's world


def in_project(path: str) -> Callable[[Tenant, str], str]:
    """A project path with `{evaluator}`, `{dataset}`... filled from the tenant's evaluation objects."""
    return lambda t, r: project_url(t, path.format(**vars(ev(t))))


def at(path: str) -> Callable[[Tenant, str], str]:
    return lambda t, r: t.url(path.format(team=t.team.pk, project=t.project.pk, key=t.key.pk,
                                          credential=t.credential.pk, route=t.route.pk))


def ndjson(t: Tenant) -> bytes:
    return json.dumps({"id": f"{t.org.slug}-up-{n()}", "input": "q", "expected_output": True}).encode()


CASES = [
    Case("orgs_retrieve", "get", at(""), "viewer"),
    Case("orgs_partial_update", "patch", at(""), "admin", body=lambda t: {"name": "Acme Inc"}),
    Case("orgs_members_list", "get", at("members/"), "viewer", model=Membership),
    Case("orgs_members_retrieve", "get", lambda t, r: t.url(f"members/{fresh_member(t).pk}/"), "viewer"),
    Case("orgs_members_create", "post", at("members/"), "admin", 201,
         lambda t: {"email": f"new{n()}@acme.test", "role": "member"}),
    Case("orgs_members_partial_update", "patch", lambda t, r: t.url(f"members/{fresh_member(t).pk}/"), "admin",
         body=lambda t: {"role": "member"}),
    Case("orgs_members_destroy", "delete", lambda t, r: t.url(f"members/{fresh_member(t).pk}/"), "admin", 204),
    Case("orgs_teams_list", "get", at("teams/"), "viewer", model=Team),
    Case("orgs_teams_retrieve", "get", at("teams/{team}/"), "viewer"),
    Case("orgs_teams_create", "post", at("teams/"), "admin", 201, lambda t: {"name": f"acme-team-{n()}"}),
    Case("orgs_teams_partial_update", "patch", at("teams/{team}/"), "admin", body=lambda t: {"max_budget": 5}),
    Case("orgs_teams_destroy", "delete", lambda t, r: t.url(f"teams/{fresh_team(t).pk}/"), "admin", 204),
    Case("orgs_teams_members_list", "get", at("teams/{team}/members/"), "viewer", model=TeamMembership,
         org_lookup="team__organization"),
    Case("orgs_teams_members_retrieve", "get",
         lambda t, r: t.url(f"teams/{t.team.pk}/members/{fresh_team_member(t).pk}/"), "viewer"),
    Case("orgs_teams_members_create", "post", at("teams/{team}/members/"), TEAM, 201,
         lambda t: {"email": fresh_member(t).user.email, "role": "member"}),
    Case("orgs_teams_members_partial_update", "patch",
         lambda t, r: t.url(f"teams/{t.team.pk}/members/{fresh_team_member(t).pk}/"), TEAM,
         body=lambda t: {"role": "admin"}),
    Case("orgs_teams_members_destroy", "delete",
         lambda t, r: t.url(f"teams/{t.team.pk}/members/{fresh_team_member(t).pk}/"), TEAM, 204),
    Case("orgs_projects_list", "get", at("projects/"), "viewer", model=Project),
    Case("orgs_projects_retrieve", "get", at("projects/{project}/"), "viewer"),
    Case("orgs_projects_create", "post", at("projects/"), TEAM, 201,
         lambda t: {"name": f"acme-p-{n()}", "team": t.team.pk}),
    Case("orgs_projects_partial_update", "patch", at("projects/{project}/"), TEAM, body=lambda t: {"description": "x"}),
    Case("orgs_projects_destroy", "delete", lambda t, r: t.url(f"projects/{fresh_project(t).pk}/"), TEAM, 204),
    Case("orgs_credentials_list", "get", at("credentials/"), "admin", model=ProviderCredential),
    Case("orgs_credentials_retrieve", "get", at("credentials/{credential}/"), "admin"),
    Case("orgs_credentials_create", "post", at("credentials/"), "admin", 201,
         lambda t: {"name": f"acme-c-{n()}", "provider": "anthropic", "secrets": {"api_key": "sk-ant-x"}}),
    Case("orgs_credentials_partial_update", "patch", at("credentials/{credential}/"), "admin",
         body=lambda t: {"settings": {"api_base": "https://api.openai.com/v1"}, "secrets": {"api_key": "sk-acme-2"}}),
    Case("orgs_credentials_destroy", "delete", lambda t, r: t.url(f"credentials/{fresh_credential(t).pk}/"),
         "admin", 204),
    Case("orgs_routes_list", "get", at("routes/"), "viewer", model=ModelRoute),
    Case("orgs_routes_retrieve", "get", at("routes/{route}/"), "viewer"),
    Case("orgs_routes_create", "post", at("routes/"), "admin", 201,
         lambda t: {"name": f"r{n()}", "deployments": [{"model": "m", "litellm_params": {"mock_response": "hi"}}]}),
    Case("orgs_routes_partial_update", "patch", at("routes/{route}/"), "admin", body=lambda t: {"num_retries": 2}),
    Case("orgs_routes_destroy", "delete", lambda t, r: t.url(f"routes/{fresh_route(t).pk}/"), "admin", 204),
    Case("orgs_keys_list", "get", at("keys/"), "viewer", model=VirtualKey),
    Case("orgs_keys_retrieve", "get", at("keys/{key}/"), "viewer"),
    Case("orgs_keys_create", "post", at("keys/"), None, 201,
         lambda t: {"name": "acme new", "team": t.team.pk, "project": t.project.pk}),
    Case("orgs_keys_partial_update", "patch", lambda t, r: t.url(f"keys/{fresh_key(t).pk}/"), None,
         body=lambda t: {"name": "acme renamed"}),
    Case("orgs_keys_partial_update", "patch", lambda t, r: t.url(f"keys/{fresh_key(t, 'admin').pk}/"), TEAM,
         body=lambda t: {"name": "acme x"}),  # a key of another owner
    Case("orgs_keys_rotate_create", "post", lambda t, r: t.url(f"keys/{fresh_key(t).pk}/rotate/"), None,
         body=lambda t: {}),
    Case("orgs_keys_revoke_create", "post", lambda t, r: t.url(f"keys/{fresh_key(t).pk}/revoke/"), None),
    Case("orgs_keys_block_create", "post", lambda t, r: t.url(f"keys/{fresh_key(t).pk}/block/"), TEAM),
    Case("orgs_keys_unblock_create", "post", lambda t, r: t.url(f"keys/{fresh_key(t).pk}/unblock/"), TEAM),
    Case("orgs_tokens_list", "get", at("tokens/"), "viewer", model=ApiToken),
    Case("orgs_tokens_retrieve", "get", lambda t, r: t.url(f"tokens/{own_token(t, r)}/"), "viewer"),
    Case("orgs_tokens_create", "post", at("tokens/"), "viewer", 201, lambda t: {"name": "acme ci", "role": "viewer"}),
    Case("orgs_tokens_destroy", "delete", lambda t, r: t.url(f"tokens/{spare_token(t, r)}/"), "viewer", 204),
    Case("orgs_audit_log_list", "get", at("audit-log/"), "admin", model=AuditLogEntry),
    Case("orgs_audit_log_retrieve", "get",
         lambda t, r: t.url(f"audit-log/{AuditLogEntry.objects.filter(organization=t.org)[0].pk}/"),
         "admin"),
    Case("orgs_usage_list", "get", at("usage/?group_by=team"), "viewer"),
    # Langfuse: the organization key (admins) and the project's connection
    Case("orgs_langfuse_retrieve", "get", lambda t, r: org_keyed(t), "admin"),
    Case("orgs_langfuse_update", "put", lambda t, r: org_keyed(t), "admin", body=lambda t: lf_keys(t, "org-")),
    Case("orgs_langfuse_destroy", "delete", lambda t, r: org_keyed(t), "admin", 204),
    Case("orgs_projects_langfuse_retrieve", "get", lambda t, r: connected(t), "viewer"),
    Case("orgs_projects_langfuse_update", "put", lambda t, r: connected(t), TEAM, body=lf_keys),
    Case("orgs_projects_langfuse_destroy", "delete", lambda t, r: connected(t), TEAM, 204),
    Case("orgs_projects_langfuse_provision_create", "post", lambda t, r: org_keyed(t) and connected(t) + "provision/",
         TEAM, 201),
    # evaluators, their versions, labels and calibrations
    Case("orgs_projects_evaluators_list", "get", in_project("evaluators/"), "viewer", model=Evaluator,
         org_lookup="project__organization"),
    Case("orgs_projects_evaluators_retrieve", "get", in_project("evaluators/{evaluator}/"), "viewer"),
    Case("orgs_projects_evaluators_versions_list", "get", in_project("evaluators/{evaluator}/versions/"), "viewer"),
    Case("orgs_projects_evaluators_templates_retrieve", "get", in_project("evaluators/templates/"), "viewer"),
    Case("orgs_projects_evaluators_create", "post", in_project("evaluators/"), TEAM, 201,
         lambda t: {"name": f"acme-ev-{n()}", "template": "correctness", "judge_route": "chat"}),
    Case("orgs_projects_evaluators_partial_update", "patch", in_project("evaluators/{evaluator}/"), TEAM,
         body=lambda t: {"description": "acme's judge"}),
    Case("orgs_projects_evaluators_labels_list", "get", in_project("evaluators/{evaluator}/labels/"), "viewer",
         model=HumanLabel, org_lookup="project__organization"),
    Case("orgs_projects_evaluators_labels_retrieve", "get", in_project("evaluators/{evaluator}/labels/{label}/"), "viewer"),
    Case("orgs_projects_evaluators_labels_create", "post", in_project("evaluators/{evaluator}/labels/"), TEAM, 201,
         lambda t: {"trace_id": f"acme-t-{n()}", "label": "true"}),
    Case("orgs_projects_evaluators_labels_destroy", "delete",
         lambda t, r: project_url(t, f"evaluators/{ev(t).evaluator}/labels/{fresh_label(t)}/"), TEAM, 204),
    Case("orgs_projects_evaluators_labels_import_create", "post", in_project("evaluators/{evaluator}/labels/import/"), TEAM,
         body=lambda t: f"trace_id,label\nacme-t-{n()},true\n".encode(), content_type="text/csv"),
    Case("orgs_projects_evaluators_labels_report_retrieve", "get", in_project("evaluators/{evaluator}/labels/report/"),
         "viewer"),
    Case("orgs_projects_evaluators_calibrations_list", "get", in_project("evaluators/{evaluator}/calibrations/"), "viewer",
         model=EvalRun, org_lookup="project__organization"),
    Case("orgs_projects_evaluators_calibrations_retrieve", "get",
         in_project("evaluators/{evaluator}/calibrations/{calibration}/"), "viewer"),
    Case("orgs_projects_evaluators_calibrations_create", "post", in_project("evaluators/{evaluator}/calibrations/"), TEAM,
         202, lambda t: {"dataset": ev(t).dataset}),
    # schedules, runs, scores, reports
    Case("orgs_projects_schedules_list", "get", in_project("schedules/"), "viewer", model=EvalSchedule,
         org_lookup="project__organization"),
    Case("orgs_projects_schedules_retrieve", "get", in_project("schedules/{schedule}/"), "viewer"),
    Case("orgs_projects_schedules_create", "post", in_project("schedules/"), TEAM, 201,
         lambda t: {"name": f"acme-s-{n()}", "evaluator": ev(t).evaluator, "interval_seconds": 3600}),
    Case("orgs_projects_schedules_partial_update", "patch", in_project("schedules/{schedule}/"), TEAM,
         body=lambda t: {"enabled": False}),
    Case("orgs_projects_schedules_destroy", "delete", lambda t, r: project_url(t, f"schedules/{fresh_schedule(t)}/"),
         TEAM, 204),
    Case("orgs_projects_schedules_run_create", "post",
         lambda t, r: project_url(t, f"schedules/{fresh_schedule(t)}/run/"), TEAM, 202),  # one run at a time
    Case("orgs_projects_runs_list", "get", in_project("runs/"), "viewer", model=EvalRun, org_lookup="project__organization"),
    Case("orgs_projects_runs_retrieve", "get", in_project("runs/{run}/"), "viewer"),
    Case("orgs_projects_runs_create", "post", in_project("runs/"), TEAM, 202,
         lambda t: {"evaluator": ev(t).evaluator, "window_start": "2026-01-01T00:00:00Z"}),
    Case("orgs_projects_runs_scores_list", "get", in_project("runs/{run}/scores/"), "viewer", model=EvalScore,
         org_lookup="project__organization", row_key="trace_id"),
    Case("orgs_projects_runs_report_retrieve", "get", in_project("runs/{run}/report/"), "viewer"),
    Case("orgs_projects_runs_report_create", "post", lambda t, r: project_url(t, f"runs/{fresh_run(t)}/report/"),
         TEAM, 202, lambda t: {"route": "chat"}),
    # datasets and their items, imports, Langfuse
    Case("orgs_projects_datasets_list", "get", in_project("datasets/"), "viewer", model=Dataset,
         org_lookup="project__organization"),
    Case("orgs_projects_datasets_retrieve", "get", in_project("datasets/{dataset}/"), "viewer"),
    Case("orgs_projects_datasets_create", "post", in_project("datasets/"), TEAM, 201, lambda t: {"name": f"acme-d-{n()}"}),
    Case("orgs_projects_datasets_partial_update", "patch", in_project("datasets/{dataset}/"), TEAM,
         body=lambda t: {"description": "acme's"}),
    Case("orgs_projects_datasets_destroy", "delete", lambda t, r: project_url(t, f"datasets/{fresh_dataset(t)}/"),
         TEAM, 204),
    Case("orgs_projects_datasets_import_create", "post", in_project("datasets/{dataset}/import/"), TEAM, body=ndjson,
         content_type="application/x-ndjson"),
    Case("orgs_projects_datasets_build_from_traces_create", "post",
         lambda t, r: connected(t) and project_url(t, f"datasets/{ev(t).dataset}/build-from-traces/"), TEAM,
         body=lambda t: {}),
    Case("orgs_projects_datasets_push_create", "post",
         lambda t, r: connected(t) and project_url(t, f"datasets/{ev(t).dataset}/push/"), TEAM, body=lambda t: {}),
    Case("orgs_projects_datasets_pull_create", "post",
         lambda t, r: connected(t) and project_url(t, f"datasets/{ev(t).dataset}/pull/"), TEAM, body=lambda t: {}),
    Case("orgs_projects_datasets_items_list", "get", in_project("datasets/{dataset}/items/"), "viewer", model=DatasetItem,
         org_lookup="dataset__project__organization"),
    Case("orgs_projects_datasets_items_retrieve", "get", in_project("datasets/{dataset}/items/{item}/"), "viewer"),
    Case("orgs_projects_datasets_items_create", "post", in_project("datasets/{dataset}/items/"), TEAM, 201,
         lambda t: {"input": "acme question", "expected_output": "acme answer"}),
    Case("orgs_projects_datasets_items_partial_update", "patch", in_project("datasets/{dataset}/items/{item}/"), TEAM,
         body=lambda t: {"metadata": {"acme": 1}}),
    Case("orgs_projects_datasets_items_destroy", "delete",
         lambda t, r: project_url(t, f"datasets/{ev(t).dataset}/items/{fresh_item(t)}/"), TEAM, 204),
    # benchmarks and their runs
    Case("orgs_projects_benchmarks_list", "get", in_project("benchmarks/"), "viewer", model=Benchmark,
         org_lookup="project__organization"),
    Case("orgs_projects_benchmarks_retrieve", "get", in_project("benchmarks/{benchmark}/"), "viewer"),
    Case("orgs_projects_benchmarks_create", "post", in_project("benchmarks/"), TEAM, 201,
         lambda t: {"name": f"acme-b-{n()}", "dataset": ev(t).dataset, "routes": ["chat"],
                    "metrics": [{"type": "exact_match"}]}),
    Case("orgs_projects_benchmarks_partial_update", "patch", in_project("benchmarks/{benchmark}/"), TEAM,
         body=lambda t: {"concurrency": 2}),
    Case("orgs_projects_benchmarks_destroy", "delete",
         lambda t, r: project_url(t, f"benchmarks/{fresh_benchmark(t)}/"), TEAM, 204),
    Case("orgs_projects_benchmarks_run_create", "post",
         lambda t, r: project_url(t, f"benchmarks/{fresh_benchmark(t)}/run/"), TEAM, 202),
    Case("orgs_projects_benchmarks_runs_list", "get", in_project("benchmarks/{benchmark}/runs/"), "viewer",
         model=BenchmarkRun, org_lookup="benchmark__project__organization"),
    Case("orgs_projects_benchmarks_runs_retrieve", "get", in_project("benchmarks/{benchmark}/runs/{benchmark_run}/"), "viewer"),
    Case("orgs_projects_benchmarks_runs_results_csv", "get",
         in_project("benchmarks/{benchmark}/runs/{benchmark_run}/results.csv"), "viewer"),
    # the evaluation agent: reports, their steps, conversation and findings' datasets; its schedules
    Case("orgs_projects_reports_list", "get", in_project("reports/"), "viewer", model=AgentReport,
         org_lookup="project__organization"),
    Case("orgs_projects_reports_retrieve", "get", in_project("reports/{agent_report}/"), "viewer"),
    Case("orgs_projects_reports_create", "post", in_project("reports/"), TEAM, 202, lambda t: {"route": "chat"}),
    Case("orgs_projects_reports_steps_list", "get", in_project("reports/{agent_report}/steps/"), "viewer",
         model=AgentStep, org_lookup="report__project__organization"),
    Case("orgs_projects_reports_messages_list", "get", in_project("reports/{agent_report}/messages/"), "viewer",
         model=AgentMessage, org_lookup="report__project__organization"),
    Case("orgs_projects_reports_messages_create", "post",
         lambda t, r: project_url(t, f"reports/{fresh_agent_report(t)}/messages/"), TEAM, 202,
         lambda t: {"content": "acme: why?"}),
    Case("orgs_projects_reports_findings_dataset_create", "post",
         lambda t, r: connected(t) and project_url(t, f"reports/{ev(t).agent_report}/findings/0/dataset/"), TEAM,
         201, lambda t: {}),
    Case("orgs_projects_agent_schedules_list", "get", in_project("agent-schedules/"), "viewer", model=AgentSchedule,
         org_lookup="project__organization"),
    Case("orgs_projects_agent_schedules_retrieve", "get", in_project("agent-schedules/{agent_schedule}/"), "viewer"),
    Case("orgs_projects_agent_schedules_create", "post", in_project("agent-schedules/"), TEAM, 201,
         lambda t: {"name": f"acme-as-{n()}", "route": "chat"}),
    Case("orgs_projects_agent_schedules_partial_update", "patch", in_project("agent-schedules/{agent_schedule}/"),
         TEAM, body=lambda t: {"focus": "acme's"}),
    Case("orgs_projects_agent_schedules_destroy", "delete",
         lambda t, r: project_url(t, f"agent-schedules/{fresh_agent_schedule(t)}/"), TEAM, 204),
    Case("orgs_projects_agent_schedules_run_create", "post",
         lambda t, r: project_url(t, f"agent-schedules/{fresh_agent_schedule(t)}/run/"), TEAM, 202),
]

# Members may write their own keys in their teams, but not block or unblock them.
OWN_KEY_RULE = {"owner": True, "admin": True, "team_admin": True, "member": True, "viewer": False}


def expected(case: Case, role: str) -> tuple[int, ...]:
    allowed = OWN_KEY_RULE[role] if case.lowest is None else ORDER[role] >= ORDER[case.lowest]
    if not allowed:
        return (403,)
    return case.ok if isinstance(case.ok, tuple) else (case.ok,)


def call(t: Tenant, client: Any, case: Case, role: str) -> Any:
    path = case.path(t, role)
    body = case.body(t) if case.body else None
    send = getattr(client, case.method)
    if case.content_type:
        return send(path, data=body, content_type=case.content_type)
    return send(path, body, format="json") if body is not None else send(path)


def assert_shows_nothing_of(other: Tenant, mine: Tenant, case: Case, response: Any, role: str) -> None:
    """Neither the other tenant's names (each carries its slug) nor, in a list, a row of it."""
    content = b"".join(response.streaming_content) if response.streaming else response.content
    text = content.decode(errors="replace").lower()
    leaked = [marker for marker in other.foreign_markers() if marker.lower() in text]
    assert not leaked, (case.op, role, leaked, text[:300])
    if case.model is not None and response.status_code == 200:
        ids = [row[case.row_key] for row in response.json()["results"]]
        assert ids, (case.op, role, "the list is empty: a leak could not show")
        lookup = "pk__in" if case.row_key == "id" else f"{case.row_key}__in"
        foreign = case.model._default_manager.filter(**{lookup: ids}).exclude(**{case.org_lookup: mine.org})
        assert not foreign.exists(), (case.op, role, list(foreign.values_list("pk", flat=True)))


@pytest.fixture(scope="module")
def world(django_db_setup: Any, django_db_blocker: Any) -> Iterator[tuple[Tenant, Tenant]]:
    """acme and globex, each with one of every object (evaluations and Langfuse included), made
    once for the module in a transaction that is rolled back at its end; each test runs in a
    savepoint inside it."""
    standin = LangfuseStandin(version=4).start()
    STANDIN[:] = [standin]
    # the stand-in listens on loopback, which tenants' outbound URLs may not reach by default
    with override_settings(PORTAL_OUTBOUND_ALLOWED_NETWORKS=["127.0.0.1/32"]), django_db_blocker.unblock(), \
            transaction.atomic():
        acme, globex = make_tenant("acme"), make_tenant("globex", provider_secret="sk-globex-provider-secret")
        for t in (globex, acme):
            make_evals(t, standin)
            fresh_key(t)
            UsageRecord.objects.create(**usage_row(t))
        yield acme, globex
        transaction.set_rollback(True)
    standin.stop()


@pytest.fixture
def acme(world: tuple[Tenant, Tenant], db: Any) -> Tenant:
    return world[0]


@pytest.fixture
def globex(world: tuple[Tenant, Tenant], db: Any) -> Tenant:
    return world[1]


def usage_row(t: Tenant) -> dict[str, Any]:
    from django.utils import timezone

    return {"request_id": f"{t.org.slug}-req-1", "organization": t.org, "team": t.team, "project": t.project,
            "key": t.key, "owner_email": f"member@{t.org.slug}.test", "route": "chat", "status": "success",
            "model_group": f"{t.org.slug}/chat",
            "prompt_tokens": 1, "completion_tokens": 1, "cost": 0.001, "created_at": timezone.now()}


def operations() -> set[str]:
    from tests.factories import api

    schema = api().get("/api/v1/schema/", {"format": "json"}).json()
    return {op["operationId"] for ops in schema["paths"].values() for method, op in ops.items()
            if method in {"get", "post", "put", "patch", "delete"}}


@pytest.mark.django_db
def test_the_matrix_covers_every_endpoint_of_the_api() -> None:
    covered = {case.op for case in CASES}
    assert sorted(operations() - covered) == [], "endpoints the role matrix does not walk"
    assert sorted(covered - operations()) == [], "matrix cases of endpoints that no longer exist"


@pytest.mark.django_db
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.op}-{c.method}" if c.lowest != TEAM or "keys" not in c.op
                         else f"{c.op}-other-owner")
def test_each_role_gets_what_its_role_allows_and_outsiders_404(world: tuple[Tenant, Tenant], case: Case) -> None:
    acme, globex = world
    for role in ROLES:
        response = call(acme, acme.client(role), case, role)
        assert response.status_code in expected(case, role), (role, response.status_code, response.content[:300])
        assert_shows_nothing_of(globex, acme, case, response, role)
    # globex's owner, with full rights in globex, cannot see that acme's objects exist
    response = call(acme, globex.client("owner"), case, "outsider")
    assert response.status_code == 404, response.content[:300]
    assert response.json() == {"detail": "Not found."}
    # fresh_* helpers write through the system actor; nothing was written on the outsider's behalf
    assert not AuditLogEntry.objects.filter(organization=acme.org, actor=globex.users["owner"]).exists()


OBJECT_PATHS = [
    ("teams", lambda t: t.team.pk), ("projects", lambda t: t.project.pk), ("credentials", lambda t: t.credential.pk),
    ("routes", lambda t: t.route.pk), ("keys", lambda t: t.key.pk),
]


@pytest.mark.django_db
@pytest.mark.parametrize("resource,ident", OBJECT_PATHS, ids=[p[0] for p in OBJECT_PATHS])
def test_another_tenants_object_is_404_under_ones_own_org(acme: Tenant, globex: Tenant, resource: str,
                                                           ident: Callable[[Tenant], int]) -> None:
    owner = acme.client("owner")
    url = acme.url(f"{resource}/{ident(globex)}/")
    assert owner.get(url).status_code == 404
    assert owner.patch(url, {"name": "stolen"}, format="json").status_code == 404
    assert owner.delete(url).status_code in (404, 405)
    if resource == "keys":
        for verb in ("rotate", "revoke", "block", "unblock"):
            assert owner.post(f"{url}{verb}/", {}, format="json").status_code == 404
        globex.key.refresh_from_db()
        assert globex.key.status == "active"


LISTS = ["members/", "teams/", "projects/", "credentials/", "routes/", "keys/", "tokens/", "audit-log/",
         "teams/{team}/members/"]


@pytest.mark.django_db
def test_no_list_shows_another_tenants_rows(acme: Tenant, globex: Tenant) -> None:
    # Make both tenants' rows interleave, so a missing filter would show.
    for t in (acme, globex, acme):
        fresh_key(t)
    foreign_markers = {"globex", str(globex.org.pk)}
    for role, path in itertools.product(ROLES, LISTS):
        response = acme.client(role).get(acme.url(path.format(team=acme.team.pk)), {"page_size": 500})
        if response.status_code == 403:
            continue
        assert response.status_code == 200, (role, path)
        body = response.json()
        assert body["count"] == len(body["results"]) > 0 or path == "audit-log/", (role, path)
        text = response.content.decode().lower()
        assert not any(marker.lower() in text for marker in globex.foreign_markers() + ["sk-globex"]), (role, path)
        assert foreign_markers.isdisjoint({row.get("organization") for row in body["results"]})
        assert "globex" not in {row.get("model_group", "").split("/")[0] for row in body["results"]}


@pytest.mark.django_db
def test_lists_do_not_leak_even_when_filtering_by_a_foreign_id(acme: Tenant, globex: Tenant) -> None:
    owner = acme.client("owner")
    for params in ({"team": globex.team.pk}, {"project": globex.project.pk}, {"owner": "member@globex.test"}):
        response = owner.get(acme.url("keys/"), params)
        assert response.status_code == 200 and response.json()["count"] == 0


@pytest.mark.django_db
def test_filtering_by_another_tenants_id_looks_like_filtering_by_no_id(acme: Tenant, globex: Tenant) -> None:
    owner = acme.client("owner")
    for path, field, foreign in (("projects/", "team", globex.team.pk), ("keys/", "team", globex.team.pk),
                                 ("keys/", "project", globex.project.pk)):
        theirs = owner.get(acme.url(path), {field: foreign})
        nobodys = owner.get(acme.url(path), {field: 10**9})
        assert theirs.status_code == nobodys.status_code == 200, path
        assert theirs.json()["count"] == nobodys.json()["count"] == 0


@pytest.mark.django_db
def test_members_see_only_their_teams_keys(acme: Tenant) -> None:
    other_team = fresh_team(acme)
    other_project = services.project_create(actor=system_actor(acme.org, "t"),
                                            data={"name": "other", "team": other_team})
    admin = actor_for_user(acme.org, acme.users["admin"])
    hidden = keys.key_create(actor=admin, data={"name": "hidden", "team": other_team, "project": other_project}).key
    seen_by_member = {k["id"] for k in acme.client("member").get(acme.url("keys/")).json()["results"]}
    seen_by_viewer = {k["id"] for k in acme.client("viewer").get(acme.url("keys/")).json()["results"]}
    assert acme.key.pk in seen_by_member and hidden.pk not in seen_by_member
    assert hidden.pk in seen_by_viewer
    assert acme.client("member").get(acme.url(f"keys/{hidden.pk}/")).status_code == 404


@pytest.mark.django_db
def test_unauthenticated_and_bad_tokens_get_401(acme: Tenant) -> None:
    from tests.factories import api

    assert api().get(acme.url("keys/")).status_code == 401
    assert api("lpt_not-a-real-token").get(acme.url("keys/")).status_code == 401
    response = api("garbage").get(acme.url("keys/"))
    assert response.status_code == 401 and "Bearer lpt_" in response.json()["detail"]
