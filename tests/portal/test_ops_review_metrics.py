"""Reviewer R2 (R2-B3): with METRICS_TOKEN set, only the whole token reads the web's /metrics. The existing test
passed with a check that accepted any prefix of the token (an empty bearer, its first letter)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

TOKEN = "r2-metrics-token-0123456789abcdef"


@pytest.mark.django_db
@pytest.mark.parametrize("given", ["", " ", TOKEN[:1], TOKEN[:-1], TOKEN.upper(), f"{TOKEN} {TOKEN}", f"x{TOKEN}"])
def test_only_the_whole_token_reads_metrics(settings: Any, client: Client, given: str) -> None:
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_NETWORKS = TOKEN, []
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {given}")
    assert response.status_code == 404 and b"portal_" not in response.content
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
