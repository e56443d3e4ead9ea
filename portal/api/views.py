"""Tenancy endpoints under `/api/v1/orgs/{org_slug}/`."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.request import Request
from rest_framework.response import Response

from portal import accounts, services
from portal.api import serializers as s
from portal.api.base import OrgScopedViewSet
from portal.models import (
    ApiToken,
    AuditLogEntry,
    Membership,
    Organization,
    OrgRole,
    Project,
    Team,
    TeamMembership,
    TokenScope,
)
from portal.tenancy import Parent

ORG_PARAM = OpenApiParameter("org_slug", str, OpenApiParameter.PATH, description="The organization's slug.")


class OrganizationViewSet(OrgScopedViewSet):
    """The organization itself: its name and budget."""

    queryset = Organization.objects.all()
    singleton = True
    serializer_class = s.OrganizationSerializer
    pagination_class = None

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(self.get_serializer(self.get_object()).data)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(self.get_object(), data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        org = services.organization_update(actor=self.actor, data=serializer.validated_data)
        return Response(self.get_serializer(org).data)


class MemberViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    """Members of the organization and their roles. Adding one mails them an invitation."""

    queryset = Membership.objects.select_related("user").order_by("id")
    serializer_class = s.MemberSerializer
    filterset_fields = ["role"]

    def get_serializer_class(self) -> Any:
        return s.MemberUpdateSerializer if self.action == "partial_update" else s.MemberSerializer

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = s.MemberSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        # The new member gets an invitation by e-mail (a link to set a password), not an unusable password.
        invitation = accounts.invitation_create(actor=self.actor, email=data["user"]["email"], role=data["role"])
        membership = Membership.objects.select_related("user").get(organization=self.organization,
                                                                    user=invitation.user)
        return Response(s.MemberSerializer(membership).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.MemberUpdateSerializer, responses=s.MemberSerializer)
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        membership = self.get_object()
        serializer = s.MemberUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership = services.member_update(actor=self.actor, membership=membership, **serializer.validated_data)
        return Response(s.MemberSerializer(membership).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.member_remove(actor=self.actor, membership=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class TeamViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    """Teams of the organization."""

    queryset = Team.objects.all()
    serializer_class = s.TeamSerializer
    filterset_fields = ["name"]
    ordering_fields = ["name", "created_at"]
    read_scopes = (TokenScope.FULL, TokenScope.KEYS)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        team = services.team_create(actor=self.actor, data=serializer.validated_data)
        return Response(self.get_serializer(team).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        team = self.get_object()
        serializer = self.get_serializer(team, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        team = services.team_update(actor=self.actor, team=team, data=serializer.validated_data)
        return Response(self.get_serializer(team).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.team_delete(actor=self.actor, team=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class TeamMemberViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    """Members of one team. Org admins and the team's admins manage them."""

    queryset = TeamMembership.objects.select_related("user", "team").order_by("id")
    parents = (Parent(Team, "team_id", rows="team"),)
    serializer_class = s.TeamMemberSerializer
    write_role = OrgRole.MEMBER  # then the team check in the service decides

    def get_serializer_class(self) -> Any:
        return s.TeamMemberUpdateSerializer if self.action == "partial_update" else s.TeamMemberSerializer

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        team = self.parent(Team)
        serializer = s.TeamMemberSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        tm = services.team_member_add(actor=self.actor, team=team, email=data["user"]["email"], role=data["role"])
        return Response(s.TeamMemberSerializer(tm).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.TeamMemberUpdateSerializer, responses=s.TeamMemberSerializer)
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        tm = self.get_object()
        serializer = s.TeamMemberUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        tm = services.team_member_update(actor=self.actor, membership=tm, **serializer.validated_data)
        return Response(s.TeamMemberSerializer(tm).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.team_member_remove(actor=self.actor, membership=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class ProjectViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    """Projects. Org admins manage all of them, team admins their team's."""

    queryset = Project.objects.all()
    serializer_class = s.ProjectSerializer
    filterset_fields = ["team", "name"]
    ordering_fields = ["name", "created_at"]
    write_role = OrgRole.MEMBER  # then the team check in the service decides
    read_scopes = (TokenScope.FULL, TokenScope.KEYS)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        project = services.project_create(actor=self.actor, data=serializer.validated_data)
        return Response(self.get_serializer(project).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        project = self.get_object()
        serializer = self.get_serializer(project, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        project = services.project_update(actor=self.actor, project=project, data=serializer.validated_data)
        return Response(self.get_serializer(project).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.project_delete(actor=self.actor, project=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class ApiTokenViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    """API tokens. Everyone sees and manages their own; admins see and revoke all (the rule of
    `ApiToken.objects.visible_to`)."""

    queryset = ApiToken.objects.select_related("user")
    serializer_class = s.ApiTokenSerializer
    write_role = OrgRole.VIEWER
    filterset_fields = ["scope", "role"]

    @extend_schema(responses={201: s.ApiTokenCreatedSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token, plaintext = services.api_token_create(actor=self.actor, **serializer.validated_data)
        token.plaintext = plaintext  # type: ignore[attr-defined]
        return Response(s.ApiTokenCreatedSerializer(token).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=s.ApiTokenSerializer)
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.api_token_revoke(actor=self.actor, token=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(list=extend_schema(description="Every change, newest first."))
class AuditLogViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    """The organization's audit log, read-only."""

    queryset = AuditLogEntry.objects.all()
    serializer_class = s.AuditLogEntrySerializer
    read_role = OrgRole.ADMIN
    filterset_fields = ["action", "target_type", "target_id"]
