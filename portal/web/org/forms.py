"""The organization pages' forms: fields described once, rendered by `web/org/_fields.html` (a label for
every input, the field's errors next to it), parsed into the dict the API's serializers take.

Validation is the serializers' and the services' (as in the API); this module only shapes the POST
into that dict and the errors back onto the fields."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError

from portal.api.errors import validation_detail
from portal.models import BudgetPeriod


@dataclass(frozen=True)
class Field:
    """One input: what `_fields.html` renders and `parse` reads."""

    name: str
    label: str
    kind: str = "text"  # text, email, url, decimal, password, select, textarea
    choices: tuple[tuple[str, str], ...] = ()
    required: bool = False
    maxlength: int | None = None
    help: str = ""
    nullable: bool = False  # an empty value is sent as None (clears an amount)
    # bound state
    value: str = ""
    errors: tuple[str, ...] = ()
    form: str = ""  # the id prefix: several forms on one page keep their ids apart

    @property
    def id(self) -> str:
        return f"{self.form}-{self.name}" if self.form else self.name


def budget_fields() -> tuple[Field, ...]:
    return (
        Field("max_budget", "Max budget (USD)", kind="decimal", nullable=True,
              help="Requests are refused once spend reaches it. Empty: no limit."),
        Field("soft_budget", "Soft budget (USD)", kind="decimal", nullable=True,
              help="Only alerts. Not above the max budget."),
        Field("budget_period", "Budget period", kind="select", required=True, choices=tuple(BudgetPeriod.choices),
              help="When spend starts again from zero."),
    )


def _text(value: Any) -> str:
    if isinstance(value, Decimal):  # 120.0000 (the column's scale) reads as 120
        text = f"{value:f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    return "" if value is None else str(value)


def bind(fields: Iterable[Field], *, values: Mapping[str, Any] | None = None,
         errors: Mapping[str, Any] | None = None, form: str = "") -> list[Field]:
    """The fields with their values (the POST when it failed, else the object's) and errors."""
    values, errors = values or {}, errors or {}
    bound = []
    for f in fields:
        value = "" if f.kind == "password" else _text(values.get(f.name, ""))
        raw = errors.get(f.name, ())
        messages = tuple(str(m) for m in (raw if isinstance(raw, (list, tuple)) else [raw]))
        bound.append(replace(f, value=value, errors=messages, form=form))
    return bound


def parse(fields: Iterable[Field], post: Mapping[str, Any]) -> dict[str, Any]:
    """The POST's values of these fields, as the serializers take them (absent fields stay absent)."""
    data: dict[str, Any] = {}
    for f in fields:
        if f.name not in post:
            continue
        value = post.get(f.name, "")
        value = value.strip() if isinstance(value, str) and f.kind != "password" else value
        data[f.name] = None if f.nullable and value == "" else value
    return data


def values_of(instance: Any, fields: Iterable[Field]) -> dict[str, Any]:
    return {f.name: getattr(instance, f.name, "") for f in fields}


@dataclass
class Outcome:
    """Errors of a failed write, by field; `non_field` for the ones that belong to no field of the form."""

    errors: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, exc: ValidationError | Mapping[str, Any], fields: Iterable[Field]) -> Outcome:
        detail = validation_detail(exc) if isinstance(exc, ValidationError) else dict(exc)
        names = {f.name for f in fields}
        errors: dict[str, list[str]] = {}
        for name, messages in detail.items():
            items = [str(m) for m in (messages if isinstance(messages, (list, tuple)) else [messages])]
            if isinstance(messages, Mapping):  # a nested serializer's errors (user.email)
                items = [str(m) for ms in messages.values() for m in (ms if isinstance(ms, list) else [ms])]
            errors.setdefault(name if name in names else "non_field_errors", []).extend(items)
        return cls(errors)


def messages_of(exc: ValidationError) -> str:
    """A service's refusal as one sentence, for a message at the top of the page."""
    return " ".join(m for ms in validation_detail(exc).values() for m in ms)
