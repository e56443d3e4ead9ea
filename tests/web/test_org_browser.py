"""Organization administration in a real browser: an owner creates a team and a project, connects the
project to Langfuse (the stand-in), invites someone, changes a role, removes a member, sets the budget
and filters the audit log; a viewer sees no write action; another organization's pages answer 404.
Every page is checked by axe-core and saved at both sizes (`check_page`)."""

from __future__ import annotations

from typing import Any

import pytest

from portal.models import Invitation, Membership, Project, Team, TeamMembership
from tests.factories import Tenant
from tests.langfuse_standin import LangfuseStandin
from tests.langfuse_standin.fixtures import PUBLIC_KEY, SECRET_KEY
from tests.web.conftest import check_page, sign_in

pytestmark = pytest.mark.browser


@pytest.mark.django_db(transaction=True)
def test_an_owner_runs_the_organization(live_server: Any, acme: Tenant, browser_page: Any,
                                        langfuse_standin: LangfuseStandin) -> None:
    page = browser_page()
    sign_in(page, live_server, acme.users["owner"])
    base = f"{live_server.url}/orgs/{acme.org.slug}"

    # a team, with a member as its admin
    page.get_by_role("link", name="Teams", exact=True).click()
    page.fill("#team-name", "acme-research")
    page.fill("#team-description", "Models and evaluations")
    page.fill("#team-max_budget", "120")
    page.select_option("#team-budget_period", "monthly")
    page.click("#team-form button[type=submit]")
    page.wait_for_url("**/teams/*/")
    team = Team.objects.get(organization=acme.org, name="acme-research")
    assert page.url == f"{base}/teams/{team.pk}/"
    page.select_option("#member-email", "viewer@acme.test")
    page.select_option("#member-role", "admin")
    page.click("#team-member-form button[type=submit]")
    page.wait_for_selector("#team-members tr[data-email='viewer@acme.test']")
    assert TeamMembership.objects.get(team=team, user=acme.users["viewer"]).role == "admin"
    check_page(page, "org-team")
    page.goto(f"{base}/teams/")
    assert "acme-research" in page.inner_text("#teams") and "$120.00 / monthly" in page.inner_text("#teams")
    check_page(page, "org-teams")

    # a project of that team, connected to its Langfuse project
    page.get_by_role("link", name="Projects", exact=True).click()
    page.fill("#project-name", "acme-research-bot")
    page.select_option("#project-team", str(team.pk))
    page.fill("#project-max_budget", "15")
    page.keyboard.press("Enter")  # the form submits from the keyboard
    page.wait_for_url("**/projects/*/settings/")
    project = Project.objects.get(organization=acme.org, name="acme-research-bot")
    assert page.url == f"{base}/projects/{project.pk}/settings/" and project.team == team
    page.fill("#langfuse-host", langfuse_standin.url)
    page.fill("#langfuse-public_key", PUBLIC_KEY)
    page.fill("#langfuse-secret_key", "sk-lf-wrong")
    page.click("#langfuse-form button[type=submit]")
    page.wait_for_selector("#langfuse-secret_key[aria-invalid='true']")
    assert "Langfuse rejected the keys" in page.inner_text("#langfuse-secret_key-note")
    assert "sk-lf-wrong" not in page.content()
    page.fill("#langfuse-secret_key", SECRET_KEY)
    page.click("#langfuse-form button[type=submit]")
    page.wait_for_selector("#langfuse-connection dt")
    facts = page.inner_text("#langfuse-connection")
    assert "Project 1" in facts and "4.0.0" in facts and SECRET_KEY not in page.content()
    check_page(page, "org-project-settings")
    page.goto(f"{base}/projects/")
    assert "connected" in page.inner_text("#projects tr[data-name='acme-research-bot']")
    check_page(page, "org-projects")

    # invite someone into the team, change a role, remove a member
    page.get_by_role("link", name="Members", exact=True).click()
    page.fill("#invite-email", "newcomer@acme.test")
    page.select_option("#invite-role", "member")
    page.select_option("#invite-team", str(team.pk))
    page.click("#invite-form button[type=submit]")
    page.wait_for_selector("#members tr[data-email='newcomer@acme.test']")
    assert "invitation pending" in page.inner_text("#members tr[data-email='newcomer@acme.test']")
    assert Invitation.objects.filter(organization=acme.org, email="newcomer@acme.test").exists()
    check_page(page, "org-members")
    admin = Membership.objects.get(organization=acme.org, user=acme.users["admin"])
    page.select_option(f"#role-{admin.pk}", "viewer")
    page.locator("#members tr[data-email='admin@acme.test'] button", has_text="Change role").click()
    page.wait_for_selector("text=admin@acme.test is now viewer.")
    admin.refresh_from_db()
    assert admin.role == "viewer"
    remove = page.locator("#members tr[data-email='member@acme.test'] a", has_text="Remove")
    remove.focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("#consequences")
    consequences = page.inner_text("#consequences")
    assert "revokes 1 key they own here" in consequences and "acme-platform" in consequences
    check_page(page, "org-member-remove")
    page.get_by_role("button", name="Remove member@acme.test").click()
    page.wait_for_selector("text=Removed member@acme.test from the organization.")
    assert not Membership.objects.filter(organization=acme.org, user=acme.users["member"]).exists()

    # the budget, then what all this left in the audit log
    page.get_by_role("link", name="Settings", exact=True).click()
    page.fill("#max_budget", "1000")
    page.fill("#soft_budget", "2000")
    page.click("#settings-form button[type=submit]")
    assert "The soft budget cannot be above the max budget." in page.inner_text("#soft_budget-note")
    page.fill("#soft_budget", "800")
    page.click("#settings-form button[type=submit]")
    page.wait_for_selector("text=Settings saved.")
    check_page(page, "org-settings")
    page.get_by_role("link", name="Audit log", exact=True).click()
    page.fill("#id_action", "membership.")
    page.click("#audit-filter button[type=submit]")
    page.wait_for_url("**/audit/?*action=membership.*")
    actions = set(page.locator("#audit tbody td:nth-child(3)").all_inner_texts())
    assert actions == {"membership.create", "membership.update", "membership.delete"}
    page.locator("#audit details summary").first.click()
    check_page(page, "org-audit")


