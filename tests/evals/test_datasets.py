"""Datasets through the API: CRUD and tenancy, JSONL/CSV imports, items built
from Langfuse traces, and pushes to / pulls from Langfuse datasets (against
the Langfuse stand-in)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from evals.langfuse_client import LangfuseClient
from evals.models import Dataset, DatasetItem
from evals.tasks_datasets import build_dataset_from_traces
from portal import services
from portal.access import system_actor
from portal.models import AuditLogEntry
from tests.factories import Tenant
from tests.langfuse_standin import LangfuseStandin
from tests.langfuse_standin.fixtures import PROJECT_ID, PUBLIC_KEY, SECRET_KEY

pytestmark = pytest.mark.django_db


def url(t: Tenant, path: str) -> str:
    return t.url(f"projects/{t.project.pk}/{path}")


def make_dataset(t: Tenant, name: str = "support", role: str = "team_admin") -> dict[str, Any]:
    response = t.client(role).post(url(t, "datasets/"), {"name": name, "description": "tickets"}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def upload(t: Tenant, dataset_id: int, body: str, content_type: str = "application/x-ndjson",
           role: str = "team_admin") -> Any:
    return t.client(role).post(url(t, f"datasets/{dataset_id}/import/"), data=body.encode(),
                               content_type=content_type)


def jsonl(*rows: dict[str, Any]) -> str:
    return "\n".join(json.dumps(r) for r in rows) + "\n"


def items(dataset_id: int) -> dict[str, DatasetItem]:
    return {i.external_id: i for i in DatasetItem.objects.filter(dataset_id=dataset_id)}


@pytest.fixture
def connected(acme: Tenant, langfuse_standin: LangfuseStandin) -> LangfuseStandin:
    response = acme.client("owner").put(url(acme, "langfuse/"), {
        "host": langfuse_standin.url, "public_key": PUBLIC_KEY, "secret_key": SECRET_KEY}, format="json")
    assert response.status_code == 201, response.content
    return langfuse_standin


# CRUD and tenancy ------------------------------------------------------


def test_datasets_crud_with_unique_names_and_an_audit_trail(acme: Tenant) -> None:
    created = make_dataset(acme)
    assert created["item_count"] == 0 and created["langfuse_name"] == ""
    again = acme.client("team_admin").post(url(acme, "datasets/"), {"name": "support"}, format="json")
    assert again.status_code == 400 and "already exists" in again.json()["name"][0]
    listed = acme.client("viewer").get(url(acme, "datasets/")).json()
    assert [d["name"] for d in listed["results"]] == ["support"]
    renamed = acme.client("owner").patch(url(acme, f"datasets/{created['id']}/"), {"name": "tickets"}, format="json")
    assert renamed.status_code == 200 and renamed.json()["name"] == "tickets"
    assert acme.client("admin").delete(url(acme, f"datasets/{created['id']}/")).status_code == 204
    assert not Dataset.objects.exists()
    actions = list(AuditLogEntry.objects.filter(target_type="dataset").order_by("id").values_list("action",
                                                                                                   flat=True))
    assert actions == ["dataset.create", "dataset.update", "dataset.delete"]


def test_viewers_and_other_members_cannot_write_and_other_tenants_see_nothing(acme: Tenant, globex: Tenant) -> None:
    dataset = make_dataset(acme)
    detail, item_list = url(acme, f"datasets/{dataset['id']}/"), url(acme, f"datasets/{dataset['id']}/items/")
    for role in ("viewer", "member"):  # a viewer of the org; a member who is not the team's admin
        client = acme.client(role)
        assert client.get(detail).status_code == 200
        assert client.post(url(acme, "datasets/"), {"name": "x"}, format="json").status_code == 403
        assert client.patch(detail, {"name": "y"}, format="json").status_code == 403
        assert client.delete(detail).status_code == 403
        assert client.post(item_list, {"input": "q"}, format="json").status_code == 403
        assert upload(acme, dataset["id"], jsonl({"input": "q"}), role=role).status_code == 403
    assert DatasetItem.objects.count() == 0
    # another organization: 404 for everything, even its owner
    outsider = globex.client("owner")
    assert outsider.get(detail).status_code == 404
    assert outsider.get(item_list).status_code == 404
    assert outsider.delete(detail).status_code == 404
    # the dataset through another project of the same organization: 404
    other = services.project_create(actor=system_actor(acme.org, "tests"), data={"name": "other", "team": acme.team})
    assert acme.client("owner").get(acme.url(f"projects/{other.pk}/datasets/{dataset['id']}/")).status_code == 404
    assert acme.client("owner").get(acme.url(f"projects/{other.pk}/datasets/{dataset['id']}/items/")
                                    ).status_code == 404
    # another project's dataset, reached through globex's own project: 404
    assert outsider.get(globex.url(f"projects/{globex.project.pk}/datasets/{dataset['id']}/")).status_code == 404


def test_items_crud_paginated_with_stable_ids(acme: Tenant) -> None:
    dataset = make_dataset(acme)
    base = url(acme, f"datasets/{dataset['id']}/items/")
    admin = acme.client("team_admin")
    first = admin.post(base, {"external_id": "q-1", "input": {"question": "2+2?"}, "expected_output": "4",
                              "metadata": {"topic": "math"}}, format="json")
    assert first.status_code == 201, first.content
    assert first.json()["external_id"] == "q-1" and first.json()["input"] == {"question": "2+2?"}
    generated = admin.post(base, {"input": "hello"}, format="json").json()
    assert len(generated["external_id"]) == 32 and generated["expected_output"] is None
    duplicate = admin.post(base, {"external_id": "q-1", "input": "again"}, format="json")
    assert duplicate.status_code == 400 and "already exists" in duplicate.json()["external_id"][0]
    assert admin.post(base, {"expected_output": "x"}, format="json").json() == {"input": ["This field is required."]}
    assert admin.post(base, {"input": None}, format="json").status_code == 400
    nul = admin.post(base, {"input": {"text": "a\u0000b"}}, format="json")
    assert nul.status_code == 400 and "NUL" in nul.json()["input"][0]
    for i in range(3):
        admin.post(base, {"input": f"more {i}"}, format="json")
    page = acme.client("viewer").get(base, {"page_size": 2}).json()
    assert page["count"] == 5 and len(page["results"]) == 2 and page["next"]
    detail = f"{base}{first.json()['id']}/"
    updated = admin.patch(detail, {"expected_output": "four", "metadata": {"topic": "arithmetic"}}, format="json")
    assert updated.json()["expected_output"] == "four" and updated.json()["input"] == {"question": "2+2?"}
    renamed = admin.patch(detail, {"external_id": "q-2"}, format="json")
    assert renamed.status_code == 400 and "cannot change" in renamed.json()["external_id"][0]
    assert acme.client("viewer").get(base, {"external_id": "q-1"}).json()["count"] == 1
    # an item of another dataset is not reachable through this one
    other = make_dataset(acme, "other")
    assert admin.get(url(acme, f"datasets/{other['id']}/items/{first.json()['id']}/")).status_code == 404
    assert admin.delete(detail).status_code == 204
    assert acme.client("viewer").get(url(acme, f"datasets/{dataset['id']}/")).json()["item_count"] == 4


# Imports ---------------------------------------------------------------


def test_jsonl_import_then_reimport_updates_instead_of_duplicating(acme: Tenant) -> None:
    dataset = make_dataset(acme)
    body = jsonl({"id": "a", "input": {"q": "capital of France?"}, "expected_output": "Paris",
                  "metadata": {"source": "geo"}},
                 {"id": "b", "input": "2+2", "expected_output": 4},
                 {"input": "no id, no expected output"})
    response = upload(acme, dataset["id"], body)
    assert response.status_code == 200 and response.json() == {"created": 3, "updated": 0}
    stored = items(dataset["id"])
    assert stored["a"].input == {"q": "capital of France?"} and stored["a"].metadata == {"source": "geo"}
    assert stored["b"].expected_output == 4
    again = upload(acme, dataset["id"], jsonl({"id": "a", "input": {"q": "capital of France?"},
                                               "expected_output": "Paris, France"}, {"id": "b", "input": "2+2"}),
                   content_type="application/jsonl")
    assert again.json() == {"created": 0, "updated": 2}
    stored = items(dataset["id"])
    assert len(stored) == 3 and stored["a"].expected_output == "Paris, France" and stored["b"].expected_output is None
    assert AuditLogEntry.objects.filter(action="dataset.import").count() == 2


def test_csv_import_as_a_multipart_file(acme: Tenant) -> None:
    dataset = make_dataset(acme)
    text = ('id,input,expected_output,metadata\n'
            'r1,"Summarize: ""hello""",hi,"{""lang"": ""en""}"\n'
            'r2,"A question\nover two lines",,\n')
    response = acme.client("team_admin").post(url(acme, f"datasets/{dataset['id']}/import/"), {
        "file": SimpleUploadedFile("items.csv", text.encode(), content_type="text/csv")}, format="multipart")
    assert response.status_code == 200, response.content
    assert response.json() == {"created": 2, "updated": 0}
    stored = items(dataset["id"])
    assert stored["r1"].input == 'Summarize: "hello"' and stored["r1"].metadata == {"lang": "en"}
    assert stored["r2"].input == "A question\nover two lines" and stored["r2"].expected_output is None


