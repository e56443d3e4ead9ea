"""The one way the rest of the portal tells the gateway that something it
serves has changed. Called inside the writing transaction: the outbox row
commits (or rolls back) with the change, and the push runs after commit."""

from __future__ import annotations

from django.db import transaction

from gateway.models import SyncKind, SyncOutbox


def _notify(kind: str, object_id: int) -> None:
    SyncOutbox.objects.create(kind=kind, object_id=object_id)
    transaction.on_commit(_push_after_commit)


def _push_after_commit() -> None:
    from gateway import sync

    sync.drain_outbox_soon()


def key_changed(key_id: int) -> None:
    _notify(SyncKind.KEY, key_id)


def routes_changed(organization_id: int) -> None:
    _notify(SyncKind.ROUTES, organization_id)


def organization_changed(organization_id: int) -> None:
    _notify(SyncKind.ORGANIZATION, organization_id)


def team_changed(team_id: int) -> None:
    _notify(SyncKind.TEAM, team_id)


def project_changed(project_id: int) -> None:
    _notify(SyncKind.PROJECT, project_id)
