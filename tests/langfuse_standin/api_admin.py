"""Projects and API keys: the project's own view and the organisation admin API.

Organisation-scoped operations need an organisation key *and* the enterprise
``admin-api`` entitlement; the server checks both before these handlers run.
"""

from __future__ import annotations

from typing import Any

from . import render
from .errors import ApiError
from .models import Project, utcnow
from .routing import Ctx, Response, route

PROJECT_NAME_LENGTH = (3, 60)


@route("GET", "/api/public/projects")
def get_projects(ctx: Ctx) -> Response:
    """The project of the key (a one-element list, as the spec shapes it)."""
    return Response(200, {"data": [render.project(ctx.proj)]})


def _check_name(ctx: Ctx, name: Any, *, exclude: Project | None = None) -> None:
    low, high = PROJECT_NAME_LENGTH
    if not isinstance(name, str) or not low <= len(name) <= high:
        raise ApiError(400, "Invalid project name. Should be between 3 and 60 characters.", violation=True)
    if any(p.name == name and p is not exclude for p in ctx.server.projects.values()):
        raise ApiError(409, "A project with this name already exists in your organization")


def _check_retention(retention: Any) -> None:
    if retention is not None and (retention < 0 or 0 < retention < 3):
        raise ApiError(400, "Invalid retention value. Must be 0 or at least 3 days.", violation=True)


@route("POST", "/api/public/projects", scope="org")
def create_project(ctx: Ctx) -> Response:
    body = ctx.body
    _check_name(ctx, body.get("name"))
    _check_retention(body.get("retention"))
    project = ctx.server.create_project(body["name"], metadata=body.get("metadata") or {},
                                        retention_days=body.get("retention") or None)
    return Response(201, render.project(project))


def _org_project(ctx: Ctx) -> Project:
    project = ctx.server.projects.get(ctx.path["projectId"])
    if project is None:
        raise ApiError(404, "Project not found")
    return project


@route("PUT", "/api/public/projects/{projectId}", scope="org")
def update_project(ctx: Ctx) -> Response:
    project, body = _org_project(ctx), ctx.body
    _check_name(ctx, body.get("name"), exclude=project)
    _check_retention(body.get("retention"))
    project.name = body["name"]
    if body.get("metadata") is not None:
        project.metadata = body["metadata"]
    if "retention" in body and body["retention"] is not None:
        project.retention_days = body["retention"] or None
    project.updated_at = utcnow()
    return Response(200, render.project(project))


@route("DELETE", "/api/public/projects/{projectId}", scope="org")
def delete_project(ctx: Ctx) -> Response:
    ctx.server.delete_project(_org_project(ctx).id)
    return Response(202, {"success": True,
                          "message": "Project deletion has been initiated and will be processed asynchronously"})


@route("GET", "/api/public/projects/{projectId}/apiKeys", scope="org")
def list_api_keys(ctx: Ctx) -> Response:
    project = _org_project(ctx)
    return Response(200, {"apiKeys": [render.api_key_summary(k) for k in project.api_keys]})


@route("POST", "/api/public/projects/{projectId}/apiKeys", scope="org")
def create_api_key(ctx: Ctx) -> Response:
    project, body = _org_project(ctx), ctx.body
    public, secret = body.get("publicKey"), body.get("secretKey")
    if (public is None) != (secret is None):
        raise ApiError(400, "Both publicKey and secretKey must be provided together when specifying predefined keys",
                       violation=True)
    if public is not None and not public.startswith("pk-lf-"):
        raise ApiError(400, "publicKey must start with 'pk-lf-'", violation=True)
    if secret is not None and not secret.startswith("sk-lf-"):
        raise ApiError(400, "secretKey must start with 'sk-lf-'", violation=True)
    if public is not None and ctx.server.key_exists(public, secret):
        raise ApiError(409, "API key with the provided publicKey or secretKey already exists")
    key = ctx.server.add_api_key(project.id, public, secret, note=body.get("note"))
    return Response(201, render.api_key_response(key))


@route("DELETE", "/api/public/projects/{projectId}/apiKeys/{apiKeyId}", scope="org")
def delete_api_key(ctx: Ctx) -> Response:
    project = _org_project(ctx)
    if not ctx.server.remove_api_key(project.id, ctx.path["apiKeyId"]):
        raise ApiError(404, "API key not found")
    return Response(200, {"success": True})


@route("GET", "/api/public/organizations/projects", scope="org")
def list_org_projects(ctx: Ctx) -> Response:
    projects = sorted(ctx.server.projects.values(), key=lambda p: p.created_at)
    return Response(200, {"projects": [render.organization_project(p) for p in projects]})


@route("GET", "/api/public/organizations/apiKeys", scope="org")
def list_org_api_keys(ctx: Ctx) -> Response:
    return Response(200, {"apiKeys": [render.api_key_summary(k) for k in ctx.server.org_keys]})
