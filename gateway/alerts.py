"""Soft-budget alerts. The plugin raises each one once per scope and budget
period (when spend crosses the soft budget); this sends it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db.models import Model

from gateway.models import VirtualKey
from gateway.plugin import contract
from portal.models import Organization, Project, Team
from portal.notify import send_alert

SCOPE_MODELS: dict[str, type[Model]] = {"key": VirtualKey, "project": Project, "team": Team, "org": Organization}


def budget_alert(fields: dict[str, str]) -> None:
    scope, ident = fields["scope"], int(fields["id"])
    obj: Any = SCOPE_MODELS[scope]._default_manager.filter(pk=ident).first()
    if obj is None:
        return
    org = obj if scope == "org" else obj.organization
    spend = Decimal(int(fields["spend"])) / contract.NANO
    soft = Decimal(int(fields["soft"])) / contract.NANO
    hard = f" of a max budget of ${obj.max_budget:.2f}" if obj.max_budget is not None else ""
    label = {"key": "Key", "project": "Project", "team": "Team", "org": "Organization"}[scope]
    subject = f"{label} '{obj}' passed its soft budget (${soft:.2f})"
    body = (f"{label} '{obj}' of {org.name} has spent ${spend:.4f} in the budget period {fields['period']}, "
            f"past its soft budget of ${soft:.2f}{hard}.\n\nYou get this once per budget period.")
    send_alert(org, subject=subject, body=body, payload={
        "kind": "soft_budget", "scope": scope, "id": ident, "name": str(obj), "period": fields["period"],
        "spend": float(spend), "soft_budget": float(soft),
        "max_budget": float(obj.max_budget) if obj.max_budget is not None else None})
