"""Organization administration: settings and budgets, teams and members, projects and their Langfuse
connection, the audit log."""
from django.urls import path

from portal.web.org import audit, members, projects, teams, views

ORG = "orgs/<str:org_slug>"
TEAM = f"{ORG}/teams/<int:team_id>"
PROJECT = f"{ORG}/projects/<int:project_id>"

urlpatterns = [
    path(f"{ORG}/settings/", views.SettingsPage.as_view(), name="settings"),
    path(f"{ORG}/settings/langfuse/", views.OrgKeyPage.as_view(), name="settings-langfuse"),
    path(f"{ORG}/members/", members.MembersPage.as_view(), name="members"),
    path(f"{ORG}/members/<int:membership_id>/", members.MemberPage.as_view(), name="member"),
    path(f"{ORG}/members/<int:membership_id>/remove/", members.MemberRemovePage.as_view(), name="member-remove"),
    path(f"{ORG}/invitations/<int:invitation_id>/<str:verb>/", members.InvitationAction.as_view(),
         name="invitation-action"),
    path(f"{ORG}/teams/", teams.TeamsPage.as_view(), name="teams"),
    path(f"{TEAM}/", teams.TeamPage.as_view(), name="team"),
    path(f"{TEAM}/delete/", teams.TeamDeletePage.as_view(), name="team-delete"),
    path(f"{TEAM}/members/", teams.TeamMembersPage.as_view(), name="team-members"),
    path(f"{TEAM}/members/<int:team_membership_id>/", teams.TeamMemberPage.as_view(), name="team-member"),
    path(f"{TEAM}/members/<int:team_membership_id>/remove/", teams.TeamMemberRemovePage.as_view(),
         name="team-member-remove"),
    path(f"{ORG}/projects/", projects.ProjectsPage.as_view(), name="projects"),
    path(f"{PROJECT}/settings/", projects.ProjectSettingsPage.as_view(), name="project-settings"),
    path(f"{PROJECT}/delete/", projects.ProjectDeletePage.as_view(), name="project-delete"),
    path(f"{PROJECT}/langfuse/", projects.ProjectLangfusePage.as_view(), name="project-langfuse"),
    path(f"{PROJECT}/langfuse/disconnect/", projects.ProjectLangfuseDisconnect.as_view(),
         name="project-langfuse-disconnect"),
    path(f"{PROJECT}/langfuse/provision/", projects.ProjectLangfuseProvision.as_view(),
         name="project-langfuse-provision"),
    path(f"{ORG}/audit/", audit.AuditPage.as_view(), name="audit"),
]
