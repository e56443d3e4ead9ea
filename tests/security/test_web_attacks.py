"""Reviewer R1: a hostile tenant against the web UI (issue 10), through Django's test client.

Each test is one attack. The ones marked xfail(strict) are findings (see /work/notes/R1.md): the attack
works today; the mark comes off with the fix. The others are attacks that were tried and held: they
stay as regression tests."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core import mail
from django.test import Client

from evals.models import Evaluator
from gateway.models import ModelRoute, VirtualKey
from portal import services
from portal.access import system_actor
from portal.models import ApiToken, Invitation, Membership, OrgRole, Project, Team, TeamMembership, TeamRole
from tests.factories import Tenant, connect_langfuse
from tests.factories import web_client as login

PASSWORD = "pw-for-tests-1234"




def org_url(t: Tenant, path: str = "") -> str:
    return f"/orgs/{t.org.slug}/{path}"


def project_url(t: Tenant, path: str = "") -> str:
    return org_url(t, f"projects/{t.project.pk}/{path}")


def text(response: Any) -> str:
    return str(response.content.decode())


def outsider_of_the_team(t: Tenant) -> Client:
    """A member of the organization in another team: not a manager of the tenant's team."""
    system = system_actor(t.org, "tests")
    user = services.member_add(actor=system, email=f"other-team@{t.org.slug}.test", role=OrgRole.MEMBER).user
    other = services.team_create(actor=system, data={"name": f"{t.org.slug}-other"})
    services.team_member_add(actor=system, team=other, email=user.email, role=TeamRole.ADMIN)
    client = Client()
    client.force_login(user)
    return client


# Findings ----------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_the_no_js_preview_of_a_member_who_does_not_manage_the_team_shows_no_trace(
        acme: Tenant, langfuse_standin: Any) -> None:
    """Held: the editor (and its preview) is shown only to the team's managers, and the JSON preview
    refuses the others (it shows a trace's content)."""
    connect_langfuse(acme, langfuse_standin)
    trace_ids = langfuse_standin.seed_traces(f"lf-{acme.org.slug}", 2)
    evaluator = Evaluator.objects.create(project=acme.project, name="acme-judge")
    for client in (login(acme, "member"), outsider_of_the_team(acme)):
        json_preview = client.post(project_url(acme, "evaluators/preview/"), {"prompt_template": "Q: {{input}}"})
        assert json_preview.status_code == 403
        for url in (project_url(acme, "evaluators/"), project_url(acme, f"evaluators/{evaluator.pk}/")):
            for trace in ("", trace_ids[0]):
                page = client.post(url, {"preview": "1", "prompt_template": "LEAK[{{input}}|{{output}}]",
                                         "trace_id": trace, "judge_route": "chat", "score_type": "numeric"})
                assert page.status_code in (200, 400, 403)
                assert "question " not in text(page) and "answer " not in text(page), (url, trace)


@pytest.mark.django_db
def test_a_member_who_does_not_manage_the_team_makes_the_portal_call_no_langfuse_through_the_preview(
        acme: Tenant, langfuse_standin: Any) -> None:
    """Each POST with `preview` and a new `trace_id` is one call to the tenant's Langfuse (the cache is per
    trace id): a plain member, or a member of another team, could make the portal fetch any trace by id
    (and spend the tenant's Langfuse rate limit) although the answer is thrown away."""
    connect_langfuse(acme, langfuse_standin)
    langfuse_standin.seed_traces(f"lf-{acme.org.slug}", 1)
    evaluator = Evaluator.objects.create(project=acme.project, name="acme-judge")
    for client in (login(acme, "member"), outsider_of_the_team(acme)):
        for url in (project_url(acme, "evaluators/"), project_url(acme, f"evaluators/{evaluator.pk}/")):
            before = len(langfuse_standin.requests)
            for i in range(5):
                client.post(url, {"preview": "1", "prompt_template": "{{input}}", "trace_id": f"guess-{i}"})
            assert len(langfuse_standin.requests) == before, url


