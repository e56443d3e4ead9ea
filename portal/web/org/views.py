"""Organization administration: settings and budgets, teams and members, projects, API tokens, the audit log."""

from __future__ import annotations

from typing import Any

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse

from portal.models import AuditLogEntry, OrgRole
from portal.web.base import OrgPage


class AuditPage(OrgPage):
    """The audit log (org admins)."""

    read_role = OrgRole.ADMIN

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        entries = AuditLogEntry.objects.visible_to(self.actor, "view")
        return self.page("web/audit.html", page=Paginator(entries, 50).get_page(request.GET.get("page")))
