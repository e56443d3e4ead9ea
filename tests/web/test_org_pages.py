"""Organization administration pages (settings, teams, members, projects, Langfuse, audit log): behaviour,
roles and tenancy through Django's test client. The browser journeys are in test_org_browser.py."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.core import mail

from evals.models import LangfuseConnection
from gateway.models import VirtualKey
from portal import services
from portal.access import actor_for_user, system_actor
from portal.models import AuditLogEntry, Invitation, Membership, Project, Team, TeamMembership
from tests.factories import Tenant
from tests.factories import web_client as login
from tests.langfuse_standin import LangfuseStandin
from tests.langfuse_standin.fixtures import PUBLIC_KEY, SECRET_KEY


def org_url(t: Tenant, path: str = "") -> str:
    return f"/orgs/{t.org.slug}/{path}"


def html(response: Any) -> str:
    return str(response.content.decode())


# Settings ---------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_admins_change_the_organizations_budget_and_bad_values_stay_next_to_their_fields(acme: Tenant) -> None:
    admin = login(acme, "admin")
    page = admin.get(org_url(acme, "settings/"))
    assert page.status_code == 200 and 'for="max_budget"' in html(page) and 'value="Acme Corporation"' in html(page)
    bad = admin.post(org_url(acme, "settings/"), {"name": "", "max_budget": "-1", "soft_budget": "abc",
                                                   "budget_period": "yearly",
                                                   "alert_webhook_url": "http://169.254.169.254/latest"})
    text = html(bad)
    assert bad.status_code == 400
    assert text.count('class="field-error"') >= 4 and 'aria-invalid="true"' in text
    assert "Ensure this value is greater than or equal to 0" in text and "is not a valid choice" in text
    over = admin.post(org_url(acme, "settings/"), {"name": "Acme", "max_budget": "10", "soft_budget": "20",
                                                    "budget_period": "monthly"})
    assert over.status_code == 400 and "The soft budget cannot be above the max budget." in html(over)
    metadata = admin.post(org_url(acme, "settings/"), {"name": "Acme", "budget_period": "none",
                                                        "alert_webhook_url": "http://169.254.169.254/latest"})
    assert metadata.status_code == 400 and "alert_webhook_url-note" in html(metadata)
    typo = admin.post(org_url(acme, "settings/"), {"name": "Acme", "budget_period": "none",
                                                    "alert_emails": "ops@acme.test, finops@acme"})
    assert typo.status_code == 400 and "&#x27;finops@acme&#x27; is not an e-mail address" in html(typo)
    acme.org.refresh_from_db()
    assert acme.org.max_budget is None and acme.org.name == "Acme Corporation"

    saved = admin.post(org_url(acme, "settings/"), {"name": "Acme Inc", "max_budget": "250.5", "soft_budget": "",
                                                     "budget_period": "monthly", "alert_emails": "ops@acme.test"},
                       follow=True)
    assert saved.status_code == 200 and "Settings saved." in html(saved)
    acme.org.refresh_from_db()
    assert (acme.org.name, str(acme.org.max_budget), acme.org.budget_period) == ("Acme Inc", "250.5000", "monthly")
    assert AuditLogEntry.objects.filter(organization=acme.org, action="organization.update").exists()
    cleared = admin.post(org_url(acme, "settings/"), {"name": "Acme Inc", "max_budget": "", "budget_period": "none"})
    assert cleared.status_code == 302
    acme.org.refresh_from_db()
    assert acme.org.max_budget is None


@pytest.mark.django_db
def test_the_settings_are_for_admins_and_a_forged_post_changes_nothing(acme: Tenant) -> None:
    for role in ("member", "viewer"):
        client = login(acme, role)
        assert client.get(org_url(acme, "settings/")).status_code == 403
        assert client.post(org_url(acme, "settings/"), {"name": "taken over", "budget_period": "none"}).status_code == 403
    acme.org.refresh_from_db()
    assert acme.org.name == "Acme Corporation"


# Teams ------------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_admins_create_edit_and_delete_teams(acme: Tenant) -> None:
    admin = login(acme, "admin")
    created = admin.post(org_url(acme, "teams/"), {"name": "research", "description": "the lab",
                                                    "max_budget": "40", "budget_period": "weekly"})
    team = Team.objects.get(organization=acme.org, name="research")
    assert created.status_code == 302 and created["Location"] == org_url(acme, f"teams/{team.pk}/")
    assert str(team.max_budget) == "40.0000" and team.budget_period == "weekly"
    again = admin.post(org_url(acme, "teams/"), {"name": "research", "budget_period": "none"})
    assert again.status_code == 400 and "A team with this name already exists." in html(again)

    edited = admin.post(org_url(acme, f"teams/{team.pk}/"), {"name": "research", "description": "",
                                                             "max_budget": "", "soft_budget": "5",
                                                             "budget_period": "daily"})
    team.refresh_from_db()
    assert edited.status_code == 302 and team.max_budget is None and str(team.soft_budget) == "5.0000"

    busy = admin.get(org_url(acme, f"teams/{acme.team.pk}/delete/"))
    assert busy.status_code == 200 and "acme-assistant" in html(busy) and "Delete them first" in html(busy)
    refused = admin.post(org_url(acme, f"teams/{acme.team.pk}/delete/"), follow=True)
    assert "still has projects" in html(refused) and Team.objects.filter(pk=acme.team.pk).exists()
    confirm = admin.get(org_url(acme, f"teams/{team.pk}/delete/"))
    assert 'id="consequences"' in html(confirm) and "0 members" in html(confirm)
    assert admin.post(org_url(acme, f"teams/{team.pk}/delete/")).status_code == 302
    assert not Team.objects.filter(pk=team.pk).exists()


@pytest.mark.django_db
def test_team_admins_manage_their_teams_members_and_plain_members_cannot(acme: Tenant) -> None:
    team_url = org_url(acme, f"teams/{acme.team.pk}/")
    lead = login(acme, "team_admin")
    page = html(lead.get(team_url))
    assert 'id="team-member-form"' in page and 'id="team-form"' not in page  # members yes, team settings no
    assert 'value="viewer@acme.test"' in page and 'value="member@acme.test"' not in page  # only non-members offered
    assert lead.post(team_url, {"name": "renamed", "budget_period": "none"}).status_code == 403

    added = lead.post(org_url(acme, f"teams/{acme.team.pk}/members/"), {"email": "viewer@acme.test", "role": "member"})
    tm = TeamMembership.objects.get(team=acme.team, user=acme.users["viewer"])
    assert added.status_code == 302 and tm.role == "member"
    twice = lead.post(org_url(acme, f"teams/{acme.team.pk}/members/"), {"email": "viewer@acme.test", "role": "x"})
    assert twice.status_code == 400 and "is not a valid choice" in html(twice)
    outsider = lead.post(org_url(acme, f"teams/{acme.team.pk}/members/"),
                         {"email": "owner@globex.test", "role": "member"})
    assert outsider.status_code == 400 and "No member of this organization has this email" in html(outsider)

    changed = lead.post(org_url(acme, f"teams/{acme.team.pk}/members/{tm.pk}/"), {"role": "admin"})
    tm.refresh_from_db()
    assert changed.status_code == 302 and tm.role == "admin"

    member_tm = TeamMembership.objects.get(team=acme.team, user=acme.users["member"])
    confirm = html(lead.get(org_url(acme, f"teams/{acme.team.pk}/members/{member_tm.pk}/remove/")))
    assert "revokes <strong>1</strong> key they own in this team" in confirm
    assert lead.post(org_url(acme, f"teams/{acme.team.pk}/members/{member_tm.pk}/remove/")).status_code == 302
    acme.key.refresh_from_db()
    assert not TeamMembership.objects.filter(pk=member_tm.pk).exists() and acme.key.status == "revoked"

    member = login(acme, "viewer")  # now a team admin through the role change above, but an org viewer
    assert 'id="team-member-form"' not in html(member.get(team_url))
    assert member.post(org_url(acme, f"teams/{acme.team.pk}/members/"),
                       {"email": "admin@acme.test", "role": "member"}).status_code == 403
    plain = login(acme, "member")  # no longer in the team, an org member
    assert plain.post(org_url(acme, f"teams/{acme.team.pk}/members/{tm.pk}/"), {"role": "member"}).status_code == 403
    assert plain.get(org_url(acme, f"teams/{acme.team.pk}/members/{tm.pk}/remove/")).status_code == 403
    assert plain.post(org_url(acme, f"teams/{acme.team.pk}/members/{tm.pk}/remove/")).status_code == 403
    assert TeamMembership.objects.filter(pk=tm.pk, role="admin").exists()


# Members ----------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_admins_invite_members_into_a_team_and_the_email_has_the_link(acme: Tenant,
                                                                      django_capture_on_commit_callbacks: Any) -> None:
    admin = login(acme, "admin")
    page = html(admin.get(org_url(acme, "members/")))
    assert 'id="invite-form"' in page and 'for="invite-email"' in page
    assert '<option value="owner"' not in page  # only owners grant the owner role
    with django_capture_on_commit_callbacks(execute=True):
        invited = admin.post(org_url(acme, "members/"), {"email": "  New.Person@Acme.test ", "role": "member",
                                                          "team": str(acme.team.pk), "team_role": "admin"},
                             follow=True)
    assert invited.status_code == 200 and "Invited new.person@acme.test" in html(invited)
    membership = Membership.objects.get(organization=acme.org, user__email="new.person@acme.test")
    assert membership.role == "member"
    assert TeamMembership.objects.get(team=acme.team, user=membership.user).role == "admin"
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["new.person@acme.test"]
    assert "invitation pending" in html(invited)
    assert "acme-platform</a> <span class=\"muted\">(admin)</span>" in html(invited)  # the team admin's teams

    again = admin.post(org_url(acme, "members/"), {"email": "new.person@acme.test", "role": "member"})
    assert again.status_code == 400 and "already a member" in html(again) and 'aria-invalid="true"' in html(again)
    for bad in ({"email": "not an email", "role": "member"}, {"email": "x@acme.test", "role": "superuser"},
                {"email": "y@acme.test", "role": "member", "team": "99999999999"},
                {"email": "z@acme.test", "role": "member", "team": "1\x00"},
                {"email": "w@acme.test", "role": "owner"}):
        refused = admin.post(org_url(acme, "members/"), bad)
        assert refused.status_code in (400, 403), bad
    assert not Membership.objects.filter(organization=acme.org, user__email__in=["x@acme.test", "y@acme.test",
                                                                               "z@acme.test", "w@acme.test"]).exists()

    invitation = Invitation.objects.get(organization=acme.org, email="new.person@acme.test")
    with django_capture_on_commit_callbacks(execute=True):
        admin.post(org_url(acme, f"invitations/{invitation.pk}/resend/"))
    assert len(mail.outbox) == 2
    admin.post(org_url(acme, f"invitations/{invitation.pk}/revoke/"))
    invitation.refresh_from_db()
    assert invitation.revoked_at is not None and not Membership.objects.filter(pk=membership.pk).exists()


@pytest.mark.django_db
def test_roles_change_and_removal_states_its_consequences_first(acme: Tenant) -> None:
    admin = login(acme, "admin")
    member = Membership.objects.get(organization=acme.org, user=acme.users["member"])
    assert admin.post(org_url(acme, f"members/{member.pk}/"), {"role": "viewer"}).status_code == 302
    member.refresh_from_db()
    assert member.role == "viewer"
    bad = admin.post(org_url(acme, f"members/{member.pk}/"), {"role": "root"}, follow=True)
    assert "member@acme.test: Choose one of the organization" in html(bad)
    owner = Membership.objects.get(organization=acme.org, role="owner")
    assert admin.post(org_url(acme, f"members/{owner.pk}/"), {"role": "viewer"}).status_code == 403
    mine = Membership.objects.get(organization=acme.org, user=acme.users["admin"])
    assert admin.post(org_url(acme, f"members/{mine.pk}/"), {"role": "owner"}).status_code == 403
    owner.refresh_from_db()
    mine.refresh_from_db()
    assert (owner.role, mine.role) == ("owner", "admin")

    confirm = admin.get(org_url(acme, f"members/{member.pk}/remove/"))
    text = html(confirm)
    assert confirm.status_code == 200 and 'id="consequences"' in text
    assert "revokes <strong>1</strong> key they own here" in text and "acme-platform (team member)" in text
    assert "revokes <strong>1</strong> API token" in text
    assert Membership.objects.filter(pk=member.pk).exists()  # the GET changed nothing
    assert admin.post(org_url(acme, f"members/{member.pk}/remove/")).status_code == 302
    acme.key.refresh_from_db()
    assert not Membership.objects.filter(pk=member.pk).exists() and acme.key.status == "revoked"
    assert not TeamMembership.objects.filter(user=acme.users["member"]).exists()


@pytest.mark.django_db
def test_the_last_owner_stays_and_only_owners_touch_owners(acme: Tenant) -> None:
    owner_client = login(acme, "owner")
    owner = Membership.objects.get(organization=acme.org, role="owner")
    page = html(owner_client.get(org_url(acme, "members/")))
    assert '<option value="owner"' in page and f'members/{owner.pk}/remove/' not in page  # not one's own row
    assert owner_client.post(org_url(acme, f"members/{owner.pk}/remove/")).status_code == 403
    admin_page = html(login(acme, "admin").get(org_url(acme, "members/")))
    assert f'members/{owner.pk}/remove/' not in admin_page and f'id="role-{owner.pk}"' not in admin_page


@pytest.mark.django_db
def test_viewers_see_the_members_and_no_write_action(acme: Tenant) -> None:
    viewer = login(acme, "viewer")
    for path in ("members/", "teams/", f"teams/{acme.team.pk}/", "projects/", f"projects/{acme.project.pk}/settings/"):
        page = viewer.get(org_url(acme, path))
        text = html(page)
        assert page.status_code == 200, path
        assert text.count('<form method="post"') == 1 and 'action="/logout/"' in text, path  # only "Log out"
        assert "<button" not in text.split("</header>")[1], path
        assert "member@acme.test" in text or "acme-" in text, path
    member = Membership.objects.get(organization=acme.org, user=acme.users["member"])
    forged = [("members/", {"email": "v@acme.test", "role": "admin"}), (f"members/{member.pk}/", {"role": "admin"}),
              (f"members/{member.pk}/remove/", {}), ("teams/", {"name": "v", "budget_period": "none"}),
              (f"teams/{acme.team.pk}/", {"name": "v"}), (f"teams/{acme.team.pk}/delete/", {}),
              (f"teams/{acme.team.pk}/members/", {"email": "admin@acme.test", "role": "admin"}),
              ("projects/", {"name": "v", "team": acme.team.pk, "budget_period": "none"}),
              (f"projects/{acme.project.pk}/settings/", {"name": "v"}), (f"projects/{acme.project.pk}/delete/", {}),
              (f"projects/{acme.project.pk}/langfuse/", {"host": "http://x.test", "public_key": "p"}),
              (f"projects/{acme.project.pk}/langfuse/disconnect/", {})]
    for path, body in forged:
        assert viewer.post(org_url(acme, path), body).status_code == 403, path
    member.refresh_from_db()
    assert member.role == "member" and not Team.objects.filter(name="v").exists()
    assert Project.objects.get(pk=acme.project.pk).name == "acme-assistant"


# Projects ---------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_team_admins_create_and_edit_their_teams_projects_members_do_not(acme: Tenant) -> None:
    other = services.team_create(actor=system_actor(acme.org, "tests"), data={"name": "acme-other"})
    lead = login(acme, "team_admin")
    page = html(lead.get(org_url(acme, "projects/")))
    assert 'id="project-form"' in page and f'value="{acme.team.pk}"' in page and f'value="{other.pk}"' not in page
    made = lead.post(org_url(acme, "projects/"), {"name": "acme-bot", "team": str(acme.team.pk),
                                                  "description": "a bot", "max_budget": "3", "budget_period": "daily"})
    project = Project.objects.get(organization=acme.org, name="acme-bot")
    assert made.status_code == 302 and made["Location"] == org_url(acme, f"projects/{project.pk}/settings/")
    foreign = lead.post(org_url(acme, "projects/"), {"name": "acme-sneaky", "team": str(other.pk),
                                                     "budget_period": "none"})
    assert foreign.status_code in (400, 403) and not Project.objects.filter(name="acme-sneaky").exists()
    dup = lead.post(org_url(acme, "projects/"), {"name": "acme-bot", "team": str(acme.team.pk), "budget_period": "none"})
    assert dup.status_code == 400 and "A project with this name already exists." in html(dup)

    settings_url = org_url(acme, f"projects/{project.pk}/settings/")
    assert lead.post(settings_url, {"name": "acme-bot-2", "description": "", "max_budget": "",
                                    "budget_period": "none"}).status_code == 302
    project.refresh_from_db()
    assert project.name == "acme-bot-2" and project.max_budget is None
    moved = lead.post(settings_url, {"name": "acme-bot-2", "team": str(other.pk)})
    project.refresh_from_db()
    assert moved.status_code == 302 and project.team_id == acme.team.pk  # the team is not a field of the edit form

    member = login(acme, "member")
    assert 'id="project-form"' not in html(member.get(org_url(acme, "projects/")))
    assert 'id="project-form"' not in html(member.get(settings_url))
    assert member.post(org_url(acme, "projects/"), {"name": "acme-m", "team": str(acme.team.pk),
                                                    "budget_period": "none"}).status_code == 403
    assert member.post(settings_url, {"name": "acme-m2"}).status_code == 403
    assert member.post(org_url(acme, f"projects/{project.pk}/delete/")).status_code == 403
    assert lead.post(org_url(acme, f"projects/{project.pk}/delete/")).status_code == 302
    assert not Project.objects.filter(pk=project.pk).exists()


@pytest.mark.django_db
def test_a_project_with_live_keys_is_not_deleted(acme: Tenant) -> None:
    admin = login(acme, "admin")
    confirm = html(admin.get(org_url(acme, f"projects/{acme.project.pk}/delete/")))
    assert "<strong>1</strong> key that is not revoked" in confirm
    refused = admin.post(org_url(acme, f"projects/{acme.project.pk}/delete/"), follow=True)
    assert "revoke them first" in html(refused) and Project.objects.filter(pk=acme.project.pk).exists()


@pytest.mark.django_db
def test_deleting_a_project_states_and_takes_its_evaluations(acme: Tenant, langfuse_standin: LangfuseStandin) -> None:
    from evals.models import Benchmark, Dataset, EvalRun, Evaluator
    from gateway.services import keys
    from tests.factories import make_evals

    make_evals(acme, langfuse_standin)
    keys.key_revoke(actor=actor_for_user(acme.org, acme.users["owner"]), key=acme.key)
    admin = login(acme, "admin")
    confirm = html(admin.get(org_url(acme, f"projects/{acme.project.pk}/delete/")))
    for stated in ("1 evaluator is deleted", "1 schedule is deleted", "1 dataset is deleted", "1 benchmark is deleted",
                   "evaluation runs are deleted", "1 revoked key is deleted", "Langfuse connection to"):
        assert stated in confirm, stated
    deleted = admin.post(org_url(acme, f"projects/{acme.project.pk}/delete/"))
    assert deleted.status_code == 302 and not Project.objects.filter(pk=acme.project.pk).exists()
    assert not any(m.objects.filter(project_id=acme.project.pk).exists() for m in (Evaluator, EvalRun, Dataset, Benchmark))


@pytest.mark.django_db
def test_connecting_langfuse_checks_the_keys_and_the_secret_is_never_shown(acme: Tenant, settings: Any,
                                                                          langfuse_standin: LangfuseStandin) -> None:
    lead = login(acme, "team_admin")
    url = org_url(acme, f"projects/{acme.project.pk}/langfuse/")
    wrong = lead.post(url, {"host": langfuse_standin.url, "public_key": PUBLIC_KEY, "secret_key": "sk-wrong"})
    assert wrong.status_code == 400 and "sk-wrong" not in html(wrong)
    assert 'aria-invalid="true" aria-describedby="langfuse-secret_key-note"' in html(wrong)
    assert "Langfuse rejected the keys (401)" in html(wrong)
    missing = lead.post(url, {"host": langfuse_standin.url, "public_key": PUBLIC_KEY})
    assert missing.status_code == 400 and "Required for a new connection." in html(missing)
    assert not LangfuseConnection.objects.filter(project=acme.project).exists()

    ok = lead.post(url, {"host": langfuse_standin.url, "public_key": PUBLIC_KEY, "secret_key": SECRET_KEY}, follow=True)
    text = html(ok)
    assert ok.status_code == 200 and "is connected to Langfuse" in text and "Project 1" in text and "4.0.0" in text
    assert SECRET_KEY not in text and 'type="password"' in text
    conn = LangfuseConnection.objects.get(project=acme.project)
    assert conn.secret_key() == SECRET_KEY
    assert "Langfuse stand-in" not in text
    settings.LANGFUSE_STANDIN_URL = langfuse_standin.url  # what `make demo` sets when it starts the stand-in
    demo = html(lead.get(org_url(acme, f"projects/{acme.project.pk}/settings/")))
    assert '<span class="badge standin">Langfuse stand-in</span>' in demo
    assert f'href="/orgs/acme/projects/{acme.project.pk}/settings/" class="on" aria-current="page">Settings</a>' in demo
    kept = lead.post(url, {"host": langfuse_standin.url, "public_key": PUBLIC_KEY, "secret_key": ""})
    assert kept.status_code == 302 and LangfuseConnection.objects.get(project=acme.project).secret_key() == SECRET_KEY
    moved = lead.post(url, {"host": "http://127.0.0.2:9", "public_key": PUBLIC_KEY, "secret_key": ""})
    assert moved.status_code == 400 and "Enter the secret key again when you change the host." in html(moved)
    entry = AuditLogEntry.objects.filter(organization=acme.org, action="langfuse.create").get()
    assert entry.after is not None and entry.after["secret_key"] == "********"

    assert login(acme, "member").post(org_url(acme, f"projects/{acme.project.pk}/langfuse/disconnect/")).status_code == 403
    assert lead.post(org_url(acme, f"projects/{acme.project.pk}/langfuse/disconnect/")).status_code == 302
    assert not LangfuseConnection.objects.filter(project=acme.project).exists()


@pytest.mark.django_db
def test_an_organization_key_lets_admins_create_the_projects_langfuse_project(acme: Tenant,
                                                                              langfuse_standin: LangfuseStandin) -> None:
    admin = login(acme, "admin")
    settings_page = html(admin.get(org_url(acme, "settings/")))
    assert 'id="orgkey-form"' in settings_page and "provision-form" not in html(
        admin.get(org_url(acme, f"projects/{acme.project.pk}/settings/")))
    langfuse_standin.set_org_key("pk-lf-org", "sk-lf-org", entitled=True)
    wrong = admin.post(org_url(acme, "settings/langfuse/"), {"host": langfuse_standin.url, "public_key": "pk-lf-org",
                                                              "secret_key": "sk-nope"})
    assert wrong.status_code == 400 and "sk-nope" not in html(wrong)
    saved = admin.post(org_url(acme, "settings/langfuse/"), {"host": langfuse_standin.url, "public_key": "pk-lf-org",
                                                              "secret_key": "sk-lf-org"}, follow=True)
    assert "Langfuse organization key saved" in html(saved) and "sk-lf-org" not in html(saved)
    assert login(acme, "member").post(org_url(acme, "settings/langfuse/"), {"delete": "1"}).status_code == 403

    page = html(admin.get(org_url(acme, f"projects/{acme.project.pk}/settings/")))
    assert 'id="provision-form"' in page
    made = admin.post(org_url(acme, f"projects/{acme.project.pk}/langfuse/provision/"), follow=True)
    assert "Created the Langfuse project" in html(made)
    conn = LangfuseConnection.objects.get(project=acme.project)
    assert conn.langfuse_project_name == "acme-acme-assistant" and conn.secret_key()
    assert 'id="provision-form"' not in html(made)  # connected now
    assert login(acme, "member").post(org_url(acme, f"projects/{acme.project.pk}/langfuse/provision/")).status_code == 403

    admin.post(org_url(acme, "settings/langfuse/"), {"delete": "1"})
    assert 'id="langfuse-org-key"' in html(admin.get(org_url(acme, "settings/")))
    from evals.models import LangfuseOrgKey
    assert not LangfuseOrgKey.objects.filter(organization=acme.org).exists()


# The audit log ----------------------------------------------------------------------------------

def _entries(t: Tenant, n: int) -> None:
    from portal import audit

    actor = actor_for_user(t.org, t.users["admin"])
    for i in range(n):
        audit.record(actor, "key.update" if i % 2 else "team.update", t.team, after={"i": i})


@pytest.mark.django_db
def test_the_audit_log_filters_and_pages_by_keyset(acme: Tenant, django_assert_max_num_queries: Any) -> None:
    _entries(acme, 130)
    admin = login(acme, "admin")
    seen: list[str] = []
    url = org_url(acme, "audit/?target_type=team")
    while url:
        with django_assert_max_num_queries(12):
            page = admin.get(url)
        assert page.status_code == 200
        rows = page.context["entries"]
        seen += [str(e.pk) for e in rows]
        older = page.context["older"]
        url = org_url(acme, f"audit/?{older}") if older else ""
    team_entries = AuditLogEntry.objects.filter(organization=acme.org, target_type="team")
    assert len(seen) == len(set(seen)) == team_entries.count() > 130
    assert seen == [str(pk) for pk in team_entries.order_by("-created_at", "-id").values_list("pk", flat=True)]

    prefix = admin.get(org_url(acme, "audit/?action=key."))
    assert {e.action for e in prefix.context["entries"]} == {"key.update"}
    exact = admin.get(org_url(acme, "audit/?action=team.update"))
    assert {e.action for e in exact.context["entries"]} == {"team.update"}
    by_actor = admin.get(org_url(acme, f"audit/?actor={acme.users['admin'].pk}"))
    assert len(by_actor.context["entries"]) == 50
    assert {e.actor_id for e in by_actor.context["entries"]} == {acme.users["admin"].pk}
    today = dt.date.today()
    in_range = admin.get(org_url(acme, f"audit/?since={today - dt.timedelta(days=1)}&until={today + dt.timedelta(days=1)}"))
    assert len(in_range.context["entries"]) == 50
    future = admin.get(org_url(acme, f"audit/?since={today + dt.timedelta(days=2)}"))
    assert future.context["entries"] == [] and "No entry matches these filters." in html(future)


@pytest.mark.django_db
def test_hostile_audit_filters_answer_400_with_the_field_named(acme: Tenant) -> None:
    admin = login(acme, "admin")
    globex_user = Membership.objects.exclude(organization=acme.org).values_list("user_id", flat=True).first()
    for query in ("since=2026-13-45", "since=2026-05-02&until=2026-05-01", "actor=abc", "actor=99999999999999999999",
                  "target_type=auth_user; DROP", "after=not-a-cursor", "after=2026-01-01T00:00:00~12",
                  "after=2026-01-01T00:00:00%2B00:00~99999999999999999999", "action=" + "a" * 51,
                  f"actor={globex_user}" if globex_user else "actor=-1"):
        page = admin.get(org_url(acme, f"audit/?{query}"))
        assert page.status_code == 400, query
        assert "Traceback" not in html(page)


# Tenancy ----------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_another_organizations_pages_and_objects_answer_404(acme: Tenant, globex: Tenant) -> None:
    outsider = login(globex, "owner")
    member = Membership.objects.get(organization=acme.org, user=acme.users["member"])
    tm = TeamMembership.objects.get(team=acme.team, user=acme.users["member"])
    acme_pages = ["settings/", "members/", f"members/{member.pk}/remove/", "teams/", f"teams/{acme.team.pk}/",
                  f"teams/{acme.team.pk}/delete/", f"teams/{acme.team.pk}/members/{tm.pk}/remove/", "projects/",
                  f"projects/{acme.project.pk}/settings/", f"projects/{acme.project.pk}/delete/", "audit/"]
    for path in acme_pages:
        assert outsider.get(org_url(acme, path)).status_code == 404, path
        assert outsider.post(org_url(acme, path), {"name": "x"}).status_code in (404, 405), path
    # acme's objects under globex's own organization, by a globex owner: not there either
    for path in (f"members/{member.pk}/", f"members/{member.pk}/remove/", f"teams/{acme.team.pk}/",
                 f"teams/{acme.team.pk}/delete/", f"teams/{acme.team.pk}/members/",
                 f"teams/{globex.team.pk}/members/{tm.pk}/", f"teams/{globex.team.pk}/members/{tm.pk}/remove/",
                 f"projects/{acme.project.pk}/settings/", f"projects/{acme.project.pk}/delete/",
                 f"projects/{acme.project.pk}/langfuse/", f"projects/{acme.project.pk}/langfuse/disconnect/"):
        assert outsider.post(org_url(globex, path), {"role": "viewer", "email": "member@acme.test"}).status_code == 404, path
        assert outsider.get(org_url(globex, path)).status_code in (404, 405), path
    # within acme: a membership of one team under another team's URL is not found either
    other = services.team_create(actor=system_actor(acme.org, "tests"), data={"name": "acme-other"})
    admin = login(acme, "admin")
    for path in (f"teams/{other.pk}/members/{tm.pk}/", f"teams/{other.pk}/members/{tm.pk}/remove/"):
        assert admin.post(org_url(acme, path), {"role": "admin"}).status_code == 404, path
    member.refresh_from_db()
    tm.refresh_from_db()
    assert member.role == "member" and tm.role == "member" and Team.objects.filter(pk=acme.team.pk).exists()
    assert TeamMembership.objects.filter(pk=tm.pk).exists() and Project.objects.filter(pk=acme.project.pk).exists()
    # a globex team admin cannot add acme's people to globex's team, nor pick acme's team when inviting
    globex_admin = login(globex, "admin")
    add = globex_admin.post(org_url(globex, f"teams/{globex.team.pk}/members/"), {"email": "member@acme.test",
                                                                                  "role": "member"})
    assert add.status_code == 400
    invite = globex_admin.post(org_url(globex, "members/"), {"email": "new@globex.test", "role": "member",
                                                             "team": str(acme.team.pk)})
    assert invite.status_code == 400 and "Choose a team of this organization." in html(invite)
    assert not TeamMembership.objects.filter(team=acme.team, user__email="new@globex.test").exists()
    project = globex_admin.post(org_url(globex, "projects/"), {"name": "globex-x", "team": str(acme.team.pk),
                                                               "budget_period": "none"})
    assert project.status_code == 400 and not Project.objects.filter(name="globex-x").exists()


@pytest.mark.django_db
def test_no_org_page_shows_another_tenants_names(acme: Tenant, globex: Tenant) -> None:
    client = login(acme, "owner")
    _entries(globex, 3)
    for path in ("settings/", "members/", "teams/", f"teams/{acme.team.pk}/", "projects/",
                 f"projects/{acme.project.pk}/settings/", f"projects/{acme.project.pk}/delete/", "audit/",
                 f"teams/{acme.team.pk}/delete/"):
        text = html(client.get(org_url(acme, path))).lower()
        leaked = [m for m in globex.foreign_markers() if m.lower() in text]
        assert leaked == [], (path, leaked)
    assert VirtualKey.objects.filter(organization=globex.org).exists()  # globex had rows to leak