@pytest.mark.django_db
def test_a_viewer_cannot_flood_the_evals_queue_by_reloading_the_dashboard_with_new_ranges(
        acme: Tenant, langfuse_standin: Any) -> None:
    """The dashboard queues a Langfuse refresh on GET when the window's cache is missing, at most once a
    minute per project *and window*: a viewer who asks for many custom windows queues a task per window
    (each 4 calls to the tenant's Langfuse, each answer kept 7 days in Redis)."""
    connect_langfuse(acme, langfuse_standin)
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.flushdb()
    viewer = login(acme, "viewer")
    today = dt.datetime.now(dt.UTC).date()
    for i in range(30):
        start = today - dt.timedelta(days=100 + i)
        page = viewer.get(project_url(acme), {"range": "custom", "start": start.isoformat(), "end": today.isoformat()})
        assert page.status_code == 200
    member = login(acme, "member")
    for i in range(30):
        start = today - dt.timedelta(days=200 + i)
        member.post(project_url(acme), {"range": "custom", "start": start.isoformat(), "end": today.isoformat()})
    queued = broker.llen("evals")
    assert queued <= 10, f"{queued} Langfuse refreshes queued for one project within a minute"


@pytest.mark.django_db
def test_the_organization_switcher_answers_404_to_a_nul_byte_not_a_500(acme: Tenant) -> None:
    owner = login(acme, "owner")
    assert owner.get("/switch/", {"org": "\x00", "section": "keys"}).status_code == 404


# Attacks that held (regression tests) -------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_an_organization_name_with_a_line_break_does_not_break_invitations() -> None:
    """The invitation's subject line carries the organization's name, and an admin's settings form accepts a
    line break in it: no header injection (no Bcc), no BadHeaderError after the commit (a 500)."""
    from tests.factories import make_tenant

    acme = make_tenant("acme")
    admin = login(acme, "admin")
    saved = admin.post(org_url(acme, "settings/"), {"name": "Acme\nBcc: attacker@evil.test", "budget_period": "none"})
    assert saved.status_code in (302, 400)
    mail.outbox.clear()
    answer = admin.post(org_url(acme, "members/"), {"email": "new@acme.test", "role": "member", "team_role": "member"})
    assert answer.status_code in (302, 400)
    if answer.status_code == 302:
        assert len(mail.outbox) == 1 and "\n" not in mail.outbox[0].subject
        assert "attacker@evil.test" not in mail.outbox[0].bcc


@pytest.mark.django_db
def test_another_tenants_ids_in_post_bodies_are_refused(acme: Tenant, globex: Tenant) -> None:
    """globex's team, project, credential, route and key ids in acme's forms: nothing of globex is used."""
    owner = login(acme, "owner")
    invite = owner.post(org_url(acme, "members/"), {"email": "x@acme.test", "role": "member",
                                                    "team": str(globex.team.pk), "team_role": "admin"})
    assert invite.status_code == 400 and not TeamMembership.objects.filter(team=globex.team,
                                                                             user__email="x@acme.test").exists()
    key = owner.post(org_url(acme, "keys/"), {"name": "stolen", "project": str(globex.project.pk)})
    assert key.status_code == 400 and not VirtualKey.objects.filter(name="stolen").exists()
    project = owner.post(org_url(acme, "projects/"), {"name": "in-globex", "team": str(globex.team.pk),
                                                      "budget_period": "none"})
    assert project.status_code == 400 and not Project.objects.filter(name="in-globex").exists()
    route = owner.post(org_url(acme, "routes/new/"), {
        "name": "borrowed", "deployment_rows": "1", "dep-0-credential": str(globex.credential.pk),
        "dep-0-model": "gpt-4o-mini", "dep-0-weight": "1", "allowed_teams": str(globex.team.pk)})
    assert route.status_code == 400 and not ModelRoute.objects.filter(name="borrowed").exists()
    test = owner.post(org_url(acme, f"routes/{acme.route.pk}/test/"), {"project": str(globex.project.pk)})
    assert "Choose a project whose team may use this route." in text(test)
    assert not VirtualKey.objects.filter(project=globex.project, name__startswith="route test").exists()
    for url in (f"keys/{globex.key.pk}/", f"keys/{globex.key.pk}/revoke/", f"routes/{globex.route.pk}/test/",
                f"credentials/{globex.credential.pk}/", f"teams/{globex.team.pk}/",
                f"projects/{globex.project.pk}/settings/"):
        assert owner.post(org_url(acme, url), {"name": "x"}).status_code in (404, 405), url
    assert VirtualKey.objects.get(pk=globex.key.pk).status == "active"


