"""Which rows of a tenant model an actor may see: `Model.objects.visible_to(actor, action)`.

The one scoping method of the portal, in the manner of NetBox's
`RestrictedQuerySet.restrict(user, action)`. Every tenant model declares, in
its manager line, its path to the organization and, where the product has a
finer rule, that rule:

    objects = TenantManager("project__organization")
    objects = TenantManager("organization", rows=TeamOrOwn(team="team", owner="owner"))

The API base, the web views and the selectors read tenant rows only through
`visible_to`; a plain `filter(organization=...)` in a view is the bug this
module exists to prevent.

The action is "view", "change" or "delete". For every model but the
append-only ones the three select the same rows, on purpose: a row an actor
can read answers 403 (from the service, which says who may change it) when
the actor may not change it, and 404 stays for rows the actor may not know
about. Append-only models (the audit log, usage) have no row to change or
delete. The action is still said at each call, as in NetBox, so that a rule
that differs per action is one change in this module, not in every view."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar, get_args

from django.db import models
from django.db.models import Q

if TYPE_CHECKING:
    from portal.access import Actor

_M = TypeVar("_M", bound=models.Model)

Action = Literal["view", "change", "delete"]
ACTIONS: tuple[Action, ...] = get_args(Action)


class RowRule(Protocol):
    """A finer rule than "rows of the actor's organization"."""

    def q(self, actor: Actor) -> Q | None:
        """The condition on rows, or None when the actor sees every row of the organization."""


@dataclass(frozen=True)
class TeamOrOwn:
    """Org viewers and up see every row; members see their teams' rows and
    their own, also through a token of a lower role (`Actor.sees_every_team`).
    The rule of keys and of the usage they make."""

    team: str  # the lookup to the row's team
    owner: str  # the lookup to the row's owner (a user)

    def q(self, actor: Actor) -> Q | None:
        if actor.sees_every_team():
            return None
        return Q(**{f"{self.team}__in": list(actor.team_roles())}) | Q(**{self.owner: actor.user})


@dataclass(frozen=True)
class OwnBelow:
    """From `role` up, every row; below it, only one's own. API tokens:
    everyone sees their own, admins see all."""

    role: str
    owner: str  # the lookup to the row's owner (a user)

    def q(self, actor: Actor) -> Q | None:
        if actor.at_least(self.role):
            return None
        return Q(**{self.owner: actor.user})


@dataclass(frozen=True)
class Scope:
    """What a tenant model's manager declares."""

    org: str  # the lookup from the model to its organization ("pk" for the organization itself)
    role: str | None = None  # the lowest organization role that sees any row (None: every member)
    rows: RowRule | None = None
    append_only: bool = False  # no row is changed or deleted through a view

    def apply(self, queryset: TenantQuerySet[_M], actor: Actor, action: Action) -> TenantQuerySet[_M]:
        if action not in ACTIONS:
            raise ValueError(f"Unknown action {action!r}; one of {', '.join(ACTIONS)}.")
        if (self.append_only and action != "view") or (self.role is not None and not actor.at_least(self.role)):
            return queryset.none()
        queryset = queryset.filter(**{self.org: actor.organization.pk})
        condition = self.rows.q(actor) if self.rows is not None else None
        return queryset if condition is None else queryset.filter(condition)


class TenantQuerySet(models.QuerySet[_M]):
    """A queryset of a tenant model: `visible_to` scopes it to what an actor may see."""

    def visible_to(self, actor: Actor, action: Action) -> TenantQuerySet[_M]:
        """The rows of `actor`'s organization that `actor` may `action`."""
        return scope_of(self.model).apply(self, actor, action)


class TenantManager(models.Manager[_M]):
    """The default manager of every tenant model. Unscoped like any manager
    (services and workers act for the system); `visible_to` is the scoped view."""

    def __init__(self, org: str = "organization", *, role: str | None = None, rows: RowRule | None = None,
                 append_only: bool = False) -> None:
        super().__init__()
        self.scope = Scope(org=org, role=role, rows=rows, append_only=append_only)

    def get_queryset(self) -> TenantQuerySet[_M]:
        return TenantQuerySet(self.model, using=self._db, hints=self._hints)  # type: ignore[attr-defined]

    def visible_to(self, actor: Actor, action: Action) -> TenantQuerySet[_M]:
        return self.get_queryset().visible_to(actor, action)


def scope_of(model: type[models.Model]) -> Scope:
    """The scope a model's default manager declares (related managers are
    copies of its class without the declaration, so it is read from the model)."""
    manager = model._meta.default_manager
    if not isinstance(manager, TenantManager):
        raise TypeError(f"{model.__name__} is not a tenant model: its default manager is not a TenantManager.")
    return manager.scope