def test_bad_lines_are_all_reported_with_their_numbers_and_nothing_is_imported(acme: Tenant) -> None:
    dataset = make_dataset(acme)
    upload(acme, dataset["id"], jsonl({"id": "keep", "input": "kept", "expected_output": "old"}))
    body = "\n".join([
        json.dumps({"id": "keep", "input": "kept", "expected_output": "new"}),  # 1: fine (an update)
        '{"input": "unclosed"',  # 2
        json.dumps({"expected_output": "no input"}),  # 3
        "",  # 4: blank lines are fine
        json.dumps({"input": "x", "expectedOutput": "camelCase"}),  # 5
        json.dumps({"id": "dup", "input": "first"}),  # 6
        json.dumps({"id": "dup", "input": "second"}),  # 7
        json.dumps({"input": "x", "metadata": ["not", "an", "object"]}),  # 8
        "[1, 2]",  # 9
        '{"input": NaN}',  # 10
    ])
    response = upload(acme, dataset["id"], body)
    assert response.status_code == 400
    errors = response.json()["file"]
    assert [e.split(":")[0] for e in errors] == ["line 2", "line 3", "line 5", "line 7", "line 8", "line 9",
                                                 "line 10"]
    assert "not valid JSON" in errors[0] and "input is missing" in errors[1]
    assert "unknown field 'expectedOutput'" in errors[2] and "'dup' is already on line 6" in errors[3]
    assert "metadata is not a JSON object" in errors[4] and "not a JSON object" in errors[5]
    assert items(dataset["id"])["keep"].expected_output == "old" and DatasetItem.objects.count() == 1
    # CSV: a wrong header is one error; bad rows are numbered by the line they start on
    header = upload(acme, dataset["id"], "question,answer\nq,a\n", content_type="text/csv")
    assert header.status_code == 400 and header.json()["file"][0].startswith("line 1: the header must name")
    rows = upload(acme, dataset["id"], 'input,metadata\n"two\nlines",\nok,{bad json}\n,\n', content_type="text/csv")
    assert rows.json()["file"] == ["line 4: metadata is not a JSON object.", "line 5: input is missing."]
    binary = upload(acme, dataset["id"], "", content_type="text/csv")
    assert binary.status_code == 400 and "file" in binary.json()
    latin = acme.client("team_admin").post(url(acme, f"datasets/{dataset['id']}/import/"),
                                           data='input\nok\ncaf\xe9\n'.encode("latin-1"), content_type="text/csv")
    assert latin.json() == {"file": ["line 3: the file is not UTF-8 text."]}
    assert DatasetItem.objects.count() == 1


