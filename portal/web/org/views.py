"""Organization administration: the organization's settings and budgets.

The other pages of the area are in `members.py`, `teams.py`, `projects.py` and `audit.py`. Every page
is an `OrgPage`; it reads rows through `visible_to` and writes through the API's serializers and the
services (`portal/services.py`, `evals/services/langfuse.py`), so a refusal there is a refusal here."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from portal import services
from portal.api.serializers import OrganizationSerializer
from portal.models import Organization, OrgRole
from portal.web.base import OrgPage
from portal.web.org import forms

SETTINGS_FIELDS = (
    forms.Field("name", "Name", required=True, maxlength=200),
    *forms.budget_fields(),
    forms.Field("alert_emails", "Alert e-mails", maxlength=1000,
                help="Comma-separated. Empty: the organization's owners and admins."),
    forms.Field("alert_webhook_url", "Alert webhook URL", kind="url", maxlength=500,
                help="Receives a JSON POST for every budget or evaluation alert."),
)


class SettingsPage(OrgPage):
    """The organization's name, budget and alert targets (org admins)."""

    read_role = OrgRole.ADMIN

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        return self.form(values=forms.values_of(self.current(), SETTINGS_FIELDS), errors={})

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        data = forms.parse(SETTINGS_FIELDS, request.POST)
        serializer = OrganizationSerializer(self.current(), data=data, partial=True,
                                            context={"organization": self.organization, "actor": self.actor})
        if not serializer.is_valid():
            return self.form(values=data, errors=forms.Outcome.of(serializer.errors, SETTINGS_FIELDS).errors)
        try:
            services.organization_update(actor=self.actor, data=dict(serializer.validated_data))
        except ValidationError as exc:
            return self.form(values=data, errors=forms.Outcome.of(exc, SETTINGS_FIELDS).errors)
        messages.success(request, "Settings saved.")
        return redirect("web:settings", org_slug=self.organization.slug)

    def current(self) -> Organization:
        return Organization.objects.visible_to(self.actor, "view").get()

    def form(self, *, values: dict[str, Any], errors: dict[str, Any]) -> HttpResponse:
        return self.page("web/org/settings.html", http_status=400 if errors else 200, errors=errors,
                         fields=forms.bind(SETTINGS_FIELDS, values=values, errors=errors))
