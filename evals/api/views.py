"""Evaluation endpoints under `/api/v1/orgs/{org_slug}/projects/{project_id}/`."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from evals.api import serializers as s
from evals.models import LangfuseConnection
from evals.services import langfuse
from portal.api.base import OrgScopedViewSet
from portal.models import OrgRole, Project


class ProjectScopedViewSet(OrgScopedViewSet):
    """A resource of one project: the project must be of the organization in the URL (else 404)."""

    org_field = "project__organization"
    write_role = OrgRole.MEMBER  # the team check in the services decides

    def project(self) -> Project:
        if not hasattr(self, "_project"):
            self._project = get_object_or_404(Project, organization=self.organization, pk=self.kwargs["project_id"])
        return self._project

    def narrow_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(project=self.project())


class LangfuseConnectionViewSet(ProjectScopedViewSet):
    """The project's Langfuse connection (one per project). Saving checks it."""

    queryset = LangfuseConnection.objects.select_related("project")
    serializer_class = s.LangfuseConnectionSerializer
    pagination_class = None

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        conn = get_object_or_404(self.get_queryset())
        return Response(self.get_serializer(conn).data)

    @extend_schema(responses=s.LangfuseConnectionSerializer)
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        existing = self.get_queryset().first()
        serializer = self.get_serializer(existing, data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        conn = langfuse.connection_save(actor=self.actor, project=self.project(), host=data["host"],
                                        public_key=data["public_key"], secret_key=data.get("secret_key"),
                                        enabled=data.get("enabled", True))
        return Response(self.get_serializer(conn).data, status=status.HTTP_200_OK if existing else 201)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        langfuse.connection_delete(actor=self.actor, connection=get_object_or_404(self.get_queryset()))
        return Response(status=status.HTTP_204_NO_CONTENT)