@pytest.mark.django_db(transaction=True)
def test_a_viewer_sees_no_write_action_and_an_outsider_sees_nothing(live_server: Any, acme: Tenant, globex: Tenant,
                                                                    browser_page: Any) -> None:
    viewer = browser_page()
    sign_in(viewer, live_server, acme.users["viewer"])
    base = f"{live_server.url}/orgs/{acme.org.slug}"
    nav = viewer.inner_text("header nav")
    assert "Members" in nav and "Teams" in nav and "Projects" in nav and "Settings" not in nav
    for path in ("members/", "teams/", f"teams/{acme.team.pk}/", "projects/", f"projects/{acme.project.pk}/settings/"):
        viewer.goto(f"{base}/{path}")
        assert viewer.locator("main form").count() == 0, path
        assert viewer.locator("main button").count() == 0, path
        assert viewer.locator("main a", has_text="Remove").count() == 0, path
    viewer.goto(f"{base}/members/")
    assert "owner@acme.test" in viewer.inner_text("#members")
    check_page(viewer, "org-members-viewer")
    assert viewer.goto(f"{base}/settings/").status == 403

    outsider = browser_page()
    sign_in(outsider, live_server, globex.users["owner"])
    for path in ("members/", "teams/", f"teams/{acme.team.pk}/", f"projects/{acme.project.pk}/settings/", "audit/"):
        response = outsider.goto(f"{base}/{path}")
        assert response.status == 404 and "There is nothing here." in outsider.inner_text("main"), path
        assert "acme" not in outsider.inner_text("main").lower()
    check_page(outsider, "org-not-found")