def test_size_and_line_limits(acme: Tenant, monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    dataset = make_dataset(acme)
    settings.EVALS_MAX_UPLOAD_ROWS = 3
    response = upload(acme, dataset["id"], jsonl(*[{"input": i} for i in range(4)]))
    assert response.status_code == 400 and "more than 3 items" in response.json()["file"][0]
    settings.EVALS_MAX_UPLOAD_BYTES = 100
    monkeypatch.setattr("evals.api.datasets.uploads.MULTIPART_SLACK", 0)
    too_big = upload(acme, dataset["id"], jsonl({"input": "x" * 200}))
    assert too_big.status_code == 413
    assert upload(acme, dataset["id"], "input\nx\n", content_type="application/xml").status_code == 415
    assert DatasetItem.objects.count() == 0


# Building from traces --------------------------------------------------


def seed(server: LangfuseStandin) -> tuple[list[str], list[str]]:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    gold = server.seed_traces(PROJECT_ID, 4, start=start, name="support-chat",
                              metadata=lambda i: {"tier": "gold" if i % 2 == 0 else "free"})
    server.seed_traces(PROJECT_ID, 3, start=start + dt.timedelta(minutes=5), name="other-app",
                       metadata={"tier": "gold"})
    server.seed_traces(PROJECT_ID, 2, start=start + dt.timedelta(minutes=10), name="support-chat",
                       tags=["portal-evaluation"], metadata={"tier": "gold"})  # the portal's own judge calls
    return gold[0::2], gold[1::2]


def test_build_from_traces_keeps_trace_ids_and_building_again_updates(acme: Tenant,
                                                                      connected: LangfuseStandin) -> None:
    gold, _ = seed(connected)
    dataset = make_dataset(acme)
    build = url(acme, f"datasets/{dataset['id']}/build-from-traces/")
    body = {"filters": {"name": "support-chat", "metadata": {"tier": "gold"}}, "max_items": 50}
    response = acme.client("team_admin").post(build, body, format="json")
    assert response.status_code == 200, response.content
    result = response.json()
    assert (result["created"], result["updated"], result["queued"]) == (2, 0, False)
    stored = list(DatasetItem.objects.filter(dataset_id=dataset["id"]).order_by("id"))
    assert sorted(i.source_trace_id for i in stored) == sorted(gold)
    trace = connected.project(PROJECT_ID).traces[stored[0].source_trace_id]
    assert stored[0].input == trace.input and stored[0].expected_output == trace.output
    assert stored[0].metadata["trace_name"] == "support-chat"
    again = acme.client("team_admin").post(build, {**body, "output_as": "metadata"}, format="json").json()
    assert (again["created"], again["updated"]) == (0, 2)
    relabel = DatasetItem.objects.get(pk=stored[0].pk)
    assert relabel.expected_output is None and relabel.metadata["output"] == trace.output
    capped = acme.client("team_admin").post(build, {"max_items": 1, "from_time": "2000-01-01T00:00:00Z"},
                                            format="json").json()
    assert capped["notes"] == ["stopped at the maximum of 1 items"]
    assert (capped["created"], capped["updated"]) == (0, 1)  # the oldest trace, already an item
    assert DatasetItem.objects.filter(dataset_id=dataset["id"]).count() == 2
    bad = acme.client("team_admin").post(build, {"max_items": 0, "filters": {"nope": 1}}, format="json")
    assert bad.status_code == 400 and set(bad.json()) == {"max_items", "filters"}
    assert connected.violations == []


def test_a_large_build_runs_on_a_worker_and_is_audited(acme: Tenant, connected: LangfuseStandin,
                                                       django_capture_on_commit_callbacks: Any) -> None:
    seed(connected)
    dataset = make_dataset(acme)
    with django_capture_on_commit_callbacks() as queued:
        response = acme.client("team_admin").post(url(acme, f"datasets/{dataset['id']}/build-from-traces/"), {
            "filters": {"name": "support-chat"}, "max_items": 1000}, format="json")
    assert response.status_code == 202 and response.json()["queued"] is True
    assert len(queued) == 1 and DatasetItem.objects.count() == 0  # sent to a worker once committed
    request = AuditLogEntry.objects.get(action="dataset.build")  # who asked for what
    spec = {k: v for k, v in request.after.items() if k != "status"}
    build_dataset_from_traces.apply(args=(dataset["id"], request.actor_id, spec))  # what the worker does
    assert DatasetItem.objects.filter(dataset_id=dataset["id"]).count() == 4
    outcomes = [e.after["status"] for e in AuditLogEntry.objects.filter(action="dataset.build").order_by("id")]
    assert outcomes == ["queued", "succeeded"]


def test_building_needs_a_langfuse_connection_and_a_failing_langfuse_writes_nothing(
        acme: Tenant, langfuse_standin: LangfuseStandin) -> None:
    dataset = make_dataset(acme)
    build = url(acme, f"datasets/{dataset['id']}/build-from-traces/")
    missing = acme.client("team_admin").post(build, {}, format="json")
    assert missing.status_code == 400 and "no enabled Langfuse connection" in missing.json()["langfuse"][0]
    acme.client("owner").put(url(acme, "langfuse/"), {"host": langfuse_standin.url, "public_key": PUBLIC_KEY,
                                                      "secret_key": SECRET_KEY}, format="json")
    seed(langfuse_standin)
    langfuse_standin.inject("GET", "/api/public/traces$", status=503, times=100, retry_after=0)
    down = acme.client("team_admin").post(build, {}, format="json")
    assert down.status_code == 503 and "Langfuse answered 503" in down.json()["detail"]
    assert DatasetItem.objects.count() == 0


# Langfuse: push and pull -----------------------------------------------


def test_push_and_pull_round_trip_without_duplicates(acme: Tenant, connected: LangfuseStandin) -> None:
    dataset = make_dataset(acme, "support/eval set")  # a '/' in the Langfuse name is quoted in the path
    upload(acme, dataset["id"], jsonl({"id": "a", "input": {"q": "hi"}, "expected_output": "hello"},
                                      {"id": "b", "input": "bye", "metadata": {"lang": "en"}},
                                      {"id": "c", "input": "ciao"}))
    push = url(acme, f"datasets/{dataset['id']}/push/")
    for _ in range(2):
        response = acme.client("team_admin").post(push, {}, format="json")
        assert response.status_code == 200, response.content
        assert response.json() == {"queued": False, "langfuse_name": "support/eval set", "pushed": 3, "failed": []}
    lf = connected.project(PROJECT_ID)
    assert list(lf.datasets) == ["support/eval set"]
    assert sorted(lf.dataset_items) == ["a", "b", "c"]
    assert lf.dataset_items["a"].expected_output == "hello" and lf.dataset_items["b"].metadata == {"lang": "en"}
    assert acme.client("viewer").get(url(acme, f"datasets/{dataset['id']}/")).json()["langfuse_name"] == \
        "support/eval set"
    # someone edits an item and adds one in Langfuse; pulling (twice) brings both, without duplicates
    with LangfuseClient(connected.url, PUBLIC_KEY, SECRET_KEY) as client:
        client.upsert_dataset_item({"datasetName": "support/eval set", "id": "a", "expectedOutput": "hello!"})
        client.upsert_dataset_item({"datasetName": "support/eval set", "id": "d", "input": "new",
                                    "sourceTraceId": "trace-1"})
        client.upsert_dataset_item({"datasetName": "support/eval set", "id": "e", "input": "old",
                                    "status": "ARCHIVED"})
    pull = url(acme, f"datasets/{dataset['id']}/pull/")
    first = acme.client("team_admin").post(pull, {}, format="json").json()
    assert first == {"langfuse_name": "support/eval set", "created": 1, "updated": 3, "skipped": 1}
    second = acme.client("team_admin").post(pull, {}, format="json").json()
    assert (second["created"], second["updated"]) == (0, 4)
    stored = items(dataset["id"])
    assert sorted(stored) == ["a", "b", "c", "d"]
    assert stored["a"].expected_output == "hello!" and stored["d"].source_trace_id == "trace-1"
    # a new dataset pulled from the Langfuse one is the same dataset
    copy = make_dataset(acme, "copy")
    pulled = acme.client("team_admin").post(url(acme, f"datasets/{copy['id']}/pull/"), {"name": "support/eval set"},
                                            format="json").json()
    assert pulled["created"] == 4 and sorted(items(copy["id"])) == ["a", "b", "c", "d"]
    # pushing again still leaves one item per id in Langfuse
    acme.client("team_admin").post(push, {}, format="json")
    assert sorted(lf.dataset_items) == ["a", "b", "c", "d", "e"] and len(lf.datasets) == 1
    assert connected.violations == []


def test_push_and_pull_errors(acme: Tenant, connected: LangfuseStandin) -> None:
    dataset = make_dataset(acme)
    unknown = acme.client("team_admin").post(url(acme, f"datasets/{dataset['id']}/pull/"), {"name": "nope"},
                                             format="json")
    assert unknown.status_code == 400 and "no dataset named 'nope'" in unknown.json()["name"][0]
    assert acme.client("member").post(url(acme, f"datasets/{dataset['id']}/push/"), {},
                                      format="json").status_code == 403
    # an item id Langfuse already has in another dataset is reported; the other items go through
    upload(acme, dataset["id"], jsonl({"id": "shared", "input": "x"}, {"id": "mine", "input": "y"}))
    with LangfuseClient(connected.url, PUBLIC_KEY, SECRET_KEY) as client:
        client.create_dataset("elsewhere")
        client.upsert_dataset_item({"datasetName": "elsewhere", "id": "shared", "input": "z"})
    pushed = acme.client("team_admin").post(url(acme, f"datasets/{dataset['id']}/push/"), {"name": "mine"},
                                            format="json").json()
    assert pushed["pushed"] == 1 and [f["id"] for f in pushed["failed"]] == ["shared"]
    assert "another dataset" in pushed["failed"][0]["error"]
    # Langfuse refusing the keys is a 400 that says so
    connected.project(PROJECT_ID).api_keys[0].secret_key = "rotated"
    refused = acme.client("team_admin").post(url(acme, f"datasets/{dataset['id']}/push/"), {}, format="json")
    assert refused.status_code == 400 and "rejected the keys" in refused.json()["langfuse"][0]
