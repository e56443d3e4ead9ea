"""One way to scope a tenant: every API viewset and every web page derives from the
base that resolves the tenant, every tenant model's default manager is a
`TenantManager`, a view cannot override the scoping, and `visible_to` gives each
role the keys the product says it sees."""

from __future__ import annotations

from typing import Any

import pytest
from django.apps import apps
from django.urls import URLPattern, URLResolver, get_resolver

from gateway.models import SyncOutbox, VirtualKey
from gateway.services import keys
from portal import services
from portal.access import Actor, actor_for_user, system_actor
from portal.api.base import OrgScopedViewSet
from portal.models import ApiToken, AuditLogEntry, Organization, Team
from portal.scoping import TenantManager
from portal.web.base import OrgPage
from tests.factories import ROLES, Tenant

#: models of the three apps that belong to no tenant, and why
NOT_TENANT = {SyncOutbox: "an outbox row names an object by kind and id; only the sync worker reads it"}


def patterns(resolver: URLResolver, prefix: str = "") -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    for p in resolver.url_patterns:
        if isinstance(p, URLResolver):
            found += patterns(p, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            found.append((prefix + str(p.pattern), p.callback))
    return found


def org_routes(kind: str) -> list[tuple[str, Any]]:
    every = patterns(get_resolver())
    if kind == "api":
        return [(r, cb) for r, cb in every if r.startswith("api/v1/") and "orgs/" in r]
    return [(r, cb) for r, cb in every if r.startswith("orgs/")]


def test_every_api_route_of_an_organization_is_an_org_scoped_viewset() -> None:
    routes = org_routes("api")
    assert len(routes) > 50
    outside = [r for r, cb in routes if not issubclass(getattr(cb, "cls", object), OrgScopedViewSet)]
    assert outside == []


def test_every_api_route_is_under_an_organization_but_the_schema_and_docs() -> None:
    others = {r for r, _ in patterns(get_resolver()) if r.startswith("api/v1/") and "orgs/" not in r}
    assert {r.removeprefix("api/v1/") for r in others} == {"schema/", "docs/"}


def test_every_web_page_of_an_organization_is_an_org_page() -> None:
    routes = org_routes("web")
    assert len(routes) >= 7
    outside = [r for r, cb in routes if not issubclass(getattr(cb, "view_class", object), OrgPage)]
    assert outside == []


def test_every_tenant_model_has_a_tenant_manager_as_default_manager() -> None:
    models = [m for app in ("portal", "gateway", "evals") for m in apps.get_app_config(app).get_models()]
    assert len(models) > 25
    wrong = [m.__name__ for m in models if m not in NOT_TENANT
             and not isinstance(m._meta.default_manager, TenantManager)]
    assert wrong == []


@pytest.mark.django_db
def test_every_tenant_models_path_to_its_organization_resolves(acme: Tenant, globex: Tenant) -> None:
    models = [m for app in ("portal", "gateway", "evals") for m in apps.get_app_config(app).get_models()
              if m not in NOT_TENANT]
    actor = system_actor(acme.org, "t")
    for model in models:
        rows = model._default_manager.visible_to(actor, "view")  # type: ignore[attr-defined]
        assert rows.count() >= 0, model  # the lookup resolves (a FieldError otherwise)
    assert set(Organization.objects.visible_to(actor, "view")) == {acme.org}
    assert globex.team not in Team.objects.visible_to(actor, "view")


@pytest.mark.parametrize("method", ["get_queryset", "get_object"])
def test_a_viewset_that_overrides_the_scoping_is_refused(method: str) -> None:
    with pytest.raises(TypeError, match=method):
        type("Leaky", (OrgScopedViewSet,), {"queryset": VirtualKey.objects.all(), method: lambda self: None})


def test_a_viewset_of_a_model_without_a_tenant_manager_is_refused() -> None:
    with pytest.raises(TypeError, match="tenant model"):
        type("Outbox", (OrgScopedViewSet,), {"queryset": SyncOutbox.objects.all()})


def test_a_page_that_overrides_dispatch_is_refused() -> None:
    with pytest.raises(TypeError, match="dispatch"):
        type("Leaky", (OrgPage,), {"dispatch": lambda self, request: None})


@pytest.mark.django_db
def test_an_unknown_action_is_an_error(acme: Tenant) -> None:
    with pytest.raises(ValueError, match="edit"):
        VirtualKey.objects.visible_to(system_actor(acme.org, "t"), "edit")  # type: ignore[arg-type]


def actor(t: Tenant, role: str) -> Actor:
    return actor_for_user(t.org, t.users[role])


@pytest.mark.django_db
def test_each_role_sees_the_keys_the_product_says(acme: Tenant, globex: Tenant) -> None:
    """Owner, admin and viewer: every key; team admin: its team's; member: its teams' and its own;
    another organization's owner: none of them."""
    system = system_actor(acme.org, "t")
    other = services.team_create(actor=system, data={"name": "acme-other"})
    other_project = services.project_create(actor=system, data={"name": "acme-other-project", "team": other})
    in_other_team = keys.key_create(actor=system, data={"name": "acme other", "team": other,
                                                        "project": other_project}).key
    members_elsewhere = keys.key_create(actor=system, data={"name": "acme member's elsewhere", "team": other,
                                                            "project": other_project,
                                                            "owner": acme.users["member"]}).key
    every = {acme.key, in_other_team, members_elsewhere}
    expected = {"owner": every, "admin": every, "viewer": every, "team_admin": {acme.key},
                "member": {acme.key, members_elsewhere}}
    assert set(expected) == set(ROLES)
    for role, keys_seen in expected.items():
        for action in ("view", "change", "delete"):
            assert set(VirtualKey.objects.visible_to(actor(acme, role), action)) == keys_seen, (role, action)
    outsider = actor(globex, "owner")
    assert set(VirtualKey.objects.visible_to(outsider, "view")) == {globex.key}


@pytest.mark.django_db
def test_tokens_are_ones_own_below_admin_and_the_audit_log_is_for_admins_and_never_changed(acme: Tenant) -> None:
    member_tokens = set(ApiToken.objects.visible_to(actor(acme, "member"), "view"))
    assert member_tokens and {t.user for t in member_tokens} == {acme.users["member"]}
    assert ApiToken.objects.visible_to(actor(acme, "admin"), "view").count() == len(ROLES)
    assert not AuditLogEntry.objects.visible_to(actor(acme, "viewer"), "view").exists()
    assert AuditLogEntry.objects.visible_to(actor(acme, "admin"), "view").exists()
    assert not AuditLogEntry.objects.visible_to(actor(acme, "owner"), "delete").exists()


@pytest.mark.django_db
def test_a_nested_url_under_another_tenants_project_is_404_even_where_the_view_reads_no_row(
        acme: Tenant, globex: Tenant) -> None:
    """The base loads the parent before the view runs: the evaluator templates (static) included."""
    owner = acme.client("owner")
    assert owner.get(acme.url(f"projects/{acme.project.pk}/evaluators/templates/")).status_code == 200
    assert owner.get(acme.url(f"projects/{globex.project.pk}/evaluators/templates/")).status_code == 404
