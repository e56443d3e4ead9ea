"""The audit log (org admins), with filters, newest first.

Paginated by keyset, never by counting: "older" continues below the last entry shown (its time and
id), so a page costs the same on the first and the millionth entry, through the index on
(organization, -created_at). Filters: who (a member, by the indexed user column), what (the action,
or its prefix such as `key.`), on what (the object type), and a date range."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, cast

from django import forms
from django.apps import apps
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, QueryDict
from django.utils import timezone

from portal.models import AuditLogEntry, Membership, OrgRole
from portal.web.base import OrgPage

PAGE_SIZE = 50
AUDITED_APPS = ("portal", "gateway", "evals")


def object_types() -> list[tuple[str, str]]:
    """The kinds of object an entry can be about: the models of the portal's apps, by their name in
    the log (`target_type` is the model's name)."""
    models = [m for label in AUDITED_APPS for m in apps.get_app_config(label).get_models()]
    return sorted(((m._meta.model_name or "", str(m._meta.verbose_name)) for m in models), key=lambda c: c[1])


class AuditFilter(forms.Form):
    actor = forms.TypedChoiceField(label="Who", required=False, coerce=int, empty_value=None)
    action = forms.CharField(label="Action", required=False, max_length=50,
                             help_text="An action (key.revoke) or its start (key.).")
    target_type = forms.ChoiceField(label="Object type", required=False)
    since = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    after = forms.CharField(required=False, max_length=80, widget=forms.HiddenInput)  # the keyset cursor

    def __init__(self, data: QueryDict, *, members: list[tuple[int, str]]) -> None:
        super().__init__(data)
        cast(forms.ChoiceField, self.fields["actor"]).choices = [("", "anyone"), *members]
        cast(forms.ChoiceField, self.fields["target_type"]).choices = [("", "any"), *object_types()]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            self.add_error("until", "The end of the range is before its start.")
        after = data.get("after")
        if after:
            data["after"] = parse_cursor(after)
            if data["after"] is None:
                self.add_error(None, "This page link is not valid; start again from the newest entries.")
        return data


def cursor_of(entry: AuditLogEntry) -> str:
    return f"{entry.created_at.isoformat()}~{entry.pk}"


def parse_cursor(value: str) -> tuple[dt.datetime, int] | None:
    when, _, pk = value.partition("~")
    try:
        moment = dt.datetime.fromisoformat(when)
    except ValueError:
        return None
    if moment.tzinfo is None or not (pk.isascii() and pk.isdigit() and len(pk) < 19):
        return None
    return moment, int(pk)


def _day_start(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


def filtered(entries: QuerySet[AuditLogEntry], data: dict[str, Any]) -> QuerySet[AuditLogEntry]:
    if data.get("actor"):
        entries = entries.filter(actor_id=data["actor"])
    if data.get("action"):
        action = data["action"]
        entries = entries.filter(action__startswith=action) if action.endswith(".") else entries.filter(action=action)
    if data.get("target_type"):
        entries = entries.filter(target_type=data["target_type"])
    if data.get("since"):
        entries = entries.filter(created_at__gte=_day_start(data["since"]))
    if data.get("until"):
        entries = entries.filter(created_at__lt=_day_start(data["until"] + dt.timedelta(days=1)))
    if data.get("after"):
        when, pk = data["after"]
        entries = entries.filter(Q(created_at__lt=when) | Q(created_at=when, pk__lt=pk))
    return entries


def change_text(entry: AuditLogEntry) -> str:
    """Before and after, as indented JSON (secrets were masked when the entry was written)."""
    def text(state: Any) -> str:
        return "—" if state is None else json.dumps(state, indent=1, sort_keys=True, ensure_ascii=False)
    return f"{text(entry.before)}\n→\n{text(entry.after)}"


class AuditPage(OrgPage):
    """The audit log (org admins)."""

    read_role = OrgRole.ADMIN

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        members = Membership.objects.visible_to(self.actor, "view").select_related("user").order_by("user__email")
        form = AuditFilter(request.GET, members=[(m.user_id, m.user.email) for m in members])
        if not form.is_valid():
            return self.page("web/org/audit.html", http_status=400, form=form, entries=[], older="", filtered=True)
        entries = AuditLogEntry.objects.visible_to(self.actor, "view").order_by("-created_at", "-id")
        rows = list(filtered(entries, form.cleaned_data)[:PAGE_SIZE + 1])
        for entry in rows:
            entry.change = change_text(entry)  # type: ignore[attr-defined]
        older = ""
        if len(rows) > PAGE_SIZE:
            rows = rows[:PAGE_SIZE]
            query = request.GET.copy()
            query["after"] = cursor_of(rows[-1])
            older = query.urlencode()
        newest = request.GET.copy()
        newest.pop("after", None)
        active = any(form.cleaned_data.get(n) for n in ("actor", "action", "target_type", "since", "until"))
        return self.page("web/org/audit.html", form=form, entries=rows, older=older,
                         newest=newest.urlencode() if form.cleaned_data.get("after") else None, filtered=active)
