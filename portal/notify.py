"""Alerts to people: email to the organization's alert addresses (or its
owners and admins) and a JSON POST to its webhook, if it has one."""

from __future__ import annotations

import json
import logging
import urllib.request
from typing import Any

from django.conf import settings
from django.core.mail import send_mail

from portal.models import Membership, Organization, OrgRole

log = logging.getLogger(__name__)
WEBHOOK_TIMEOUT = 5


def recipients(org: Organization) -> list[str]:
    if org.alert_emails.strip():
        return [e.strip() for e in org.alert_emails.split(",") if e.strip()]
    return sorted(Membership.objects.filter(organization=org, role__in=[OrgRole.OWNER, OrgRole.ADMIN])
                  .exclude(user__email="").values_list("user__email", flat=True))


def post_webhook(url: str, payload: dict[str, Any]) -> bool:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "llmops-portal"})
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT) as response:
            return 200 <= response.status < 300
    except OSError as exc:
        log.warning("alert webhook of an organization failed: %s", type(exc).__name__)
        return False


def send_alert(org: Organization, *, subject: str, body: str, payload: dict[str, Any]) -> None:
    to = recipients(org)
    if to:
        send_mail(f"[LLMOps Portal] {subject}", body, settings.DEFAULT_FROM_EMAIL, to, fail_silently=True)
    if org.alert_webhook_url:
        post_webhook(org.alert_webhook_url, {"organization": org.slug, "subject": subject, **payload})
