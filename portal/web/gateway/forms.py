"""The gateway pages' forms: the POST shaped into the dict the API's serializers take, and their errors
flattened onto the fields. Validation is the serializers' and the services' (as in the API)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.db.models import Model, QuerySet

KEY_LIMITS = ("max_budget", "soft_budget", "rpm_limit", "tpm_limit", "expires_at")
BUDGET_PERIODS = (("none", "no reset"), ("daily", "daily"), ("weekly", "weekly"), ("monthly", "monthly"))
MAX_ID = 2**62


def object_id(value: Any) -> int | None:
    """A form's id as an int, or None for anything that is not one (hostile input included)."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and 0 < len(value) < 19:
        return int(value)
    return None


def one_of(rows: QuerySet[Any], value: Any) -> Model | None:
    """The row of `rows` (already scoped by `visible_to`) whose id the form sent, or None."""
    pk = object_id(value)
    return rows.filter(pk=pk).first() if pk is not None else None


def flatten(errors: Any) -> list[str]:
    """Every message in a serializer's error structure (lists of nested lists and dicts)."""
    if isinstance(errors, Mapping):
        return [f"{k}: {m}" if not isinstance(k, int) and k != "non_field_errors" else m
                for k, v in errors.items() for m in flatten(v)]
    if isinstance(errors, (list, tuple)):
        return [m for e in errors for m in flatten(e)]
    return [str(errors)]


def first_errors(errors: Mapping[str, Any]) -> dict[str, list[str]]:
    """{field: [message, ...]} from DRF's or `validation_detail`'s shape; the team of a key is its
    project's, so an error about the team is shown at the project."""
    out = {str(name): flatten(value) for name, value in errors.items()}
    if "team" in out:
        out.setdefault("project", out.pop("team"))
        out.pop("team", None)
    return out


def key_form_data(post: Any, projects: QuerySet[Any]) -> dict[str, Any]:
    """The key form: a project (its team comes with it), routes, limits. Empty limits are not sent."""
    project = one_of(projects, post.get("project"))
    data: dict[str, Any] = {"name": post.get("name", ""), "project": post.get("project") or None,
                            "team": project.team_id if project is not None else None,  # type: ignore[attr-defined]
                            "allowed_routes": post.getlist("allowed_routes"),
                            "budget_period": post.get("budget_period") or "none"}
    for field in KEY_LIMITS:
        if post.get(field):
            data[field] = post[field]
    return data


def key_initial(key: Any, routes: list[Any]) -> dict[str, Any]:
    """The edit form's values of a key, as the inputs show them (amounts without trailing zeros, the
    expiry to the minute, UTC)."""

    def amount(value: Decimal | None) -> str:
        return "" if value is None else format(value.normalize(), "f")

    return {"name": key.name, "max_budget": amount(key.max_budget), "soft_budget": amount(key.soft_budget),
            "budget_period": key.budget_period, "rpm_limit": "" if key.rpm_limit is None else str(key.rpm_limit),
            "tpm_limit": "" if key.tpm_limit is None else str(key.tpm_limit),
            "expires_at": key.expires_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M") if key.expires_at else "",
            "allowed_routes": sorted(r.name for r in routes)}


def changed_key_fields(post: Any, initial: dict[str, Any]) -> dict[str, Any]:
    """What the edit form changed, for the update serializer: an emptied limit is None (no limit)."""
    data: dict[str, Any] = {}
    for field in ("name", "budget_period", *KEY_LIMITS):
        value = post.get(field, "")
        if isinstance(value, str) and value.strip() != initial[field]:
            data[field] = value.strip() or (None if field in KEY_LIMITS else "")
    routes = sorted(set(post.getlist("allowed_routes")))
    if routes != initial["allowed_routes"]:
        data["allowed_routes"] = routes
    return data


def json_object(text: str, field: str) -> dict[str, Any]:
    """A textarea of JSON that must be an object (empty: {}); ValueError names the field."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise ValueError(f"{field}: not valid JSON.") from None
    if not isinstance(value, dict):
        raise ValueError(f"{field}: expected a JSON object, like {{\"temperature\": 0.2}}.")
    return value
