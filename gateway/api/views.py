"""Credentials, routes and keys under `/api/v1/orgs/{org_slug}/`."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import django_filters
from django.db.models import Q, QuerySet
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from gateway.api import serializers as s
from gateway.models import KeyStatus, ModelRoute, ProviderCredential, VirtualKey
from gateway.services import credentials, keys, routes
from portal.api.base import OrgScopedViewSet
from portal.exceptions import Conflict
from portal.models import OrgRole, TokenScope

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key", str, OpenApiParameter.HEADER, required=False,
    description="A retried request with the same key and body returns the same key record (200) instead of a "
                "second key; its plaintext is not shown again.")


class CredentialViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    """Provider credentials. Secrets are write-only."""

    queryset = ProviderCredential.objects.all()
    serializer_class = s.CredentialSerializer
    read_role = OrgRole.ADMIN
    filterset_fields = ["provider", "name"]

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        cred = credentials.credential_create(actor=self.actor, **serializer.validated_data)
        return Response(self.get_serializer(cred).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        cred = self.get_object()
        serializer = self.get_serializer(cred, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        cred = credentials.credential_update(actor=self.actor, credential=cred, data=serializer.validated_data)
        return Response(self.get_serializer(cred).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        credentials.credential_delete(actor=self.actor, credential=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class RouteViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    """Model routes: the model names users type, and where they go."""

    queryset = ModelRoute.objects.select_related("organization").prefetch_related(
        "deployments", "fallback_links__fallback", "allowed_teams")
    serializer_class = s.RouteSerializer
    filterset_fields = ["name", "is_active"]
    ordering_fields = ["name", "created_at"]
    read_scopes = (TokenScope.FULL, TokenScope.KEYS)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        route = routes.route_create(actor=self.actor, data=serializer.validated_data)
        return Response(self.get_serializer(self.get_queryset().get(pk=route.pk)).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        route = self.get_object()
        serializer = self.get_serializer(route, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        routes.route_update(actor=self.actor, route=route, data=serializer.validated_data)
        return Response(self.get_serializer(self.get_queryset().get(pk=route.pk)).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        routes.route_delete(actor=self.actor, route=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class KeyFilter(django_filters.FilterSet):
    team = django_filters.NumberFilter(field_name="team_id")
    project = django_filters.NumberFilter(field_name="project_id")
    owner = django_filters.CharFilter(field_name="owner__email", lookup_expr="iexact", max_length=254)
    status = django_filters.ChoiceFilter(choices=KeyStatus.choices)
    search = django_filters.CharFilter(method="filter_search", max_length=100,
                                       help_text="Part of the key's name or its display prefix.")

    class Meta:
        model = VirtualKey
        fields = ["team", "project", "owner", "status"]

    def filter_search(self, queryset: QuerySet[Any], name: str, value: str) -> QuerySet[Any]:
        return queryset.filter(Q(name__icontains=value) | Q(key_prefix__startswith=value))


def request_fingerprint(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


class KeyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    """Virtual keys. Admins manage all; team admins their team's; members their own (members see
    their teams' keys and their own: the rule of `VirtualKey.objects.visible_to`)."""

    queryset = VirtualKey.objects.select_related("owner", "created_by").prefetch_related("allowed_routes")
    serializer_class = s.KeySerializer
    filterset_class = KeyFilter
    ordering_fields = ["created_at", "name", "last_used_at", "expires_at"]
    write_role = OrgRole.MEMBER  # then the team and owner checks in the services decide
    read_scopes = write_scopes = (TokenScope.FULL, TokenScope.KEYS)

    def get_serializer_class(self) -> Any:
        return s.KeyUpdateSerializer if self.action == "partial_update" else s.KeySerializer

    STATUS_ACTIONS = frozenset({"revoke", "block", "unblock"})

    def narrow_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.action in self.STATUS_ACTIONS:
            # The status services lock the key and load its relations themselves (their answer is built
            # from that): here only whether the actor may see it, in one query.
            return queryset.select_related(None).prefetch_related(None)
        return queryset

    def _issued(self, issued: keys.IssuedKey, code: int) -> Response:
        issued.key.plaintext = issued.plaintext  # type: ignore[attr-defined]
        issued.key.cline = issued.cline  # type: ignore[attr-defined]
        return Response(s.KeyIssuedSerializer(issued.key, context=self.get_serializer_context()).data, status=code)

    @extend_schema(parameters=[IDEMPOTENCY_HEADER],
                   responses={201: s.KeyIssuedSerializer, 200: OpenApiResponse(s.KeySerializer, "A replay.")})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        idempotency_key = request.headers.get("Idempotency-Key")
        if idempotency_key is None:
            return self._issued(keys.key_create(actor=self.actor, data=serializer.validated_data), 201)
        if not 1 <= len(idempotency_key) <= 255 or not idempotency_key.isprintable():
            raise serializers.ValidationError({"Idempotency-Key": ["1 to 255 printable characters."]})
        result = keys.key_create_idempotent(actor=self.actor, data=serializer.validated_data,
                                            idempotency_key=idempotency_key,
                                            request_hash=request_fingerprint(request.data))
        if result.issued is not None:
            return self._issued(result.issued, 201)
        # the key as the actor sees it now (it may have left the key's team since): a replay reads no more
        replayed = self.get_queryset().filter(pk=result.key.pk).first()
        if replayed is None:
            raise Conflict("This Idempotency-Key was used for a key you can no longer see; use a new one.")
        replay = Response(s.KeySerializer(replayed, context=self.get_serializer_context()).data)
        replay["Idempotent-Replayed"] = "true"
        return replay

    @extend_schema(request=s.KeyUpdateSerializer, responses=s.KeySerializer)
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = self.get_object()
        serializer = self.get_serializer(key, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        key = keys.key_update(actor=self.actor, key=key, data=serializer.validated_data)
        return Response(s.KeySerializer(self.get_queryset().get(pk=key.pk), context=self.get_serializer_context()).data)

    @extend_schema(request=s.RotateSerializer, responses={200: s.KeyIssuedSerializer})
    @action(detail=True, methods=["post"])
    def rotate(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = self.get_object()
        serializer = s.RotateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return self._issued(keys.key_rotate(actor=self.actor, key=key, **serializer.validated_data), 200)

    def _status_change(self, change: Any) -> Response:
        key = change(actor=self.actor, key=self.get_object())
        return Response(s.KeySerializer(key, context=self.get_serializer_context()).data)

    @extend_schema(request=None, responses=s.KeySerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self._status_change(keys.key_revoke)

    @extend_schema(request=None, responses=s.KeySerializer)
    @action(detail=True, methods=["post"])
    def block(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self._status_change(keys.key_block)

    @extend_schema(request=None, responses=s.KeySerializer)
    @action(detail=True, methods=["post"])
    def unblock(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self._status_change(keys.key_unblock)


