"""Input the API used to answer with a 500 (found by Schemathesis with real ids): each is a
400 that says what is wrong, and nothing is stored."""

from __future__ import annotations

import json
from typing import Any

from gateway.models import VirtualKey
from tests.factories import Tenant


def project_url(t: Tenant, path: str) -> str:
    return t.url(f"projects/{t.project.pk}/{path}")


def test_a_nul_character_anywhere_in_a_json_body_is_a_400_that_says_where(acme: Tenant) -> None:
    """PostgreSQL stores no NUL in text or jsonb: a key's metadata holding one was a 500 at save."""
    member = acme.client("member")
    response = member.patch(acme.url(f"keys/{acme.key.pk}/"), data=json.dumps({"metadata": {"note": "a\u0000b"}}),
                            content_type="application/json")
    assert response.status_code == 400, response.content
    assert "'metadata.note' holds a NUL character" in response.json()["metadata"][0]
    assert VirtualKey.objects.get(pk=acme.key.pk).metadata == acme.key.metadata
    response = member.post(acme.url("keys/"), data=json.dumps({"name": "k\u0000", "team": acme.team.pk,
                                                                  "project": acme.project.pk}),
                           content_type="application/json")
    assert response.status_code == 400 and "'name' holds a NUL character" in response.json()["name"][0]


def test_a_route_deployment_without_a_model_is_a_400(acme: Tenant) -> None:
    response = acme.client("owner").patch(acme.url(f"routes/{acme.route.pk}/"), {
        "deployments": [{"litellm_params": {"mock_response": "hi"}}]}, format="json")
    assert response.status_code == 400, response.content
    assert "model" in json.dumps(response.json())
    assert acme.route.deployments.count() == 1


def test_an_evaluator_changed_to_a_template_keeps_its_description(acme: Tenant) -> None:
    owner = acme.client("owner")
    created = owner.post(project_url(acme, "evaluators/"), {"name": "helpful", "template": "helpfulness",
                                                             "judge_route": "chat"}, format="json")
    assert created.status_code == 201, created.content
    response = owner.patch(project_url(acme, f"evaluators/{created.json()['id']}/"),
                           {"description": "mine", "template": "conciseness"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["description"] == "mine"


def test_an_uploaded_file_with_a_nul_character_is_refused_by_line(acme: Tenant) -> None:
    client: Any = acme.client("team_admin")
    dataset = client.post(project_url(acme, "datasets/"), {"name": "nul"}, format="json").json()
    body = json.dumps({"input": "fine"}) + "\n" + json.dumps({"input": "a\u0000b"}) + "\n"
    response = client.post(project_url(acme, f"datasets/{dataset['id']}/import/"), data=body.encode(),
                           content_type="application/x-ndjson")
    assert response.status_code == 400, response.content
    assert "line 2: input contains a NUL character" in json.dumps(response.json())


def test_usage_near_the_first_representable_day_is_answered_not_a_500(acme: Tenant) -> None:
    """`to` a few days after 0001-01-01 with no `from`: the default window (30 days back) is cut at the
    first representable day instead of overflowing (Schemathesis found the 500)."""
    client = acme.client("owner")
    answer = client.get(acme.url("usage/"), {"to": "0001-01-05"})
    assert answer.status_code == 200, answer.content
    assert answer.json()["from"] == "0001-01-01"
    assert client.get(acme.url("usage/"), {"to": "0001-01-05", "from": "0001-01-06"}).status_code == 400
