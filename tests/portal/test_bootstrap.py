"""`manage.py bootstrap_org` for scripts and first set-up."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from portal.models import ApiToken, AuditLogEntry, Membership
from tests.factories import api


@pytest.mark.django_db
def test_bootstrap_prints_a_working_owner_token_as_last_line() -> None:
    out, err = io.StringIO(), io.StringIO()
    call_command("bootstrap_org", "initech", "--owner", "Boss@Initech.test", "--name", "Initech", stdout=out,
                 stderr=err)
    token = out.getvalue().strip().splitlines()[-1]
    assert token.startswith("lpt_")
    assert "initech" in err.getvalue()
    membership = Membership.objects.get(organization__slug="initech")
    assert membership.role == "owner" and membership.user.email == "boss@initech.test"
    response = api(token).post("/api/v1/orgs/initech/teams/", {"name": "core"}, format="json")
    assert response.status_code == 201
    assert ApiToken.objects.get(organization__slug="initech").role == "owner"
    assert set(AuditLogEntry.objects.filter(organization__slug="initech").values_list("action", flat=True)) >= {
        "organization.create", "membership.create", "api_token.create", "team.create"}


@pytest.mark.django_db
@pytest.mark.parametrize("args,message", [
    (["Bad Slug", "--owner", "a@b.test"], "slug"),
    (["ok", "--owner", "not-an-email"], "email"),
])
def test_bootstrap_rejects_bad_input(args: list[str], message: str) -> None:
    with pytest.raises(CommandError) as exc:
        call_command("bootstrap_org", *args, stdout=io.StringIO(), stderr=io.StringIO())
    assert message in str(exc.value).lower()


@pytest.mark.django_db
def test_bootstrap_refuses_an_existing_slug(acme: Any) -> None:
    with pytest.raises(CommandError, match="slug"):
        call_command("bootstrap_org", "acme", "--owner", "x@y.test", stdout=io.StringIO(), stderr=io.StringIO())