@pytest.mark.django_db
def test_no_role_escalation_through_the_forms(acme: Tenant) -> None:
    admin, member = login(acme, "admin"), login(acme, "member")
    # an admin invites as owner, or makes someone owner
    assert admin.post(org_url(acme, "members/"), {"email": "boss@acme.test", "role": "owner"}).status_code in (400, 403)
    assert not Membership.objects.filter(user__email="boss@acme.test").exists()
    viewer = Membership.objects.get(organization=acme.org, user=acme.users["viewer"])
    assert admin.post(org_url(acme, f"members/{viewer.pk}/"), {"role": "owner"}).status_code in (302, 403)
    # a member makes itself admin
    own = Membership.objects.get(organization=acme.org, user=acme.users["member"])
    assert member.post(org_url(acme, f"members/{own.pk}/"), {"role": "admin"}).status_code == 403
    # a team member makes itself team admin
    tm = TeamMembership.objects.get(team=acme.team, user=acme.users["member"])
    assert member.post(org_url(acme, f"teams/{acme.team.pk}/members/{tm.pk}/"), {"role": "admin"}).status_code == 403
    # a member's token above its role
    member.post(org_url(acme, "tokens/"), {"name": "up", "role": "owner", "scope": "full"})
    assert not ApiToken.objects.filter(name="up").exists()
    # a member raises its own key's budget and widens its routes
    key = acme.key
    VirtualKey.objects.filter(pk=key.pk).update(max_budget=5)
    member.post(org_url(acme, f"keys/{key.pk}/edit/"), {"name": key.name, "max_budget": "500",
                                                        "budget_period": key.budget_period})
    assert VirtualKey.objects.get(pk=key.pk).max_budget == 5
    assert Membership.objects.get(pk=viewer.pk).role == OrgRole.VIEWER
    assert Membership.objects.get(pk=own.pk).role == OrgRole.MEMBER
    assert TeamMembership.objects.get(pk=tm.pk).role == TeamRole.MEMBER


@pytest.mark.django_db
def test_no_open_redirect_through_next(acme: Tenant) -> None:
    user = acme.users["member"]
    user.set_password(PASSWORD)
    user.save()
    for target in ("https://evil.test/", "//evil.test/", "/\\evil.test", "javascript:alert(1)"):
        answer = Client().post("/login/", {"username": user.username, "password": PASSWORD, "next": target})
        assert answer.status_code == 302 and "evil" not in answer["Location"] and "javascript" not in answer["Location"]


@pytest.mark.django_db
def test_invitation_links_are_single_use_and_never_in_a_page_or_the_accept_url(acme: Tenant) -> None:
    from portal import accounts

    admin = login(acme, "admin")
    invitation = accounts.invitation_create(actor=system_actor(acme.org, "tests"), email="fresh@acme.test",
                                            role="member")
    plaintext = accounts._new_link(invitation)  # the link's token, as the e-mail would carry it
    invitation.save()
    members = text(admin.get(org_url(acme, "members/")))
    assert plaintext not in members and invitation.token_hash not in members
    browser = Client()
    first = browser.get(f"/invitations/{plaintext}/")
    assert first.status_code == 302 and plaintext not in first["Location"]
    done = browser.post("/invitations/accept/", {"password1": "a-Long-pass-9876", "password2": "a-Long-pass-9876"})
    assert done.status_code == 302
    again = Client()
    again.get(f"/invitations/{plaintext}/")
    assert again.post("/invitations/accept/", {"password1": "other-Long-9876", "password2": "other-Long-9876"}
                      ).status_code == 404
    assert Invitation.objects.get(pk=invitation.pk).accepted_at is not None


@pytest.mark.django_db
def test_secrets_are_never_rendered_back(acme: Tenant, langfuse_standin: Any) -> None:
    connect_langfuse(acme, langfuse_standin)
    owner = login(acme, "owner")
    pages = "".join(text(owner.get(org_url(acme, p))) for p in (
        "credentials/", f"credentials/{acme.credential.pk}/", f"projects/{acme.project.pk}/settings/", "settings/",
        "keys/", f"keys/{acme.key.pk}/", "tokens/", "audit/"))
    for secret in ("sk-provider-secret-value", f"sk-lf-{acme.org.slug}", f"sk-lf-org-{acme.org.slug}",
                   acme.key_plaintext, *acme.tokens.values()):
        assert secret not in pages


@pytest.mark.django_db
def test_every_write_needs_a_csrf_token(acme: Tenant) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(acme.users["owner"])
    for url in ("members/", "teams/", "projects/", "keys/", f"keys/{acme.key.pk}/revoke/", "settings/", "tokens/",
                f"routes/{acme.route.pk}/delete/", f"credentials/{acme.credential.pk}/delete/"):
        assert client.post(org_url(acme, url), {"name": "x"}).status_code == 403, url
    assert VirtualKey.objects.get(pk=acme.key.pk).status == "active"
    assert Team.objects.filter(pk=acme.team.pk).exists()
