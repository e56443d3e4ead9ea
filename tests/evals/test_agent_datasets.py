"""A finding's traces as a dataset (POST reports/{id}/findings/{index}/dataset/),
against the Langfuse stand-in: the traces are read from the project's own
Langfuse, become items that an existing benchmark runs on, doing it again
updates them; roles, a missing connection, Langfuse down, another tenant's
traces."""

from __future__ import annotations

from typing import Any

import pytest

from evals.agent.models import AgentFinding
from evals.models import Dataset, DatasetItem
from portal.models import AuditLogEntry
from tests.evals.test_agent_api import make_report, reports_url
from tests.factories import Tenant, connect_langfuse, project_url
from tests.langfuse_standin import LangfuseStandin

pytestmark = pytest.mark.django_db


def dataset_url(t: Tenant, report_id: int, index: int = 0) -> str:
    return reports_url(t, f"{report_id}/findings/{index}/dataset/")


def test_a_findings_traces_become_a_dataset_a_benchmark_runs_on(acme: Tenant,
                                                                langfuse_standin: LangfuseStandin) -> None:
    connect_langfuse(acme, langfuse_standin)
    ids = langfuse_standin.seed_traces("lf-acme", 3, name="support-chat")
    report = make_report(acme, trace_ids=(ids[0], ids[1], "deleted-since"))
    for role in ("member", "viewer"):
        assert acme.client(role).post(dataset_url(acme, report.pk), {}, format="json").status_code == 403
    assert not Dataset.objects.exists()

    response = acme.client("team_admin").post(dataset_url(acme, report.pk), {}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == f"agent report {report.pk} #0: acme finding 0" and body["item_count"] == 2
    items = list(DatasetItem.objects.filter(dataset_id=body["id"]).order_by("source_trace_id"))
    assert [i.source_trace_id for i in items] == sorted(ids[:2])  # the trace Langfuse no longer has is left out
    trace = langfuse_standin.project("lf-acme").traces[items[0].source_trace_id]
    # R2-3: a finding's outputs are the faulty ones: kept in metadata, the expected output is the team's to write
    assert items[0].input == trace.input and items[0].expected_output is None
    assert items[0].metadata["output"] == trace.output
    assert items[0].metadata["agent_report"] == report.pk and items[0].metadata["trace_name"] == "support-chat"
    assert AgentFinding.objects.get(report=report, index=0).dataset_id == body["id"]
    detail = acme.client("viewer").get(reports_url(acme, f"{report.pk}/")).json()
    assert detail["findings"][0]["dataset"] == body["id"]
    audit = AuditLogEntry.objects.get(action="dataset.from_finding")
    assert audit.after["created"] == 2 and audit.after["missing"] == ["deleted-since"]

    DatasetItem.objects.filter(pk=items[0].pk).update(expected_output="Réponse en français")  # the team writes it
    again = acme.client("team_admin").post(dataset_url(acme, report.pk), {}, format="json")
    assert again.status_code == 201 and again.json()["id"] == body["id"] and again.json()["item_count"] == 2
    assert DatasetItem.objects.count() == 2  # updated, not added
    assert DatasetItem.objects.get(pk=items[0].pk).expected_output == "Réponse en français"  # and kept

    named = acme.client("owner").post(dataset_url(acme, report.pk), {"name": "wrong language"}, format="json")
    assert named.status_code == 201 and named.json()["name"] == "wrong language" and named.json()["item_count"] == 2
    bad = acme.client("owner").post(dataset_url(acme, report.pk), {"name": "x" * 101}, format="json")
    assert bad.status_code == 400 and list(bad.json()) == ["name"]

    owner = acme.client("owner")
    benchmark = owner.post(project_url(acme, "benchmarks/"), {"name": "language fix", "dataset": body["id"],
                                                              "routes": ["chat"],
                                                              "metrics": [{"type": "contains", "value": "answer"}]},
                           format="json")
    assert benchmark.status_code == 201, benchmark.content
    run = owner.post(project_url(acme, f"benchmarks/{benchmark.json()['id']}/run/"))
    assert run.status_code == 202 and run.json()["status"] == "queued", run.content


def test_the_outputs_become_expected_outputs_only_when_asked(acme: Tenant, langfuse_standin: LangfuseStandin) -> None:
    connect_langfuse(acme, langfuse_standin)
    ids = langfuse_standin.seed_traces("lf-acme", 1)
    report = make_report(acme, trace_ids=(ids[0],))
    bad = acme.client("owner").post(dataset_url(acme, report.pk), {"output_as": "input"}, format="json")
    assert bad.status_code == 400 and list(bad.json()) == ["output_as"] and not Dataset.objects.exists()
    response = acme.client("owner").post(dataset_url(acme, report.pk), {"output_as": "expected_output"},
                                         format="json")
    assert response.status_code == 201, response.content
    item = DatasetItem.objects.get(dataset_id=response.json()["id"])
    assert item.expected_output == langfuse_standin.project("lf-acme").traces[ids[0]].output
    assert "output" not in item.metadata


def test_without_langfuse_or_with_langfuse_down_nothing_is_written(acme: Tenant,
                                                                   langfuse_standin: LangfuseStandin) -> None:
    report = make_report(acme)
    missing = acme.client("owner").post(dataset_url(acme, report.pk), {}, format="json")
    assert missing.status_code == 400 and "no enabled Langfuse connection" in missing.json()["langfuse"][0]
    connect_langfuse(acme, langfuse_standin)
    langfuse_standin.inject("GET", "/api/public/traces/", status=503, times=100, retry_after=0)
    down = acme.client("owner").post(dataset_url(acme, report.pk), {}, format="json")
    assert down.status_code == 503, down.content
    assert "Nothing was changed" in down.json()["detail"]
    assert not Dataset.objects.exists() and AgentFinding.objects.get(report=report).dataset_id is None


def test_traces_are_read_with_the_projects_own_keys(acme: Tenant, globex: Tenant,
                                                    langfuse_standin: LangfuseStandin) -> None:
    """A finding naming another tenant's trace ids (which the evidence check refuses anyway) reads nothing of
    theirs: the project's own Langfuse keys see only its own traces."""
    for t in (acme, globex):
        connect_langfuse(t, langfuse_standin)
    theirs = langfuse_standin.seed_traces("lf-globex", 2, name="globex secrets")
    mine = langfuse_standin.seed_traces("lf-acme", 1)
    report = make_report(acme, trace_ids=(mine[0], *theirs))
    response = acme.client("owner").post(dataset_url(acme, report.pk), {}, format="json")
    assert response.status_code == 201 and response.json()["item_count"] == 1, response.content
    assert list(DatasetItem.objects.values_list("source_trace_id", flat=True)) == [mine[0]]
    assert not DatasetItem.objects.filter(metadata__trace_name="globex secrets").exists()


def test_a_finding_of_another_tenant_is_404_and_makes_nothing(acme: Tenant, globex: Tenant,
                                                              langfuse_standin: LangfuseStandin) -> None:
    for t in (acme, globex):
        connect_langfuse(t, langfuse_standin)
    theirs = make_report(globex, trace_ids=tuple(langfuse_standin.seed_traces("lf-globex", 1)))
    for path in (dataset_url(acme, theirs.pk), dataset_url(globex, theirs.pk)):
        response: Any = acme.client("owner").post(path, {}, format="json")
        assert response.status_code == 404, path
    assert not Dataset.objects.exists()
